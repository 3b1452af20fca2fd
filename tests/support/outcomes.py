"""Synthetic outcome records (schemas/intent-outcome.v1.json) for tests: a weak champion and
a shadow that is better, worse or the same."""

from __future__ import annotations

import numpy as np

from worker.events.parse import format_ts

BASE_MS = 1_569_888_000_000  # 2019-10-01T00:00:00Z


def outcome(i: int, *, user: str, label: int, score: float, shadow: float | None = None,
            ts_ms: int | None = None, version: str = "2.0.0") -> dict:
    ts = BASE_MS + i * 1000 if ts_ms is None else ts_ms
    record = {
        "score_id": f"s{i}", "user_id": user, "event_id": f"e{i}", "event_ts": format_ts(ts),
        "model": {"name": "intent-minilm", "version": version}, "score": score, "label": label,
        "horizon_s": 600, "resolved_by": "purchase" if label else "watermark",
        "resolved_ts": format_ts(ts + 60_000), "produced_at": format_ts(ts + 700_000),
    }
    if shadow is not None:
        record["shadow"] = {"name": "intent-minilm", "version": "3.0.0", "score": shadow}
    return record


def synthetic(n: int = 2000, *, users: int = 200, seed: int = 0, shadow: str | None = "better",
              version: str = "2.0.0", start: int = 0) -> list[dict]:
    """Champion: weakly informative. Shadow: "better" (strongly informative), "same" (the
    champion's scores) or "worse" (noise)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    champ = np.clip(rng.normal(0.25 + 0.1 * y, 0.15), 0, 1)
    other = {"better": np.clip(rng.normal(0.2 + 0.5 * y, 0.1), 0, 1),
             "worse": rng.random(n), "same": champ, None: [None] * n}[shadow]
    return [outcome(start + i, user=f"u{rng.integers(users)}", label=int(y[i]),
                    score=float(champ[i]),
                    shadow=None if other[i] is None else float(other[i]), version=version)
            for i in range(n)]
