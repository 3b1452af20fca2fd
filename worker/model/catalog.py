"""Pre-warming the event-vector store from a product catalogue (``intent-worker embed-catalog``).

A catalogue is JSONL, one product per line, each the product object of click events
(``schemas/catalog-product.v1.json``: ``id`` and optionally ``title``, ``category``, ``brand``,
``price``, ``currency``). Each product gives one phrase per event type that names a product
(viewed, added to cart, removed from cart, purchased), rendered exactly as the worker renders
events (:func:`~worker.features.phrase.event_phrase`, the model's price mode), so their vectors
are the ones the worker will look up: a new shop, or a new model, starts with its encoder
calls already made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from worker.errors import ConfigError
from worker.events.schemas import iter_errors
from worker.features.phrase import PriceMode, event_phrase
from worker.model.vectors import EventVectors

__all__ = ["PRODUCT_EVENT_TYPES", "Catalogue", "catalogue_phrases", "embed_phrases",
           "read_catalogue"]

PRODUCT_EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase")
SCHEMA = "catalog-product.v1"
MAX_LINE_BYTES = 64 * 1024


@dataclass(slots=True)
class Catalogue:
    """The products of a catalogue file and the lines left out, as ``(line number, why)``."""

    products: list[dict] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def read_catalogue(path: str | os.PathLike[str]) -> Catalogue:
    """Read a JSONL catalogue; a line that is not a valid product is skipped with its reason
    (blank lines are ignored). A file that cannot be read is a ConfigError."""
    out = Catalogue()
    try:
        with Path(path).open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                reason = _check_line(line, out.products)
                if reason is not None:
                    out.skipped.append((number, reason))
    except OSError as exc:
        raise ConfigError(f"cannot read the catalogue {path}: {exc}") from None
    return out


def _check_line(line: bytes, products: list[dict]) -> str | None:
    if len(line) > MAX_LINE_BYTES:
        return f"longer than {MAX_LINE_BYTES} bytes"
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    if not isinstance(doc, dict):
        return f"expected a JSON object (a product), got {type(doc).__name__}"
    first = next(iter_errors(SCHEMA, doc), None)
    if first is not None:
        return f"not a product: {first}"
    products.append(doc)
    return None


def catalogue_phrases(products: Iterable[dict], *, price: PriceMode,
                      event_types: Sequence[str] = PRODUCT_EVENT_TYPES) -> list[str]:
    """The distinct phrases of ``products`` under each of ``event_types``, in first-seen order."""
    phrases: dict[str, None] = {}
    for product in products:
        for event_type in event_types:
            phrases[event_phrase({"event_type": event_type, "product": product},
                                 price=price)] = None
    return list(phrases)


async def embed_phrases(vectors: EventVectors, phrases: Sequence[str], *, chunk: int = 1024,
                        progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Look every phrase up through ``vectors`` (its store: unseen phrases are encoded and
    written), ``chunk`` at a time. Returns (found already, encoded now)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    before = vectors.process_hits + vectors.store_hits, vectors.encoded
    for start in range(0, len(phrases), chunk):
        part = phrases[start:start + chunk]
        await vectors.vectors(part)
        if progress is not None:
            progress(len(part))
    return (vectors.process_hits + vectors.store_hits - before[0], vectors.encoded - before[1])
