"""Log output of the entry points: plain text by default, or JSON lines.

``configure_logging`` gives the root logger one handler on stderr, with the
``RedactingFilter`` on it, in the format of ``CACHECORE_LOG_FORMAT``: ``text``
lines, or ``json``, one object a line with ``time`` (ISO 8601, UTC), ``level``,
``logger`` and ``message``, then the record's structured ``fields`` (a mapping
given as ``extra={"fields": {...}}``, such as the line of each call to AWS) and
``exception`` when there is a traceback. ``GunicornLogger`` sends gunicorn's own
lines to that handler too, so that one process writes one format.

This module loads neither Falcon nor gunicorn: the Lambda extension imports it
before anything else.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cachecore import RedactingFilter

__all__ = [
    "TEXT_FORMAT",
    "JsonFormatter",
    "configure_logging",
    "gunicorn_logger_class",
    "set_log_format",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The keys every JSON line starts with; a field of the same name is left out.
_BASE_KEYS = ("time", "level", "logger", "message")


def _scalar(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a line never breaks, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        moment = datetime.fromtimestamp(record.created, UTC)
        document: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                if str(key) not in _BASE_KEYS:
                    document[str(key)] = _scalar(value)
        # exc_text first: RedactingFilter leaves the traceback there, checked.
        if record.exc_text:
            document["exception"] = record.exc_text
        elif record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        # ASCII only: U+2028 and the other line separators stay escaped.
        return json.dumps(document, ensure_ascii=True)


def _formatter(log_format: str, text_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(text_format)


def configure_logging(
    level: str | int, log_format: str = "text", *, text_format: str = TEXT_FORMAT
) -> RedactingFilter:
    """Log to stderr at ``level`` in ``log_format``; returns the handler's filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(log_format, text_format))
    redactor = RedactingFilter()
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return redactor


def set_log_format(log_format: str, *, text_format: str = TEXT_FORMAT) -> None:
    """Switch the handlers of the root logger to ``log_format``."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_formatter(log_format, text_format))


def gunicorn_logger_class() -> type[Any]:
    """The ``Logger`` of gunicorn, writing through the root logger's handlers.

    gunicorn gives its loggers handlers and a format of their own; this one drops
    them after each ``setup``, so that its lines take the format, and the filter,
    that ``configure_logging`` set up. Levels stay gunicorn's.
    """
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in list(log.handlers):
                    log.removeHandler(handler)
                log.propagate = True

    return GunicornLogger
