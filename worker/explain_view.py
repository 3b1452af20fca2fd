"""``intent-worker explain USER_ID``: a user's window read from Redis, scored and explained by
the model now, as a dict (``--json``) or a table for a terminal.

The window is read the way the worker reads it (``RedisWindowStore``, the worker's key prefix
and secret), the model input built by the worker's code and scored through the shared vector
store, so while the user's window has not changed the score is the one the worker published.
"""

from __future__ import annotations

from typing import Any

from worker.errors import ConfigError
from worker.settings import Settings

__all__ = ["explain_user", "format_explanation"]


async def explain_user(settings: Settings, user_id: str, *, top: int = 5) -> dict[str, Any] | None:
    """The explanation report of ``user_id``'s current window, or None without a window."""
    from worker.features import build_input
    from worker.model import default_model_path, read_config
    from worker.runtime import load_configured
    from worker.scoring.records import explained_window, explanation_record
    from worker.vectors import RedisVectorStore
    from worker.windows import RedisWindowStore

    path = settings.model_path or default_model_path()
    if read_config(path).kind != "pooled":
        raise ConfigError(f"the model at {path} reads whole window texts (kind text): "
                          "explanations need a pooled model (--model DIR)")
    async with RedisWindowStore.from_settings(settings) as store, \
            RedisVectorStore.from_settings(settings) as vectors:
        window = (await store.append({user_id: []})).get(user_id) or []
        if not window:
            return None
        model = load_configured(settings, path, vector_store=vectors)
        item = build_input(window, max_chars=model.max_chars, phrase_price=model.phrase_price)
        scores, explanations = await model.explain_async([item], top=top)
    explanation = explanation_record(explanations[0], window)
    return {"user_id": user_id, "score": scores[0],
            "model": {"name": model.name, "version": model.version},
            "window": explained_window(window, explanation), "explanation": explanation}


def format_explanation(report: dict[str, Any]) -> str:
    """The report as a few aligned blocks for a terminal."""
    from worker.events import format_ts

    exp = report["explanation"]
    lines = [f"user {report['user_id']}: score {report['score']:.4f} "
             f"(model {report['model']['name']} {report['model']['version']}; baseline "
             f"{exp['baseline']['score']:.4f}: no events, every context feature at 0)", "",
             "window, newest first (effect: score minus the score without the event; blank: "
             "not among the largest)"]
    for e in report["window"]:
        effect = "" if e["effect"] is None else f"{e['effect']:+.4f}"
        lines.append(f"  {format_ts(e['ts'])}  {e['event_type']:<17} "
                     f"{e['product_id'] or '-':<14} {effect:>8}  {e['event_id']}")
    lines += ["", "context features (contribution to the logit)"]
    for f in exp["features"]:
        lines.append(f"  {f['name']:<30} value {f['value']:>9.4f}  {f['contribution']:+.4f}")
    lines.append(f"  {'(the other features)':<30} {'':>15}  {exp['other_features']:+.4f}")
    lines += [f"  {'(the events, together)':<30} {'':>15}  {exp['events_total']:+.4f}",
              f"  {'baseline logit':<30} {'':>15}  {exp['baseline']['logit']:+.4f}",
              f"  {'logit':<30} {'':>15}  {exp['logit']:+.4f}"]
    return "\n".join(lines)
