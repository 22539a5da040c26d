"""Logging: hutch's own loggers, and the output the ``hutch`` processes set up.

hutch is a library first, so its modules never configure logging and never
print. Each module logs through :func:`get_logger`, a structlog logger bound to
the standard library logger of the same name (``hutch.amqp``, ``hutch.client``,
``hutch.worker`` ...) with its own processor chain, independent of structlog's
global configuration: an application that configures structlog (or does not)
is left as it is, and it sees hutch's lines wherever its ``logging`` setup sends
the ``hutch`` logger. With no setup at all, Python's defaults apply: nothing
below WARNING, and warnings as one plain line on stderr.

Each record's ``msg`` is the event dict; its ``str()`` is ``event key=value ...``,
so a plain ``logging.Formatter`` prints a readable line and a structlog
``ProcessorFormatter`` renders the fields.

:func:`configure` is for the ``hutch`` command only (worker, beat, web, submit
...): one handler on the root logger writing to stderr, console lines on a
terminal and JSON lines otherwise, and structlog's global configuration routed
into it so task code that logs with structlog lands there too. Task id and name
are bound through contextvars by the executor, so every line a task logs carries
them. URL credentials that reach a log line are masked by a processor, whatever
code produced the line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .config import mask_secrets

_HIDDEN_IN_TEXT = ("event", "level", "logger", "timestamp", "exc_info")


class LogEvent(dict):  # type: ignore[type-arg]
    """The event dict a hutch log record carries as its ``msg``."""

    def __str__(self) -> str:
        fields = " ".join(f"{key}={_text(value)}" for key, value in self.items()
                          if key not in _HIDDEN_IN_TEXT)
        return f"{self.get('event', '')} {fields}".rstrip()


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value and " " not in value else repr(value)


def _mask_processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask_secrets(value)
    return event


def _to_stdlib(logger: Any, method_name: str, event: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Last processor: hand the event to the stdlib logger as a record whose ``msg`` is a
    :class:`LogEvent`, with the extras a structlog ``ProcessorFormatter`` recognises."""
    exc_info = event.get("exc_info")
    if exc_info is True:
        exc_info = event["exc_info"] = sys.exc_info()
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method_name}}
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (LogEvent(event),), kwargs


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _mask_processor,
]
_CHAIN: list[Any] = [structlog.stdlib.filter_by_level, *_SHARED, _to_stdlib]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """The logger for hutch module ``name`` (``hutch.…``): standard logging underneath,
    whatever structlog is configured to do globally."""
    return structlog.stdlib.BoundLogger(logging.getLogger(name), _CHAIN, {})


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is emitted, not as it was when the
    process set up its output: a caller that swaps stderr for a while (a test runner
    invoking the CLI) and closes its stand-in leaves no handler writing to a closed file
    for the threads that log later."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up output for a ``hutch`` process (never called by library code): one stderr
    handler on the root logger; structlog's global configuration routed into it."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: list[Any] = ([structlog.dev.ConsoleRenderer()] if fmt == "console" else
                           [structlog.processors.format_exc_info,
                            structlog.processors.JSONRenderer()])
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika and aiormq log every failed connection attempt at ERROR with a traceback;
    # hutch reports those itself as one line, so theirs are kept out of the way.
    for chatty in ("pika", "aiormq", "aio_pika"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    # httpx logs each request to RabbitMQ's management API at INFO (broker_management_url)
    for noisy in ("sqlalchemy", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
