"""Click events in: schema loading and validation, parsing, dead letters, file adapters."""

from worker.events.deadletter import dead_letter
from worker.events.parse import format_ts, parse_event
from worker.events.schemas import validate

__all__ = ["dead_letter", "format_ts", "parse_event", "validate"]
