"""What training and evaluation share: events from files, labelled examples, user splits,
prediction metrics and a progress bar.

Importing this package does no work and loads neither torch nor scikit-learn.
"""

from worker.dataset.examples import (
    DEFAULT_HORIZON_S,
    DEFAULT_MAX_EVENTS,
    DEFAULT_WINDOW_SECONDS,
    LABEL_DEFINITION,
    Example,
    LabelSpec,
    build_examples,
)
from worker.dataset.loading import LoadResult, data_fingerprint, events_fingerprint, load_events
from worker.dataset.metrics import compute_metrics
from worker.dataset.progress import bar
from worker.dataset.split import (
    DEFAULT_SPLIT_SEED,
    inner_user_split,
    time_split,
    user_fold,
    user_split,
)

__all__ = [
    "DEFAULT_HORIZON_S", "DEFAULT_MAX_EVENTS", "DEFAULT_SPLIT_SEED", "DEFAULT_WINDOW_SECONDS",
    "LABEL_DEFINITION", "Example", "LabelSpec", "LoadResult", "bar", "build_examples",
    "compute_metrics", "data_fingerprint", "events_fingerprint", "inner_user_split",
    "load_events", "time_split", "user_fold", "user_split",
]
