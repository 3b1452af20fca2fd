"""The intent model: text encoder + fusion head, model directories, the shipped default.

Importing this package loads no torch; the torch-backed names (``IntentModel``,
``FusionHead``, ``TextEncoder``) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.model.config import (
    FORMAT,
    DataSection,
    LabelSection,
    ModelConfig,
    SplitSection,
    WindowSection,
)
from worker.model.loading import load_model
from worker.model.modeldir import read_config, save_model_dir
from worker.model.shipped import default_model_path, init_default

if TYPE_CHECKING:
    from worker.model.encoder import TextEncoder
    from worker.model.head import FusionHead
    from worker.model.intent import IntentModel

__all__ = [
    "FORMAT", "DataSection", "FusionHead", "IntentModel", "LabelSection", "ModelConfig",
    "SplitSection", "TextEncoder", "WindowSection", "default_model_path", "init_default",
    "load_model", "read_config", "save_model_dir",
]

_LAZY = {"IntentModel": "worker.model.intent", "FusionHead": "worker.model.head",
         "TextEncoder": "worker.model.encoder"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
