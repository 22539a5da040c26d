"""Hutch: the application object that owns settings, the task registry and the client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any, overload

from . import celery_names, discovery
from .annotations import annotate
from .beat.api import Schedules
from .client.handles import AsyncResult
from .client.sync import Client
from .config import SETTING_NAMES, Settings
from .current import set_current_app
from .errors import ConfigurationError, NotRegistered
from .ops.control import Control
from .shared import attach_shared
from .tasks import Task, TaskRegistry, class_task, task_from_function
from .workflows.builtins import register_builtins
from .workflows.canvas import Signature, signature


class Hutch:
    """``Hutch("tasks", broker=..., backend=..., **settings)``.

    Creating an app opens no connection; the broker and database are reached on
    first use, so importing a tasks module is always cheap and side-effect free.
    """

    def __init__(self, main: str | None = None, *, broker: str | None = None,
                 backend: str | None = None, **settings: Any) -> None:
        self.main = main
        self.conf = Settings.build(broker, backend, **settings)
        self.tasks = TaskRegistry(on_add=self._annotate)
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._discoveries: list[tuple[discovery.Packages, str | None]] = []
        self._finalized = False
        register_builtins(self)
        set_current_app(self)
        attach_shared(self)  # the tasks declared with @shared_task (hutch.shared)

    # -- tasks --------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[..., Any]) -> Task: ...

    @overload
    def task(self, fn: None = None, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...

    def task(self, fn: Callable[..., Any] | None = None,
             **options: Any) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a function as a task: ``@app.task`` or ``@app.task(bind=True, ...)``.

        Typed with overloads so that a decorated function is a ``Task`` to type checkers
        (strict mypy rejects a decorator that returns ``Any``)."""
        base = options.pop("base", None)  # Celery's base=MyTask (hutch.tasks.task_from_function)

        def register(func: Callable[..., Any]) -> Task:
            task = task_from_function(self, func, dict(options), base)
            self.tasks.add(task)
            return task
        if fn is not None:
            if options:
                raise ConfigurationError("use @app.task(...) with keywords, or @app.task alone")
            return register(fn)
        return register

    def register_task(self, task: Task | type[Task], **options: Any) -> Task:
        """Register a class-based task: ``app.register_task(MyTask())`` as in Celery 5 (the
        class itself is accepted too); its class attributes are its options, ``options``
        override them. Returns the registered instance."""
        registered = class_task(self, task, options)
        self.tasks.add(registered)
        return registered

    def get_task(self, name: str) -> Task:
        if name not in self.tasks and not self._finalized:
            self.finalize()  # the task may be in a module still to import
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered.in_app(name, self.main) from None

    # -- finding task modules (hutch.discovery) ---------------------------------------
    def autodiscover_tasks(self, packages: discovery.Packages = None,
                           related_name: str | None = "tasks", force: bool = False) -> None:
        """Import ``<package>.tasks`` of each package when the app is finalized (the
        worker, ``hutch -A``), or now with ``force``. ``packages`` may be a function
        returning them; None means Django's installed apps (Celery's meaning)."""
        if force or self._finalized:
            discovery.discover(packages, related_name)
        else:
            self._discoveries.append((packages, related_name))

    def finalize(self) -> None:
        """Import the task modules: the autodiscovered ones, then ``imports`` and
        ``include`` (after ``django.setup()`` when ``DJANGO_SETTINGS_MODULE`` is set);
        then apply ``task_annotations`` to every task. Once per app (the
        CLI calls it for every ``hutch -A`` command, so a worker knows its tasks);
        an import that fails is a ConfigurationError naming the module."""
        if self._finalized:
            return
        self._finalized = True  # modules imported below may register or discover more
        try:
            discovery.setup_django()  # before any task module, as Celery's Django fix-up
            while self._discoveries:
                discovery.discover(*self._discoveries.pop(0))
            discovery.import_modules(self.conf.imports, "imports")
            discovery.import_modules(self.conf.include, "include")
            for task in list(self.tasks.values()):
                self._annotate(task)
        except BaseException:
            self._finalized = False
            raise

    def _annotate(self, task: Task) -> None:
        annotate(task, self.conf.task_annotations)

    # -- configuration (Celery's loaders; docs/celery.md) ----------------------------
    def config_from_object(self, obj: object, *, namespace: str | None = None,
                           silent: bool = False, force: bool = False) -> bool:
        """Read settings from a module path (``"proj.settings"``,
        ``"django.conf:settings"``), module, class, object or mapping; with
        ``namespace="CELERY"`` only ``CELERY_*`` names, Django style. The config file
        and ``HUTCH_*`` variables still override them. ``silent``: a module that cannot
        be imported returns False instead of raising. ``force`` is Celery's and changes
        nothing: hutch always reads at once, so a bad value fails on this line."""
        try:
            source = celery_names.import_object(obj) if isinstance(obj, str) else obj
        except ConfigurationError:
            if silent:
                return False
            raise
        self.conf.update_as_code(celery_names.read_object(source, namespace, SETTING_NAMES))
        return True

    def config_from_envvar(self, variable_name: str, *, namespace: str | None = None,
                           silent: bool = False, force: bool = False) -> bool:
        """:meth:`config_from_object` of the module path in ``$variable_name``
        (``silent``: False instead of an error when it is unset or cannot be imported)."""
        try:
            path = celery_names.module_from_envvar(variable_name)
        except ConfigurationError:
            if silent:
                return False
            raise
        return self.config_from_object(path, namespace=namespace, silent=silent)

    # -- producing and reading ------------------------------------------------------
    def client(self) -> Client:
        """The app's shared client (thread-safe; opened on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(tasks=self.tasks, conf=self.conf)
        return self._client

    def send_task(self, name: str, args: tuple[Any, ...] = (),
                  kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Celery's spelling of ``client.submit``."""
        return self.client().submit(name, *args, kwargs=kwargs, **options)

    @property
    def control(self) -> Control:
        """``app.control.revoke(ids, terminate=False, signal="SIGTERM")``."""
        return Control(self.client())

    @cached_property
    def schedules(self) -> Schedules:
        """``app.schedules.add/edit/enable/disable/remove/run_now/list/get``: the beat
        schedules in the result database, edited while beat runs (docs/beat.md)."""
        return Schedules(self.conf, self.client)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        return AsyncResult(task_id, self.client())

    def signature(self, name: str, args: tuple[Any, ...] = (),
                  kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        return signature(name, args, kwargs, options, app=self)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"<Hutch {self.main or '(unnamed)'} tasks={len(self.tasks)}>"
