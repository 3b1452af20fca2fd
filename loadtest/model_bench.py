"""Model-only throughput, without Kafka, Redis or Faust.

Two modes, one JSON document on stdout (and in ``--out``):

``--events FILE`` (row d of ``loadtest.bench``): the worker's own work on the same events.
The events (JSON Lines, publish order) are cut into micro-batches of ``--batch-max``; each
batch is coalesced per user, appended to a :class:`MemoryWindowStore` (same semantics as the
Redis store), turned into inputs by ``build_input`` and scored by the call the worker makes,
with the worker's sub-batch size: ``IntentModel.score`` for a text model,
``EventVectorModel.score_async`` for a pooled one (vectors through a
:class:`MemoryVectorStore` in place of Redis, encodes in one model thread). Only that call is
timed. ``--warm FILE``: earlier events appended to the windows first; with a pooled model
their windows are also scored (untimed) so their vectors are in the store, and the process
cache is emptied, as a worker starts after others ran (``--cold-vectors``: not scored).
``--model``: the model directory (default: the shipped one).

``--synthetic`` (the GPU check): encoder (+ fusion head for a text MiniLM model) forward passes
on random token ids of a fixed length, per batch size, under ``torch.inference_mode`` and, on
CUDA, bf16 autocast, after warm-up, with CUDA-synchronised timing. ``--encoder minilm`` is the
shipped model; ``bert-base`` is ``BertModel(BertConfig())`` (12 layers, 768 hidden) with random
weights.

    python -m loadtest.model_bench --events run/events.jsonl --batch-max 256 [--model DIR]
    python -m loadtest.model_bench --synthetic --encoder bert-base --tokens 64 128 \
        --batch-sizes 256 512 1024 --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadtest.stats import ExactHistogram

# Only torch and transformers at import (and for --synthetic): runs on a bare CUDA image.

WARMUP_INPUTS = 64  # of the first batch, scored once untimed before the timed pass over all


def worker_batches(
    events: Sequence[dict],
    *,
    batch_max: int,
    model: object,
    window_max_events: int = 50,
    window_seconds: int = 3600,
    limit_batches: int | None = None,
    warm: Sequence[dict] = (),
    warm_vectors: bool = True,
) -> dict:
    """Score ``events`` the way the worker does (see the module doc); time the model call only.
    ``warm``: earlier events appended to the windows first (not counted), as in the bench's
    rows b and c; with a model that has ``score_async`` (event vectors) and ``warm_vectors``,
    their windows are scored first to fill its vector store, then its process cache is
    emptied."""
    from loadtest.gen import batches, by_user
    from worker.features import build_input
    from worker.windows import MemoryWindowStore

    price = getattr(model, "phrase_price", None)
    vectors = getattr(model, "vectors", None) if hasattr(model, "score_async") else None
    runner = asyncio.Runner() if vectors is not None else None

    def call(inputs: list) -> list[float]:
        if runner is not None:
            return runner.run(model.score_async(inputs))
        return model.score(inputs)

    store = MemoryWindowStore(max_events=window_max_events, span_ms=window_seconds * 1000)
    warm_out: dict | None = None
    try:
        t_warm = time.perf_counter()
        scoring = vectors is not None and warm_vectors
        # scoring: the worker's batch size, so every warm event is in a window scored
        for chunk in batches(list(warm), batch_max if scoring else 2000):
            windows = store.append_sync(by_user(chunk))
            if scoring:
                call([build_input(w, max_chars=model.max_chars, phrase_price=price)
                      for w in windows.values()])
        if vectors is not None and warm and warm_vectors:
            warm_out = {"seconds": time.perf_counter() - t_warm,
                        "phrases_encoded": vectors.encoded, "encoder_calls": vectors.encoder_calls}
            model.clear_cache()  # the worker starts with an empty process cache
        work = []  # (events in batch, inputs) prepared up front: the timed loop is the model alone
        for chunk in batches(list(events), batch_max):
            users = by_user(chunk)
            windows = store.append_sync(users)
            inputs = [build_input(windows[u], max_chars=model.max_chars, phrase_price=price)
                      for u in users]
            work.append((len(chunk), inputs))
            if limit_batches is not None and len(work) >= limit_batches:
                break
        if vectors is not None:
            model.warm_up()  # kernels, past the caches (what the worker does at start)
        elif work:
            model.score(work[0][1][:WARMUP_INPUTS])  # warm-up (allocator, kernels); not counted
        before = _vector_counts(vectors)
        timed = work  # every batch, so the workload is exactly the worker's
        per_batch = ExactHistogram()
        n_events = n_seqs = 0
        total = cpu = 0.0
        for n, inputs in timed:
            t0, c0 = time.perf_counter(), time.process_time()
            call(inputs)
            dt = time.perf_counter() - t0
            cpu += time.process_time() - c0  # all threads of this process: torch's too
            per_batch.add(dt * 1000)
            total += dt
            n_events += n
            n_seqs += len(inputs)
        counts = {k: v - before[k] for k, v in _vector_counts(vectors).items()}
    finally:
        if runner is not None:
            runner.close()
    out = {
        "mode": "worker-batches",
        "batch_max": batch_max,
        "batches": len(timed),
        "events": n_events,
        "sequences": n_seqs,
        "seconds": total,
        "events_per_s": n_events / total if total else None,
        "seq_per_s": n_seqs / total if total else None,
        "events_per_sequence": n_events / n_seqs if n_seqs else None,
        "cpu_ms_per_event": cpu * 1000 / n_events if n_events else None,
        "batch_ms": per_batch.summary((50, 95, 99)),
    }
    if vectors is not None:
        phrases = counts["process_hits"] + counts["store_hits"] + counts["encoded"]
        out["vectors"] = {
            **counts,
            "process_hit_rate": counts["process_hits"] / phrases if phrases else None,
            "store_hit_rate": counts["store_hits"] / phrases if phrases else None,
        }
        out["warm_vectors"] = warm_out
        out["encoder_seq_per_event"] = counts["encoded"] / n_events if n_events else None
    return out


def _vector_counts(vectors: object) -> dict[str, int]:
    names = ("process_hits", "store_hits", "encoded", "encoder_calls")
    return {k: getattr(vectors, k) for k in names} if vectors is not None else {}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def synthetic(
    *, encoder: str, tokens: int, batch_size: int, device: str, batches_n: int, warmup: int = 3
) -> dict:
    """Forward passes on random ids of ``tokens`` length; returns sequences/s."""
    import torch

    dev = torch.device(device)
    forward, params, note = _synthetic_model(encoder, dev)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch_size, tokens), generator=gen).to(dev)
    mask = torch.ones_like(ids)
    cast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if dev.type == "cuda"
        else contextlib.nullcontext()
    )

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode(), cast:
        for _ in range(warmup):
            forward(ids, mask)
        sync()
        t0 = time.perf_counter()
        for _ in range(batches_n):
            forward(ids, mask)
        sync()
        dt = time.perf_counter() - t0
    out = {
        "mode": "synthetic",
        "encoder": encoder,
        "weights": note,
        "params_m": round(params / 1e6, 1),
        "tokens": tokens,
        "batch_size": batch_size,
        "device": str(dev),
        "dtype": "bf16" if dev.type == "cuda" else "fp32",
        "batches": batches_n,
        "seconds": dt,
        "seq_per_s": batch_size * batches_n / dt,
        "ms_per_batch": dt / batches_n * 1000,
    }
    if dev.type == "cuda":
        out["max_mem_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return out


_MODELS: dict = {}


# MiniLM-L6-H384 (all-MiniLM-L6-v2's shape), for machines without the shipped encoder package
MINILM_SHAPE = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}


def _synthetic_model(encoder: str, dev):
    """(forward(ids, mask), parameter count, weights note), cached per encoder and device.

    ``minilm`` is the shipped model (encoder + fusion head); where its encoder package is not
    installed, a randomly initialised encoder of the same shape (same cost per token).
    """
    key = (encoder, str(dev))
    if key in _MODELS:
        return _MODELS[key]
    from transformers import BertConfig, BertModel

    from worker.model.encoder import pool

    def random_encoder(config: BertConfig):
        bert = BertModel(config, add_pooling_layer=False).to(dev).eval()

        def forward(ids, mask):
            return pool(bert(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean")

        return forward, sum(p.numel() for p in bert.parameters())

    if encoder == "minilm":
        try:
            from worker.model import default_model_path, load_model

            model = load_model(default_model_path(), device=dev.type)
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to the same shape
            print(
                f"model_bench: shipped model not loadable ({exc!s:.120}); "
                "using a random MiniLM-L6-H384-shaped encoder",
                file=sys.stderr,
            )
            forward, params = random_encoder(BertConfig(**MINILM_SHAPE))
            note = "random weights, MiniLM-L6-H384 shape (shipped encoder not installed)"
        else:
            forward, params, note = _shipped_forward(model, dev)
    elif encoder == "bert-base":
        forward, params = random_encoder(BertConfig())
        note = "random weights, BertConfig() (12 layers, 768 hidden)"
    else:
        raise ValueError(f"unknown encoder {encoder!r}")
    _MODELS[key] = (forward, params, note)
    return _MODELS[key]


def _shipped_forward(model, dev):
    """(forward, parameters, note) of a loaded model: a text model's encoder + fusion head, or a
    pooled model's phrase encoder (its head is numpy over the vectors, no torch)."""
    import torch

    vectors = getattr(model, "vectors", None)
    if vectors is not None:
        text_encoder = vectors.encoder.encoder
        params = sum(p.numel() for p in text_encoder.parameters())
        return text_encoder, params, f"shipped model {model.name} {model.version} (pooled: " \
            "its phrase encoder)"
    n_feat = model.head.n_features

    def forward(ids, mask):
        feats = torch.zeros((ids.shape[0], n_feat), device=dev)
        return model.head(model.encoder(ids, mask), feats)

    params = sum(p.numel() for p in model.encoder.parameters())
    return forward, params, f"shipped model {model.name} {model.version} (encoder + fusion head)"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--events", type=Path, help="JSON Lines of events, in publish order")
    mode.add_argument("--synthetic", action="store_true", help="fixed-length random token ids")
    ap.add_argument("--batch-max", type=int, default=256, help="events per worker micro-batch")
    ap.add_argument(
        "--limit-batches", type=int, default=None, help="score at most this many batches"
    )
    ap.add_argument("--window-max-events", type=int, default=50)
    ap.add_argument("--warm", type=Path, default=None,
                    help="JSON Lines of earlier events, appended to the windows before --events")
    ap.add_argument("--model", type=Path, default=None,
                    help="model directory for --events, either kind (default: the shipped one)")
    ap.add_argument("--cold-vectors", action="store_true",
                    help="pooled model: do not fill its vector store from the --warm windows")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--encoder", nargs="+", default=["minilm"], choices=("minilm", "bert-base"))
    ap.add_argument("--tokens", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 512, 1024])
    ap.add_argument("--batches", type=int, default=20, help="timed batches per synthetic setting")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    env = {
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        if not torch.cuda.is_available():
            print(
                "model_bench: --device cuda but torch sees no CUDA device "
                f"(torch {torch.__version__}); is this the CPU wheel?",
                file=sys.stderr,
            )
            return 2
        env["gpu"] = torch.cuda.get_device_name(0)
    if args.events:
        from concurrent.futures import ThreadPoolExecutor

        from worker.model import default_model_path, load_model
        from worker.vectors import MemoryVectorStore

        events = _read_jsonl(args.events)
        warm = _read_jsonl(args.warm) if args.warm else []
        # as the worker: one model thread for the encoder, a shared store (here in memory)
        model = load_model(args.model or default_model_path(), device=device,
                           vector_store=MemoryVectorStore(),
                           executor=ThreadPoolExecutor(1, thread_name_prefix="intent-model"))
        vectors = getattr(model, "vectors", None)
        env["model"] = {
            "name": model.name,
            "version": model.version,
            "kind": model.config.kind,
            "path": str(args.model or default_model_path()),
            "sub_batch": vectors.encoder.batch_size if vectors is not None else model.batch_size,
        }
        results = [
            worker_batches(
                events,
                batch_max=args.batch_max,
                model=model,
                window_max_events=args.window_max_events,
                limit_batches=args.limit_batches,
                warm=warm,
                warm_vectors=not args.cold_vectors,
            )
        ]
    else:
        results = []
        for enc in args.encoder:
            for tokens in args.tokens:
                for bs in args.batch_sizes:
                    try:
                        r = synthetic(
                            encoder=enc,
                            tokens=tokens,
                            batch_size=bs,
                            device=device,
                            batches_n=args.batches,
                        )
                    except torch.OutOfMemoryError as exc:  # report and go on with the next size
                        r = {
                            "mode": "synthetic",
                            "encoder": enc,
                            "tokens": tokens,
                            "batch_size": bs,
                            "error": f"out of memory: {exc}"[:200],
                        }
                        torch.cuda.empty_cache()
                    print(
                        f"{enc:9s} tokens={tokens:4d} batch={bs:5d} "
                        f"{r.get('seq_per_s', float('nan')):12,.0f} seq/s",
                        file=sys.stderr,
                    )
                    results.append(r)
    doc = {"env": env, "results": results}
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
