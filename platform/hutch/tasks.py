"""Task: a registered function with its options, and the ``@app.task`` decorator.

The options are checked here, when a task is declared: a rate limit that is not
a rate (:func:`parse_rate`, which the worker's rate limiter uses too) fails at
import, not in the worker."""

from __future__ import annotations

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
    extra: dict[str, Any] = field(default_factory=dict)


OPTION_NAMES = frozenset(f.name for f in fields(TaskOptions)) - {"extra"}


class Task:
    """A task registered on an app. Calling it runs the function here and now."""

    def __init__(self, app: Hutch, fn: Callable[..., Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    # -- running ------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run locally. A bound task sees an eager request unless a worker set one."""
        if current_request() is None:
            token = set_request(Request(id="eager", task=self.name, args=args, kwargs=kwargs,
                                        is_eager=True))
            try:
                return self.run(*args, **kwargs)
            finally:
                reset_request(token)
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(self, *args, **kwargs) if self.options.bind else self.fn(*args, **kwargs)

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

    # -- sending ------------------------------------------------------------------
    def apply_async(self, args: tuple[Any, ...] | list[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Send this task with call options (see the options table in docs/guide.md);
        under ``task_always_eager``, :meth:`apply` it instead (hutch.client.eager)."""
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
        if known is not None and known.fn is not task.fn:
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


def task_name(fn: Callable[..., Any], main: str | None) -> str:
    """``module.function``; a function in ``__main__`` takes the app's main name."""
    module = fn.__module__
    if module == "__main__" and main:
        module = main
    return f"{module}.{fn.__name__}"


def build_options(fn: Callable[..., Any], main: str | None, given: dict[str, Any]) -> TaskOptions:
    unknown = set(given) - OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"@app.task: unknown option(s) {', '.join(sorted(unknown))} for {fn.__name__}")
    name = given.pop("name", None) or task_name(fn, main)
    if "autoretry_for" in given:
        given["autoretry_for"] = tuple(given["autoretry_for"])
    parse_rate(given.get("rate_limit"), name)  # a typo fails at import, not in the worker
    for limit in ("time_limit", "soft_time_limit"):
        if given.get(limit) is not None:
            given[limit] = time_limit(f"@app.task {name}: {limit}", given[limit])
    check_time_limits(f"@app.task {name}", given.get("soft_time_limit"), given.get("time_limit"))
    return TaskOptions(name=name, **given)


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
