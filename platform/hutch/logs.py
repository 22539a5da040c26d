"""structlog configuration: console lines on a terminal, JSON lines otherwise.

Task id and name are bound through contextvars by the executor, so every line a
task logs (through structlog or the standard logging module) carries them.
Any URL credentials that reach a log line are masked by a processor, whatever
code produced the line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .config import mask_secrets


def _mask_processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask_secrets(value)
    return event


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up structlog and route the standard library's logging through it."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (structlog.dev.ConsoleRenderer() if fmt == "console"
                     else structlog.processors.JSONRenderer())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_processor,
    ]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.processors.format_exc_info if fmt == "json"
                    else structlog.dev.set_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika and aiormq log every failed connection attempt at ERROR with a traceback;
    # hutch reports those itself as one line, so theirs are kept out of the way.
    for chatty in ("pika", "aiormq", "aio_pika"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    for noisy in ("sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
