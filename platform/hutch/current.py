"""The most recently created app, for signatures built by name without one.

Nothing is created on import: until a :class:`hutch.Hutch` exists there is no
current app, and asking for one is a clear error rather than a hidden default.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError

_current: list[Any] = []


def set_current_app(app: Any) -> None:
    _current[:] = [app]


def current_app() -> Any:
    if not _current:
        raise ConfigurationError(
            "no hutch app exists yet: create Hutch(...) or pass app= to signature()")
    return _current[0]
