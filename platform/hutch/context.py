"""The request a task is running for, kept in a context variable.

A context variable (not a thread-local or a global) is right for every pool:
each thread, and each asyncio task, sees the request of the task it runs, and
``self.request`` on a shared Task object stays correct under concurrency.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    """What ``self.request`` shows inside a bound task (``@app.task(bind=True)``)."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    queue: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    hostname: str | None = None
    is_eager: bool = False
    """True when the task was called directly rather than run by a worker."""


_current: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "hutch_request", default=None)


def current_request() -> Request | None:
    """The request of the task running in this context, if any."""
    return _current.get()


def set_request(request: Request | None) -> contextvars.Token[Request | None]:
    return _current.set(request)


def reset_request(token: contextvars.Token[Request | None]) -> None:
    _current.reset(token)
