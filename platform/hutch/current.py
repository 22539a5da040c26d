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
from typing import Any

from .errors import ConfigurationError
from .messages import Request

_apps: list[Any] = []


def set_current_app(app: Any) -> None:
    _apps[:] = [app]


def current_app() -> Any:
    if not _apps:
        raise ConfigurationError(
            "no hutch app exists yet: create Hutch(...) or pass app= to signature()")
    return _apps[0]


_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "hutch_request", default=None)


def current_request() -> Request | None:
    """The request of the task running in this context, if any."""
    return _request.get()


def set_request(request: Request | None) -> contextvars.Token[Request | None]:
    return _request.set(request)


def reset_request(token: contextvars.Token[Request | None]) -> None:
    _request.reset(token)
