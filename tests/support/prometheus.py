"""promtool, as the tests run it: found on PATH (./bootstrap installs Debian's prometheus
package, which has it), a missing binary a test failure that says so."""

from __future__ import annotations

import shutil
import subprocess

import pytest

__all__ = ["promtool"]


def promtool(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``promtool args...`` and return what it did (exit code, stdout, stderr); fail the
    calling test when promtool is not installed."""
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found on PATH: run ./bootstrap (it installs Debian's "
                    "prometheus package, which has promtool)")
    return subprocess.run([exe, *args], capture_output=True, text=True,  # noqa: S603
                          timeout=timeout_s, check=False)
