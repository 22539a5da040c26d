"""``capture_logs()``: the event dicts hutch's own loggers emit, for assertions.

hutch logs through the standard ``logging`` tree (hutch.logs), not through
structlog's global configuration, so structlog.testing.capture_logs does not
see it; this collects every ``hutch.*`` record at any level instead, with the
same ``log_level`` key structlog's helper adds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        event = dict(record.msg) if isinstance(record.msg, dict) else {
            "event": record.getMessage()}
        event["log_level"] = record.levelname.lower()
        self.events.append(event)


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    logger = logging.getLogger("hutch")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
