"""Logging for the command line: text or JSON lines, with repeated messages counted."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Hashable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; the others came from ``extra=`` and go into JSON.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON with time, level, logger, message and extra fields."""
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key != "repeat_key":
                entry[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RepeatFilter(logging.Filter):
    """Let the first record of each ``repeat_key`` through and count the rest.

    A record carries a key with ``extra={"repeat_key": ...}``; records without one
    always pass. ``flush`` logs one line per key that was repeated since the last
    flush, with the count and the last message.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[Hashable] = set()
        self._repeats: dict[Hashable, tuple[int, logging.LogRecord]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Return True for the first record of a key and for records without a key."""
        key = getattr(record, "repeat_key", None)
        if key is None or getattr(record, "repeat_summary", False):
            return True
        if key not in self._seen:
            self._seen.add(key)
            return True
        count, _ = self._repeats.get(key, (0, record))
        self._repeats[key] = (count + 1, record)
        return False

    def flush(self, logger: logging.Logger) -> None:
        """Log the counts of repeated records since the last flush, then reset them."""
        repeats, self._repeats = self._repeats, {}
        for key, (count, record) in repeats.items():
            logger.log(
                record.levelno,
                "repeated %d more times since the last summary, last: %s",
                count,
                record.getMessage(),
                extra={"repeat_key": key, "repeat_summary": True, "repeats": count},
            )


def configure_logging(level: str, log_format: str) -> RepeatFilter:
    """Send stressor's logs to standard error in ``text`` or ``json``; return the filter."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    repeat_filter = RepeatFilter()
    handler.addFilter(repeat_filter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return repeat_filter
