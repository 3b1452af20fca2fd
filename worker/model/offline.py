"""A model directory's offline figures: how the model did on its validation users at training
time, read from the ``metrics.json`` that training writes beside the model
(``worker.training.card``; ``val.bert.pr_auc`` and ``val.bert.roc_auc``).

The worker exports them beside the live figures (``intent_model_offline_*``), so a dashboard or
an alert can compare live quality with what the model was shipped with. They are optional: a
directory without ``metrics.json``, or without a figure, has none of it, and a file that cannot
be read is logged and treated the same, never a reason to refuse the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

__all__ = ["METRICS_FILE", "OFFLINE_FIGURES", "offline_figures"]

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
OFFLINE_FIGURES = ("pr_auc", "roc_auc")


def offline_figures(path: str | os.PathLike[str]) -> dict[str, float]:
    """The validation figures of the model directory at ``path`` (names from
    :data:`OFFLINE_FIGURES`), those it has: missing, non-numeric or non-finite ones are left
    out."""
    file = Path(path) / METRICS_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s not read, the model's offline figures are not exported: %s", file, exc)
        return {}
    section = data
    for name in ("val", "bert"):
        section = section.get(name) if isinstance(section, dict) else None
    if not isinstance(section, dict):
        return {}
    figures = {}
    for name in OFFLINE_FIGURES:
        value = section.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            figures[name] = float(value)
    return figures
