"""What became of each published score: outcomes from the stream, live quality and drift.

:mod:`worker.outcomes.live` keeps rolling live-quality and drift figures per model.
"""
