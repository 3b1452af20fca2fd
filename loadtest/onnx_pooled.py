"""The shipped pooled model with int8 ONNX Runtime phrase vectors instead of torch's: vector
agreement, score agreement and ranking quality on the REES46 dev examples, and encode speed.

    python -m loadtest.onnx_pooled ../shared/data/rees46/events-dev.csv --format rees46 \
        --threads 1 --out onnx-pooled.json

Every distinct event phrase of the dev examples (as ``train`` builds them) is encoded by the
model's torch encoder and by the same encoder exported and quantised to int8
(:func:`~worker.model.onnx_encoder.export_onnx`, per-channel); the model's head, fitted on
torch vectors, then scores every example with each set of vectors (both rounded to float16, as
the worker stores them). Reports cosine of the vectors, mean and max score difference, Spearman
correlation of the scores, PR-AUC and ROC-AUC of each (all examples: the training users'
included, so read the difference, not the level), and phrases per second of each encoder at
``--threads`` threads. Needs the ``[onnx]`` extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--format", default="rees46")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score, roc_auc_score

    from worker.dataset.examples import build_examples
    from worker.dataset.loading import load_events
    from worker.features import build_input
    from worker.model import default_model_path, load_model, read_config
    from worker.model.modeldir import encoder_dir
    from worker.model.onnx_encoder import OnnxPhraseEncoder, export_onnx
    from worker.model.vectors import EventVectors

    torch.set_num_threads(args.threads)
    model_dir = args.model or default_model_path()
    config = read_config(model_dir)
    if config.kind != "pooled":
        raise SystemExit(f"{model_dir} is a {config.kind} model; this compares pooled models")
    events = load_events(args.path, args.format).events
    examples = build_examples(events, horizon_s=config.label.horizon_s if config.label else 600,
                              max_events=config.window.max_events if config.window else 50,
                              window_seconds=config.window.seconds if config.window else 3600)
    y = np.array([e.label for e in examples])
    model = load_model(model_dir, device="cpu", threads=args.threads)
    inputs = [build_input(e.window, max_chars=0, phrase_price=model.phrase_price)
              for e in examples]
    phrases = list(dict.fromkeys(p for i in inputs for p in i.events.phrases))  # type: ignore[union-attr]
    torch_encoder = model.vectors.encoder
    torch_encoder.encode(phrases[:32])  # warm-up
    t0 = time.perf_counter()
    v_torch = torch_encoder.encode(phrases)
    torch_s = time.perf_counter() - t0
    s_torch = np.array(model.score(inputs))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        onnx_path = export_onnx(encoder_dir(model_dir, config), Path(tmp) / "encoder.onnx",
                                quantize="int8")
        export_s = time.perf_counter() - t0
        onnx = OnnxPhraseEncoder(onnx_path, encoder_dir(model_dir, config),
                                 max_tokens=config.window_model.phrase_max_tokens,
                                 threads=args.threads)
        onnx.encode(phrases[:32])
        t0 = time.perf_counter()
        v_onnx = onnx.encode(phrases)
        onnx_s = time.perf_counter() - t0
        model.vectors = EventVectors(onnx, cache_size=len(phrases) + 1)
        s_onnx = np.array(model.score(inputs))
    cos = (v_torch * v_onnx).sum(1) / np.linalg.norm(v_torch, axis=1) / np.linalg.norm(v_onnx,
                                                                                      axis=1)
    report = {
        "model": f"{config.name} {config.version}", "examples": len(examples),
        "positives": int(y.sum()), "phrases": len(phrases), "threads": args.threads,
        "export_s": round(export_s, 1),
        "torch": {"encode_s": round(torch_s, 2), "phrases_per_s": round(len(phrases) / torch_s, 1),
                  "pr_auc": float(average_precision_score(y, s_torch)),
                  "roc_auc": float(roc_auc_score(y, s_torch))},
        "onnx_int8": {"encode_s": round(onnx_s, 2),
                      "phrases_per_s": round(len(phrases) / onnx_s, 1),
                      "pr_auc": float(average_precision_score(y, s_onnx)),
                      "roc_auc": float(roc_auc_score(y, s_onnx))},
        "cosine": {"mean": float(cos.mean()), "min": float(cos.min())},
        "score_abs_diff": {"mean": float(np.abs(s_torch - s_onnx).mean()),
                           "max": float(np.abs(s_torch - s_onnx).max())},
        "spearman": float(spearmanr(s_torch, s_onnx)[0]),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
