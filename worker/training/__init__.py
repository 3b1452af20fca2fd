"""Training: the BERT fusion model and the GBDT baseline, written as a model directory.

The inputs (events, labelled examples, user splits) come from :mod:`worker.dataset`.
Importing this package does no work and loads neither torch nor scikit-learn (the
functions that need them import them).
"""

from worker.training.baseline import Baseline, fit_baseline, load_baseline
from worker.training.train import TrainReport, train

__all__ = ["Baseline", "TrainReport", "fit_baseline", "load_baseline", "train"]
