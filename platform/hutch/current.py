"""What is current: the most recent app, and the request of the task running here.

Nothing is created on import: until a :class:`hutch.Hutch` exists there is no
current app, and asking for one is a clear error rather than a hidden default.

The request is kept in a context variable (not a thread-local or a global), which
is right for every pool: each thread, and each asyncio task, sees the request of
the task it runs, and ``self.request`` on a shared Task object stays correct under
concurrency.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

_apps: list[Any] = []


def set_current_app(app: Any) -> None:
    _apps[:] = [app]


def current_app() -> Any:
    if not _apps:
        raise ConfigurationError(
            "no hutch app exists yet: create Hutch(...) or pass app= to signature()")
    return _apps[0]


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


_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "hutch_request", default=None)


def current_request() -> Request | None:
    """The request of the task running in this context, if any."""
    return _request.get()


def set_request(request: Request | None) -> contextvars.Token[Request | None]:
    return _request.set(request)


def reset_request(token: contextvars.Token[Request | None]) -> None:
    _request.reset(token)
