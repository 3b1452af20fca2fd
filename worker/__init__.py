"""intent-worker: streaming purchase-intent scoring.

Nothing here does work at import time; build a :class:`worker.settings.Settings`
at the entry point and pass it down.
"""

__version__ = "0.1.0"
