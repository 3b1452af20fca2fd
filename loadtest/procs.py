"""A process' memory as ``/proc/<pid>/status`` reports it, for the load tools' samples."""

from __future__ import annotations

from pathlib import Path

__all__ = ["peak_rss_mib", "rss_mib", "status_mib"]


def status_mib(pid: int, field: str) -> float | None:
    """The ``field`` line (``VmRSS``, ``VmHWM``, ...) of the process' status, MiB; None where
    the process or /proc is gone, or the line is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mib(pid: int) -> float | None:
    """The process' resident set now, MiB."""
    return status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float | None:
    """The process' peak resident set (``VmHWM``), MiB."""
    return status_mib(pid, "VmHWM")
