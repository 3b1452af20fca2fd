"""Logging set-up: plain text by default, one JSON object per line with ``INTENT_LOG_FORMAT=json``.

Nothing here logs event payloads: the worker logs counts, reasons and ids of its own
(batches, topics, model versions), never the raw text of an event.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["JsonFormatter", "logging_config", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"[, "exc"]}``, UTC timestamps, one line each."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``dictConfig`` for the settings' level and format (logs go to stderr)."""
    formatter: dict[str, Any] = ({"()": JsonFormatter} if settings.log_format == "json"
                                 else {"format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
    }


def setup_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
