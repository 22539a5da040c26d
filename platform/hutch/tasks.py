"""Task: a registered function with its options, and the ``@app.task`` decorator.

The options are checked here, when a task is declared: a rate limit that is not
a rate (:func:`parse_rate`, which the worker's rate limiter uses too) fails at
import, not in the worker."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .call_options import check_time_limits, time_limit
from .current import current_request, reset_request, set_request
from .errors import ConfigurationError, Replaced, Retry
from .messages import Request
from .retries import retry_changes
from .workflows.canvas import MAP_TASK, STARMAP_TASK, Signature, chunks, materialise
from .workflows.replace import replacement, run_eagerly

if TYPE_CHECKING:
    from .app import Hutch
    from .client.eager import EagerResult
    from .client.handles import AsyncResult


@dataclass(frozen=True)
class TaskOptions:
    """Per-task defaults; every call option can still override them per call."""

    name: str
    bind: bool = False
    queue: str | None = None
    serializer: str | None = None
    compression: str | None = None
    acks_late: bool | None = None
    ignore_result: bool | None = None
    max_retries: int | None = 3
    default_retry_delay: float = 180.0
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    rate_limit: str | float | None = None
    """``"100/s"``, ``"10/m"``, ``"1/h"`` or a number per second, per worker process."""
    time_limit: float | None = None
    soft_time_limit: float | None = None
    priority: int | None = None
    typing: bool = True
    """Check the arguments of ``delay()``/``apply_async()`` against the task's signature."""
    extra: dict[str, Any] = field(default_factory=dict)


OPTION_NAMES = frozenset(f.name for f in fields(TaskOptions)) - {"extra"}


class Task:
    """A task registered on an app. Calling it runs the function here and now.

    Subclass it for a class-based task, as in Celery: define ``run()``, set options
    (``name``, ``queue``, ``max_retries``...) as class attributes, which are the task's
    defaults, and register an instance with ``app.register_task(MyTask())``. A subclass
    given as ``@app.task(base=MyTask)`` runs the decorated function instead of ``run``.
    Either may define the hooks below; the worker (and ``apply()``) calls them in the
    process that ran the task (hutch.hooks). Every option is readable on the task
    (``self.max_retries``), from :attr:`options`, the values in force.
    """

    app: Hutch
    fn: Callable[..., Any] | None
    """The decorated function; None for a class-based task, which runs ``run()``."""
    options: TaskOptions
    name: str

    def __init__(self, app: Hutch | None = None, fn: Callable[..., Any] | None = None,
                 options: TaskOptions | None = None) -> None:
        if app is not None and options is not None:
            self.attach(app, fn, options)

    def attach(self, app: Hutch, fn: Callable[..., Any] | None, options: TaskOptions) -> None:
        """Bind to ``app`` with ``options``; a subclass instance is built without them
        (Celery's ``MyTask()``) and attached when registered."""
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn if fn is not None else self.run)
        self._signature: inspect.Signature | None = None
        if fn is not None:
            self.__doc__ = fn.__doc__
            self.__wrapped__ = fn

    # -- hooks (Celery's; called by hutch.hooks, in the process that ran the task) ----
    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        """After a success is recorded."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        """After a failure is recorded; ``einfo`` is a hutch.hooks.ExceptionInfo."""

    def on_retry(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], einfo: Any) -> None:
        """After a retry is scheduled; ``exc`` is its reason, which ``einfo`` describes."""

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], einfo: Any) -> None:
        """After on_success or on_failure (not after a retry), with the final state."""

    # -- running ------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run locally. A bound task sees an eager request unless a worker set one.

        Workers and ``apply()`` run every task through this, so a subclass may override it
        to wrap each run (Celery's ``ContextTask``: ``with ctx: return self.run(...)``)."""
        if current_request() is None:
            token = set_request(Request(id="eager", task=self.name, args=args, kwargs=kwargs,
                                        is_eager=True))
            try:
                return self.run(*args, **kwargs)
            finally:
                reset_request(token)
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.fn
        if fn is None:
            raise ConfigurationError(f"{self.name}: a Task subclass must define run()")
        return fn(self, *args, **kwargs) if self.options.bind else fn(*args, **kwargs)

    @property
    def request(self) -> Request:
        """The request being executed in this context (``self.request`` in bound tasks)."""
        request = current_request()
        if request is None:
            raise ConfigurationError(f"{self.name}: self.request is only set while the task runs")
        return request

    def retry(self, exc: BaseException | None = None, countdown: float | None = None,
              eta: Any = None, max_retries: int | None = None, *, args: Any = None,
              kwargs: Any = None, queue: str | None = None, expires: Any = None,
              priority: int | None = None, throw: bool = True, **options: Any) -> Retry:
        """Ask the worker to run this task again; raise the returned error: ``raise self.retry()``.

        Raises it itself too, so ``self.retry(...)`` alone works as in Celery. The next
        attempt keeps this one's message but for ``args``, ``kwargs``, ``queue``,
        ``expires`` (seconds from now or a datetime) and ``priority`` when given; a bad
        one is a ConfigurationError naming it. ``throw=False`` returns the Retry instead:
        the worker retries once the task returns, discarding its value (docs/guide.md,
        "Retries").
        """
        if options:
            raise ConfigurationError(f"{self.name}: retry(): unknown option(s) "
                                     f"{', '.join(sorted(options))} (hutch takes args, "
                                     "kwargs, queue, expires, priority)")
        request = current_request()
        here = request.queue if request else self.options.queue or self.app.conf.task_default_queue
        changes = retry_changes(self.app.conf, here, args=args, kwargs=kwargs,
                                new_queue=queue, expires=expires, priority=priority)
        retry = Retry(exc=exc, countdown=countdown, eta=eta, max_retries=max_retries,
                      changes=changes)
        if throw or request is None:
            raise retry
        object.__setattr__(request, "retry_later", retry)
        return retry

    def replace(self, sig: Signature) -> Any:
        """End this task and run ``sig`` (a task, chain, group or chord) in its place:
        the replacement takes over this task's id (``AsyncResult(id).get()`` gives its
        result), callbacks, errbacks and place in a chain, group or chord
        (hutch.workflows.replace). In a worker it raises :class:`~hutch.errors.Replaced`,
        which the worker handles (write ``return self.replace(sig)``); run eagerly it
        returns the replacement's result, a task's or a chain of tasks' only."""
        request = self.request
        if request.is_eager:
            return run_eagerly(self.app, sig)
        raise Replaced(replacement(sig, request))

    def apply(self, args: tuple[Any, ...] | list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, task_id: str | None = None,
              **options: Any) -> EagerResult:
        """Run here and now, as a worker would (``self.request.is_eager`` is True, retries
        run again at once) and return an :class:`~hutch.client.eager.EagerResult`. Nothing is
        sent to the broker and nothing is written to the result database (Celery's eager
        mode). ``throw=True``, or the ``task_eager_propagates`` setting, raises the task's
        exception here instead of keeping it in the result."""
        return self.app.client().apply(self, args, kwargs, {**options, "task_id": task_id})

    def check_arguments(self, args: tuple[Any, ...] | list[Any],
                        kwargs: dict[str, Any]) -> None:
        """A TypeError naming the task when a call does not fit its function (or ``run``;
        a bound task's ``self`` aside), unless the task says ``typing=False``: a wrong
        call fails where it is made, not later in a worker."""
        if not self.options.typing:
            return
        leading = (self,) if self.fn is not None and self.options.bind else ()
        try:
            self._call_signature().bind(*leading, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{_shown(args, kwargs)}: {exc}") from None

    def _call_signature(self) -> inspect.Signature:
        """The signature calls are checked against, inspected once per task."""
        sig = self._signature
        if sig is None:
            try:
                sig = inspect.signature(self.fn if self.fn is not None else self.run)
            except (TypeError, ValueError):  # not inspectable (a builtin): accept any call
                sig = inspect.Signature([
                    inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                    inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
            self._signature = sig
        return sig

    # -- sending ------------------------------------------------------------------
    def apply_async(self, args: tuple[Any, ...] | list[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Send this task with call options (see the options table in docs/guide.md);
        under ``task_always_eager``, :meth:`apply` it instead (hutch.client.eager). Arguments
        that do not fit the task's signature are a TypeError here (``typing=False``: not
        checked)."""
        self.check_arguments(args or (), kwargs or {})
        return self.app.client().submit(self.name, *(args or ()), kwargs=kwargs or {},
                                        **options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    def signature(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                  **options: Any) -> Signature:
        return Signature(self.name, args, kwargs, options, app=self.app)

    def map(self, items: Iterable[Any]) -> Signature:
        """One ``hutch.map`` task that calls this task on each item, on one worker."""
        return Signature(MAP_TASK, (), {"task": self.s().to_dict(), "it": materialise(items)},
                         app=self.app)

    def starmap(self, items: Iterable[Any]) -> Signature:
        """As :meth:`map`, with each item unpacked as the arguments: ``task(*item)``."""
        return Signature(STARMAP_TASK, (), {"task": self.s().to_dict(), "it": materialise(items)},
                         app=self.app)

    def chunks(self, items: Iterable[Any], n: int) -> chunks:
        """The items (argument tuples) in chunks of ``n``, each chunk one starmap task;
        applied as a group: ``add.chunks(zip(a, b), 10)()`` or ``.group()``."""
        return chunks(self.s(), items, n, app=self.app)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        return self.app.AsyncResult(task_id)

    def __repr__(self) -> str:
        return f"<task {self.name}>"


class TaskRegistry(Mapping[str, Task]):
    """The tasks of an app by name (``app.tasks``), and their options.

    The executor, the chord keeper and the clients are given this instead of the
    app when all they need is a task's defaults."""

    def __init__(self, on_add: Callable[[Task], None] | None = None) -> None:
        self._tasks: dict[str, Task] = {}
        self._on_add = on_add
        """Called with each task added (the app applies ``task_annotations``)."""

    def add(self, task: Task) -> None:
        """Register ``task``; another function under a taken name is a ConfigurationError."""
        known = self._tasks.get(task.name)
        if known is not None and _code(known) is not _code(task):
            raise ConfigurationError(f"task name {task.name!r} is registered twice")
        self._tasks[task.name] = task
        if self._on_add is not None:
            self._on_add(task)

    def options_for(self, name: str) -> TaskOptions:
        """The defaults of task ``name``; a producer without the task's code (an
        unknown name) gets the plain defaults, so the settings decide."""
        task = self._tasks.get(name)
        return task.options if task is not None else TaskOptions(name=name)

    def __getitem__(self, name: str) -> Task:
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)


def _code(task: Task) -> object:
    """What makes two registrations the same task: its function, or its class."""
    return task.fn if task.fn is not None else type(task)


def _shown(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"


def _option(name: str) -> property:
    return property(lambda task: getattr(task.options, name),
                    doc=f"The task's ``{name}`` (class attribute, decorator or default).")


for _name in sorted(OPTION_NAMES - {"name"}):
    setattr(Task, _name, _option(_name))  # a subclass's class attribute shadows it


def task_name(fn: Callable[..., Any], main: str | None) -> str:
    """``module.function`` (``module.Class`` for a class-based task); one in ``__main__``
    takes the app's main name."""
    module = fn.__module__
    if module == "__main__" and main:
        module = main
    return f"{module}.{fn.__name__}"


def build_options(fn: Callable[..., Any], main: str | None, given: dict[str, Any]) -> TaskOptions:
    unknown = set(given) - OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"@app.task: unknown option(s) {', '.join(sorted(unknown))} for {fn.__name__}")
    return _checked(given.pop("name", None) or task_name(fn, main), given)


def _checked(name: str, given: dict[str, Any]) -> TaskOptions:
    """TaskOptions from known option names, their values checked (naming the task)."""
    if "autoretry_for" in given:
        given["autoretry_for"] = tuple(given["autoretry_for"])
    if not isinstance(given.get("typing", True), bool):
        raise ConfigurationError(f"task {name}: typing must be True or False, "
                                 f"not {given['typing']!r}")
    parse_rate(given.get("rate_limit"), name)  # a typo fails at import, not in the worker
    for limit in ("time_limit", "soft_time_limit"):
        if given.get(limit) is not None:
            given[limit] = time_limit(f"@app.task {name}: {limit}", given[limit])
    check_time_limits(f"@app.task {name}", given.get("soft_time_limit"), given.get("time_limit"))
    return TaskOptions(name=name, **given)


# -- class-based tasks (Celery's Task subclasses) ----------------------------------------
def class_options(cls: type[Task]) -> dict[str, Any]:
    """The options a Task subclass (or a mixin of it) sets as class attributes; a
    ``name`` of None (Celery's default) is no name."""
    mro = cls.__mro__
    found: dict[str, Any] = {}
    for klass in reversed(mro[:mro.index(Task)]):
        found.update((k, v) for k, v in vars(klass).items() if k in OPTION_NAMES)
    if found.get("name") is None:
        found.pop("name", None)
    return found


def task_from_function(app: Hutch, fn: Callable[..., Any], given: dict[str, Any],
                       base: type[Task] | None = None) -> Task:
    """``@app.task``: a plain Task around ``fn``, or with ``base=``, an instance of a
    subclass of ``base`` made for ``fn`` (as Celery does) whose ``run`` is ``fn`` and
    whose class attributes are the base's, the decorator's options over them."""
    if base is None or base is Task:
        return Task(app, fn, build_options(fn, app.main, given))
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise ConfigurationError(
            f"@app.task: base= must be a subclass of hutch.Task, not {base!r} ({fn.__name__})")
    inherited = class_options(base)
    inherited.pop("name", None)  # the function names the task, not its base
    options = build_options(fn, app.main, {**inherited, **given})
    attrs: dict[str, Any] = {k: getattr(options, k) for k in inherited}
    attrs.update(__module__=fn.__module__, __qualname__=fn.__qualname__, __doc__=fn.__doc__,
                 run=Task.run)
    task: Task = type(fn.__name__, (base,), attrs)()
    task.attach(app, fn, options)
    return task


def class_task(app: Hutch, task: Task | type[Task], given: dict[str, Any]) -> Task:
    """``app.register_task(MyTask())`` (or the class): the instance attached to ``app``
    with its class attributes, and ``given``, as options. An instance attached to another
    app already is copied, so each app has its own."""
    if isinstance(task, type):
        if not issubclass(task, Task):
            raise ConfigurationError(f"register_task: {task!r} is not a subclass of hutch.Task")
        task = task()
    elif not isinstance(task, Task):
        raise ConfigurationError(
            f"register_task: expected a hutch.Task subclass or instance, not {task!r}")
    fn = getattr(task, "fn", None)
    if fn is None and type(task).run is Task.run:
        raise ConfigurationError(f"register_task: {type(task).__qualname__} defines no run()")
    if getattr(task, "app", app) is not app:
        task = copy.copy(task)
    if fn is not None:  # a function's task, registered again (on another app)
        current = {k: getattr(task.options, k) for k in OPTION_NAMES}
        task.attach(app, fn, build_options(fn, app.main, {**current, **given}))
        return task
    cls = type(task)
    merged = {**class_options(cls), **given}
    unknown = set(merged) - OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"register_task: unknown option(s) {', '.join(sorted(unknown))} for {cls.__name__}")
    name = merged.pop("name", None) or task_name(cls, app.main)
    task.attach(app, None, _checked(name, merged))
    return task


_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*([a-z]+))?\s*$")


def parse_rate(value: str | float | None, task: str) -> float | None:
    """Tasks per second for ``"100/s"``, ``"10/m"``, ``"1/h"`` or a bare number
    (per second); None for no limit (``None``, ``0``, ``""``). Anything else is a
    ConfigurationError naming the task, raised when the task is declared."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _bad_rate(task, value)
    if isinstance(value, (int, float)):
        amount, per = float(value), 1
    else:
        match = _RATE.match(str(value).lower()) if isinstance(value, str) else None
        if match is None or (match.group(2) and match.group(2) not in _UNITS):
            raise _bad_rate(task, value)
        amount, per = float(match.group(1)), _UNITS[match.group(2) or "s"]
    if amount < 0 or amount != amount or amount == float("inf"):
        raise _bad_rate(task, value)
    return amount / per if amount else None


def _bad_rate(task: str, value: Any) -> ConfigurationError:
    return ConfigurationError(
        f"task {task}: rate_limit {value!r} is not a rate such as '100/s', '10/m', '1/h' "
        "or a number per second")
