"""``@shared_task``: a task declared without an app, for reusable apps and Django.

Celery's meaning: the task is registered on every app, those that exist when it is
declared and those created later (each gets its own Task), and using it (calling,
``delay()``, ``s()``...) uses the task of the *current* app (hutch.current: the app
created last). A prefork child imports the app's module, so its app registers the
shared tasks the module imports, as the supervisor's did.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from .current import current_app
from .errors import ConfigurationError
from .tasks import Task, build_options, task_from_function, task_name

if TYPE_CHECKING:
    from .app import Hutch

_lock = threading.Lock()
_declared: dict[tuple[str, str], Declaration] = {}
"""Every shared task by (module, qualified name): a module imported again redeclares it."""
_apps: weakref.WeakSet[Hutch] = weakref.WeakSet()


@dataclass(frozen=True)
class Declaration:
    """A function and the ``@shared_task`` options it was declared with."""

    fn: Callable[..., Any]
    options: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.fn.__module__, self.fn.__qualname__)

    def name_in(self, app: Hutch | None) -> str:
        return self.options.get("name") or task_name(self.fn, app.main if app else None)

    def register(self, app: Hutch) -> Task:
        options = dict(self.options)
        base = options.pop("base", None)
        task = task_from_function(app, self.fn, options, base)
        app.tasks.add(task)
        return task


class SharedTask:
    """What ``@shared_task`` returns: stands for the task of that name in the current
    app; every attribute (``delay``, ``apply_async``, ``s``, ``name``, ``request``...)
    is that task's."""

    def __init__(self, declaration: Declaration) -> None:
        self._declaration = declaration
        fn = declaration.fn
        self.__doc__, self.__wrapped__ = fn.__doc__, fn
        self.__name__, self.__qualname__, self.__module__ = \
            fn.__name__, fn.__qualname__, fn.__module__

    def _task(self) -> Task:
        """The current app's task, registered now if that app has not got it."""
        app = current_app()
        task = app.tasks.get(self._declaration.name_in(app))
        return task if task is not None else self._declaration.register(app)

    @property
    def name(self) -> str:
        """The task's name in the current app (before any app: without one)."""
        try:
            return self._task().name
        except ConfigurationError:
            return self._declaration.name_in(None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self._task(), attribute)

    def __repr__(self) -> str:
        return f"<shared task {self._declaration.name_in(None)}>"


@overload
def shared_task(fn: Callable[..., Any]) -> SharedTask: ...


@overload
def shared_task(fn: None = None, **options: Any) -> Callable[[Callable[..., Any]], SharedTask]: ...


def shared_task(fn: Callable[..., Any] | None = None,
                **options: Any) -> SharedTask | Callable[[Callable[..., Any]], SharedTask]:
    """``@shared_task`` or ``@shared_task(bind=True, name=..., base=...)``: the options
    of ``@app.task``, checked here (a typo fails at import, before any app exists)."""
    def declare(func: Callable[..., Any]) -> SharedTask:
        given = {k: v for k, v in options.items() if k != "base"}
        build_options(func, None, given)  # checks the options and names the errors
        declaration = Declaration(func, dict(options))
        with _lock:
            _declared[declaration.key] = declaration
            apps = list(_apps)
        for app in apps:
            declaration.register(app)
        return SharedTask(declaration)
    if fn is not None:
        if options:
            raise ConfigurationError("use @shared_task(...) with keywords, or @shared_task alone")
        return declare(fn)
    return declare


def attach_shared(app: Hutch) -> None:
    """Register every shared task on a new app, and the later ones as they are declared."""
    with _lock:
        _apps.add(app)
        declarations = list(_declared.values())
    for declaration in declarations:
        declaration.register(app)
