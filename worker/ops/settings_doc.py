"""The settings reference (``docs/settings.md``), rendered from the :class:`Settings` class.

Every field becomes one row: its environment variable, type and allowed range, default and
description. ``intent-worker settings-doc > docs/settings.md`` (or ``python -m
worker.ops.settings_doc``) writes the page; a unit test checks the committed page equals
:func:`render`, so the page and the code never drift.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from worker.settings import Settings, env_name

__all__ = ["render", "type_text", "default_text"]

COMMAND = "intent-worker settings-doc > docs/settings.md"

_HEAD = f"""\
# Settings

<!-- Generated from worker/settings.py by `{COMMAND}`.
     Edit the descriptions there, then run the command; a test fails when the two differ. -->

The worker reads one frozen settings object from the environment when it starts: each
variable is `INTENT_` followed by a field of `worker.settings.Settings` in upper case. A bad
value stops start-up with one line that names the variable and says what is wrong. The
commands `publish`, `evaluate` and `forget` read the same settings, so they reach the same
Kafka and Redis, with the same security settings, as the worker. Secrets (`secret` below) are
masked wherever settings are printed and never logged. What each anomaly threshold means, and
why its default: [anomalies.md](anomalies.md).

Checks across settings, also at start-up: `INTENT_WINDOW_TTL_SECONDS` >=
`INTENT_WINDOW_SECONDS`; a `SASL_*` security protocol needs `INTENT_KAFKA_SASL_USERNAME` and
`INTENT_KAFKA_SASL_PASSWORD`; every certificate and CA file must exist;
`INTENT_KAFKA_SSL_CERTFILE` and `INTENT_KAFKA_SSL_KEYFILE` go together;
`INTENT_REDIS_TLS_CA_FILE` needs a `rediss://` URL; `INTENT_REDIS_URL` starts with
`redis://`, `rediss://` or `unix://`; the anomaly thresholds must be consistent (for example
`INTENT_ANOMALY_PRICE_MIN_SAMPLES` <= `INTENT_ANOMALY_PRICE_STATS_CAPACITY`).

| variable | type | default | meaning |
|---|---|---|---|
"""

_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"),
           (annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<"))


def render() -> str:
    """The whole page, Markdown, ending with a newline."""
    rows = [f"| `{env_name(name)}` | {type_text(field)} | {default_text(field.default)} | "
            f"{_cell(field.description or '')} |"
            for name, field in Settings.model_fields.items()]
    return _HEAD + "\n".join(rows) + "\n"


def type_text(field: FieldInfo) -> str:
    """``int >= 1, <= 60000``, ``one of `a`, `b```, ``secret``, ``path``..."""
    text = _base_type(field.annotation)
    limits = []
    for meta in field.metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(meta, kind):
                limits.append(f"{sign} {getattr(meta, attr)}")
        if isinstance(meta, annotated_types.MinLen) and meta.min_length == 1:
            limits.append("not empty")
    return f"{text} {', '.join(limits)}" if limits else text


def default_text(default: Any) -> str:
    """The default as it would be written in the environment; ``(unset)`` for None."""
    if default is None:
        return "(unset)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def _base_type(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _base_type(args[0])  # optional: the default column says "(unset)"
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(annotation))
    names = {bool: "bool", int: "int", float: "number", str: "text", Path: "path",
             SecretStr: "secret"}
    if annotation in names:
        return names[annotation]
    raise TypeError(f"no documented form for the setting type {annotation!r}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
