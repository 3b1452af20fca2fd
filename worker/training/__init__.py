"""Training: labelled examples from event files, user splits, the GBDT baseline, ``train``.

Importing this package does no work and loads neither torch nor scikit-learn (the
functions that need them import them).
"""

from worker.training.baseline import Baseline, fit_baseline, load_baseline
from worker.training.data import LoadResult, data_fingerprint, load_events
from worker.training.examples import Example, LabelSpec, build_examples
from worker.training.split import time_split, user_split
from worker.training.train import TrainReport, train

__all__ = [
    "Baseline", "Example", "LabelSpec", "LoadResult", "TrainReport", "build_examples",
    "data_fingerprint", "fit_baseline", "load_baseline", "load_events", "time_split", "train",
    "user_split",
]
