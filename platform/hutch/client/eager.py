"""Running a task here and now: ``task.apply()``, and what ``task_always_eager`` makes of
``delay()``/``apply_async()``/``client.submit``.

As in Celery's eager mode, nothing is sent to the broker and nothing is written to the
result database: the task runs in the calling thread, its outcome lives only in the
returned :class:`EagerResult`. It is meant for tests and scripts; a worker's guarantees
(acks, time limits, rate limits, rows, events) do not apply. ``self.retry()`` and
``autoretry_for`` run the task again at once, up to its ``max_retries`` (a countdown or
eta is not waited for), and the result is that of the last attempt. A chain of tasks
runs step by step (:func:`apply_chain`); groups, chords and ``link``/``link_error``
callbacks are not run eagerly: they are refused with a ConfigurationError rather than
sent (docs/guide.md, "Running tasks eagerly in tests").
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import socket
import traceback as tb
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import hooks
from ..call_options import build_message
from ..current import reset_request, set_request
from ..errors import ConfigurationError, NotRegistered, TaskRevokedError
from ..messages import Request, TaskMessage
from ..results.records import FAILURE, REVOKED, SUCCESS
from ..retries import RetryPlan, plan_retry
from ..workflows.canvas import Signature, chain
from .handles import AsyncResult

if TYPE_CHECKING:
    from ..config import Settings
    from ..tasks import Task, TaskRegistry

NOT_EAGER_OPTIONS = ("link", "link_error")
"""Call options an eager run refuses: callbacks would have to be sent or run too."""
IGNORED_OPTIONS = ("retry", "retry_policy", "throw")
"""Publish options that mean nothing when nothing is published (``throw`` is apply's own)."""


class EagerResult(AsyncResult):
    """The outcome of a task run by ``apply()`` (Celery's ``EagerResult``): always ready,
    read from memory, never from the result database. ``get()`` returns the value or
    raises the task's exception (``propagate``); ``result`` is the value or the exception.
    """

    def __init__(self, id: str, value: Any, state: str,  # noqa: A002 - Celery's name
                 traceback: str | None = None, name: str | None = None,
                 retries: int = 0) -> None:
        self.id = id
        self._parent = None
        self.ignored = False
        self._value = value
        self._state = state
        self._traceback = traceback
        self._name = name
        self.retries = retries
        self._done = dt.datetime.now(dt.timezone.utc)

    @property
    def state(self) -> str:
        return self._state

    status = state

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return self._state == SUCCESS

    def failed(self) -> bool:
        return self._state == FAILURE

    @property
    def result(self) -> Any:
        """The return value, or the exception the task failed with."""
        return self._value

    info = result

    @property
    def traceback(self) -> str | None:
        return self._traceback

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def date_done(self) -> Any:
        return self._done

    @property
    def parent(self) -> AsyncResult | None:
        """The previous step's EagerResult, for a chain run eagerly."""
        return self._parent if isinstance(self._parent, AsyncResult) else None

    @property
    def children(self) -> list[AsyncResult]:
        return []

    def revoke(self, terminate: bool = False, signal: str | int | None = None) -> None:
        """Marks this result REVOKED, as Celery does: the task has run already."""
        self._state = REVOKED

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None, disable_sync_subtasks: bool = True) -> Any:
        """The value at once; the task's exception is raised when ``propagate`` (else
        returned). ``timeout``, ``interval`` and ``disable_sync_subtasks`` are accepted
        for Celery's signature: an eager result never waits."""
        if self._state == SUCCESS:
            return self._value
        if not propagate:
            return self._value
        if self._state == REVOKED:
            raise TaskRevokedError(f"task {self.id} was revoked")
        raise self._value

    wait = get

    def forget(self) -> None:
        """Nothing to forget: no row was written."""

    def __repr__(self) -> str:
        return f"<EagerResult {self.id}: {self._state}>"

    def __hash__(self) -> int:
        return hash(self.id)


def apply(task: Task, args: tuple[Any, ...] | list[Any] | None,
          kwargs: dict[str, Any] | None, options: dict[str, Any]) -> EagerResult:
    """Run ``task`` here (see the module's docstring). Exceptions are kept in the result
    unless ``throw=True`` or ``task_eager_propagates``; a call that does not fit the
    function's signature is a TypeError at once, as a worker would record it."""
    args, kwargs = tuple(args or ()), dict(kwargs or {})
    throw = options.pop("throw", None)
    propagate = task.app.conf.task_eager_propagates if throw is None else bool(throw)
    message = eager_message(task.name, args, kwargs, options, task.app.conf, task)
    check_arguments(task, args, kwargs)
    return run(task, message, propagate)


def submit(tasks: TaskRegistry, name: str, args: tuple[Any, ...],
           kwargs: dict[str, Any] | None, options: dict[str, Any]) -> EagerResult:
    """``client.submit`` under ``task_always_eager``: the task's ``apply()``. A name this
    process has no code for cannot run here, and is refused rather than sent."""
    if name not in tasks:
        raise NotRegistered(f"task_always_eager is on, but task {name!r} is not registered "
                            "in this process, so it cannot run eagerly")
    return tasks[name].apply(args, kwargs, **options)


def apply_chain(tasks: TaskRegistry, sig: Signature, args: tuple[Any, ...],
                kwargs: dict[str, Any] | None, options: dict[str, Any] | None) -> EagerResult:
    """A chain of tasks under ``task_always_eager``, as Celery's ``chain.apply()``: each
    step applied with the previous one's value (``get()``, so a failed step raises here);
    the last step's result, its ``.parent`` the step before. Any other workflow, or a
    chain holding a group or chord, is refused."""
    steps = sig.clone(args, kwargs).tasks if isinstance(sig, chain) else []
    if not steps or any(step.subtask_type for step in steps):
        raise refuse_workflow()
    shared = {k: v for k, v in {**sig.options, **(options or {})}.items() if k != "task_id"}
    last: EagerResult | None = None
    for step in steps:
        step = step.clone((last.get(),) if last is not None else ())
        result = submit(tasks, step.task, step.args, step.kwargs,
                        {**shared, **step.options})
        result._parent, last = last, result
    assert last is not None
    return last


def refuse_workflow() -> ConfigurationError:
    """The error for a group, chord or chunks applied under ``task_always_eager``."""
    return ConfigurationError(
        "task_always_eager: only chains of tasks run eagerly; groups, chords and chunks "
        "do not: apply their tasks one by one with task.apply(), or turn "
        "task_always_eager off and use a memory:// broker with a worker")


def eager_message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  options: dict[str, Any], conf: Settings, task: Task) -> TaskMessage:
    """The message a worker would have run, built and checked as ``submit`` builds it."""
    refused = [o for o in NOT_EAGER_OPTIONS if options.get(o)]
    if refused:
        raise ConfigurationError(f"{name}: {', '.join(refused)} callbacks are not run by "
                                 "an eager apply(); call them yourself with the result")
    given = {k: v for k, v in options.items() if k not in IGNORED_OPTIONS}
    return build_message(name, args, kwargs, given, conf, task.options)


def check_arguments(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """TypeError naming the task when the call does not fit the function."""
    task.check_arguments(args, kwargs)


def run(task: Task, message: TaskMessage, propagate: bool) -> EagerResult:
    """Attempts until one succeeds, fails for good, or retries run out."""
    while True:
        try:
            value = attempt(task, message)
        except Exception as exc:  # noqa: BLE001 - the failure is the outcome
            plan = plan_retry(task.options, message, exc, dt.datetime.now(dt.timezone.utc),
                              task.app.conf.tzinfo)
            if isinstance(plan, RetryPlan):
                _hook(hooks.retried, task, message, plan.reason)
                message = plan.message
                continue
            failure = plan if plan is not None else exc
            _hook(hooks.failed, task, message, failure)
            if propagate and failure is exc:
                raise
            if propagate:
                raise failure from exc
            text = "".join(tb.format_exception(failure))
            return EagerResult(message.id, failure, FAILURE, text, task.name, message.retries)
        _hook(hooks.succeeded, task, message, value)
        return EagerResult(message.id, value, SUCCESS, None, task.name, message.retries)


def _eager_request(message: TaskMessage) -> Request:
    return dataclasses.replace(Request.of(message, socket.gethostname()), is_eager=True)


def _hook(run_hooks: Callable[..., None], task: Task, message: TaskMessage,
          *args: Any) -> None:
    """Run a task's hooks (hutch.hooks) with ``self.request`` the run's, as on a worker."""
    if not hooks.has_hooks(task):
        return
    token = set_request(_eager_request(message))
    try:
        run_hooks(task, message, *args)
    finally:
        reset_request(token)


def attempt(task: Task, message: TaskMessage) -> Any:
    """One run, with ``self.request`` the eager request of ``message``."""
    token = set_request(_eager_request(message))
    try:
        value = task(*message.args, **message.kwargs)
        if inspect.isawaitable(value):
            value = _run_coroutine(task, value)
        return value
    finally:
        reset_request(token)


def _run_coroutine(task: Task, awaitable: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # never awaited: close it so Python does not warn
    raise ConfigurationError(f"{task.name}: an async task cannot be applied eagerly inside "
                             "a running event loop; await task.run(...) there instead")


async def _await(value: Any) -> Any:
    return await value
