"""``python -m tests.e2e.faulty_worker``: the worker with a parser that raises an unexpected error.

Any message whose value contains ``POISON`` makes ``parse_event`` raise ``RuntimeError``, the
stand-in for any bug a hostile message may hit inside parsing or validation (one was found:
jsonschema-rs's ValueError on deep nesting). Test-only; used by tests/e2e/test_faults.py.
"""

from __future__ import annotations

import sys

POISON = b"POISON"


def main() -> None:
    import worker.scoring.pipeline as pipeline

    real = pipeline.parse_event

    def parse_event(raw, *, max_bytes):
        if raw and POISON in raw:
            raise RuntimeError("unexpected failure while parsing")
        return real(raw, max_bytes=max_bytes)

    pipeline.parse_event = parse_event
    from worker.cli import main as cli

    sys.exit(cli(["run"]))


if __name__ == "__main__":
    main()
