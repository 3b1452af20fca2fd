"""Load the JSON Schemas under ``schemas/`` by name and validate documents against them.

Schemas are read and compiled (jsonschema-rs, draft 2020-12) on first use and cached
for the life of the process; nothing happens at import.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from worker.errors import BadEvent, ConfigError

__all__ = ["is_valid", "iter_errors", "load_schema", "schema_dir", "validate", "validator"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
DETAIL_MAX = 300
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.v[0-9]+$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def schema_dir() -> Path:
    """The repository's ``schemas/`` folder."""
    return Path(__file__).resolve().parents[2] / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema called ``name`` (e.g. ``"click-event.v1"``) as a dict; raises ConfigError."""
    if not _NAME.match(name):
        raise ConfigError(f"bad schema name {name!r}: expected e.g. 'click-event.v1'")
    path = schema_dir() / f"{name}.json"
    try:
        schema = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"no schema {name!r}: {path} does not exist") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"schema {path} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("$schema") != DRAFT:
        raise ConfigError(f"schema {path} must be an object with $schema {DRAFT}")
    return schema


@functools.cache
def validator(name: str) -> jsonschema_rs.Validator:
    """The compiled (and cached) validator of schema ``name``."""
    schema = load_schema(name)
    try:
        # The mask keeps instance values (possibly huge, possibly personal) out of messages.
        return jsonschema_rs.validator_for(schema, mask="value")
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        raise ConfigError(f"schema {name!r} does not compile: {exc}") from None


def is_valid(name: str, doc: Any) -> bool:
    return validator(name).is_valid(doc)


def iter_errors(name: str, doc: Any) -> Iterator[str]:
    """Every violation of ``doc`` as a short ``"$.json.path: message"`` line."""
    for err in validator(name).iter_errors(doc):
        yield _describe(err)


def validate(name: str, doc: Any) -> None:
    """Raise ``BadEvent("schema_violation", detail)`` unless ``doc`` is valid under ``name``."""
    v = validator(name)
    try:
        if v.is_valid(doc):
            return
        first = next(iter(v.iter_errors(doc)), None)
    except (ValueError, RecursionError) as exc:
        # jsonschema-rs refuses documents nested deeper than it recurses (255 levels) with
        # ValueError("Recursion limit reached"); orjson accepts up to 1024. No valid document
        # of ours is that deep, so this is a violation of the message, not an error of ours.
        raise BadEvent("schema_violation", f"$: cannot validate ({exc}): nested too deep") from None
    raise BadEvent("schema_violation", _describe(first) if first else "invalid")


def json_path(parts: Any) -> str:
    """``["product", "price"]`` -> ``$.product.price``; ``["a", 0]`` -> ``$.a[0]``."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _KEY.match(part) and len(part) <= 64:
            out.append(f".{part}")
        else:
            out.append("[" + orjson.dumps(part[:64]).decode() + ("...]" if len(part) > 64 else "]"))
    return "".join(out)


def _describe(err: jsonschema_rs.ValidationError) -> str:
    text = f"{json_path(err.instance_path)}: {err.message}"
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."
