"""Micro-batching, per-user coalescing, off-loop inference and score records."""
