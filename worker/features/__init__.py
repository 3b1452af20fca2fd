"""Window -> model input: a text for the encoder and numeric context features.

Pure Python and deterministic (no torch, no wall clock); shared by serving and training.
"""

from worker.features.context import FEATURE_NAMES, context_features
from worker.features.facts import EventCache
from worker.features.inputs import ModelInput, build_input
from worker.features.sequence import EventSequence
from worker.features.text import build_text

__all__ = ["FEATURE_NAMES", "EventCache", "EventSequence", "ModelInput", "build_input",
           "build_text", "context_features"]
