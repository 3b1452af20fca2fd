"""Turn data files into click events for publishing: REES46 CSV and JSON Lines.

Both readers stream the file (constant memory) and produce the same output on every read.
"""

from __future__ import annotations

import csv
import math
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from worker.errors import ConfigError
from worker.events.parse import epoch_ms, format_ts

__all__ = ["REES46_COLUMNS", "read_jsonl", "read_rees46", "user_key"]

REES46_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
REES46_TYPES = {
    "view": "view",
    "cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "purchase": "purchase",
}
# uuid5(NAMESPACE_URL, "https://intent-worker.dev/adapters/rees46"); fixed forever, since
# every event id derived from REES46 rows depends on it.
REES46_NAMESPACE = uuid.UUID("b57c75b4-2b38-56c2-a8d5-bade4f3b4ab2")


def read_rees46(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield one click event v1 dict (``ts`` an RFC 3339 string) per row of a REES46 CSV.

    ``event_id`` is a uuid5 of the row's fields and the number of identical rows before
    it, so exact duplicate rows get distinct ids and every read gives the same ids.
    Duplicates are counted within a run of equal ``event_time``, which keeps memory
    constant and needs the file in event-time order (as REES46 ships it); a row older
    than the one before it raises ConfigError, like unknown event types and bad values.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"{path}: empty file, expected a REES46 CSV header")
        missing = [c for c in REES46_COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"{path}: missing columns: {', '.join(missing)}")
        index = [header.index(c) for c in REES46_COLUMNS]
        run_time = ""
        seen: dict[tuple[str, ...], int] = {}
        for row in reader:
            if not row:
                continue
            where = f"{path}:{reader.line_num}"
            try:
                fields = tuple(row[i] for i in index)
            except IndexError:
                raise ConfigError(f"{where}: expected {len(header)} columns") from None
            if fields[0] != run_time:
                if fields[0] < run_time:
                    raise ConfigError(f"{where}: rows are not in event_time order")
                run_time = fields[0]
                seen.clear()
            ordinal = seen.get(fields, 0)
            seen[fields] = ordinal + 1
            yield _rees46_event(fields, ordinal, where)


def _rees46_event(fields: tuple[str, ...], ordinal: int, where: str) -> dict[str, Any]:
    event_time, kind, product_id, _, category, brand, price, user_id, session = fields
    event_type = REES46_TYPES.get(kind)
    if event_type is None:
        raise ConfigError(f"{where}: unknown event_type {kind!r}")
    if not user_id or not product_id:
        raise ConfigError(f"{where}: empty user_id or product_id")
    product: dict[str, Any] = {"id": product_id}
    if category:
        product["category"] = category
    if brand:
        product["brand"] = brand
    if price:
        try:
            value = float(price)
        except ValueError:
            raise ConfigError(f"{where}: bad price {price!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: bad price {price!r}")
        product["price"] = value
    name = "\x1f".join((*fields, str(ordinal)))
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid5(REES46_NAMESPACE, name)),
        "user_id": user_id,
        "event_type": event_type,
        "ts": _rees46_ts(event_time, where),
    }
    if session:
        event["session_id"] = session
    event["product"] = product
    return event


def _rees46_ts(text: str, where: str) -> str:
    """``2019-10-01 00:00:00 UTC`` -> ``2019-10-01T00:00:00.000Z``."""
    if not text.endswith(" UTC"):
        raise ConfigError(f"{where}: bad event_time {text!r}, expected 'YYYY-MM-DD HH:MM:SS UTC'")
    try:
        dt = datetime.fromisoformat(text[:-4] + "+00:00")
    except ValueError:
        raise ConfigError(f"{where}: bad event_time {text!r}") from None
    return format_ts(epoch_ms(dt))


def read_jsonl(path: str | Path) -> Iterator[bytes]:
    """Yield each non-blank line of a JSON Lines file as raw bytes, without its newline.

    Lines are not parsed: broken ones flow on to the worker and its dead-letter topic.
    """
    with Path(path).open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def user_key(event_or_raw: dict[str, Any] | bytes | None) -> bytes | None:
    """The Kafka key of an event: its ``user_id`` as UTF-8 bytes, or None when the event
    (a dict, or a raw line that must parse as a JSON object) has no string user_id."""
    event = event_or_raw
    if isinstance(event, bytes | bytearray | memoryview):
        try:
            event = orjson.loads(event)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(event, dict):
        return None
    user_id = event.get("user_id")
    if not isinstance(user_id, str):
        return None
    try:
        return user_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
