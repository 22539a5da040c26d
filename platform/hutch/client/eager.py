"""Running a task here and now: ``task.apply()``, and what ``task_always_eager`` makes of
``delay()``/``apply_async()``/``client.submit``.

As in Celery's eager mode, nothing is sent to the broker and nothing is written to the
result database: the task runs in the calling thread, its outcome lives only in the
returned :class:`EagerResult`. It is meant for tests and scripts; a worker's guarantees
(acks, time limits, rate limits, rows, events) do not apply. ``self.retry()`` and
``autoretry_for`` run the task again at once, up to its ``max_retries`` (a countdown or
eta is not waited for), and the result is that of the last attempt. Workflows run here
too (:func:`apply_workflow`): a chain step by step, a group member by member (an
:class:`EagerGroupResult`), a chord's body once with its header's values, and
``link``/``link_error`` callbacks right after their task, with its value or its id
(docs/guide.md, "Running tasks eagerly in tests").
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
from ..errors import ConfigurationError, Ignore, NotRegistered, Reject, TaskRevokedError
from ..messages import Request, TaskMessage
from ..results.records import FAILURE, IGNORED, REJECTED, REVOKED, SUCCESS
from ..retries import RetryPlan, plan_retry
from ..workflows.canvas import Signature, as_list, chain, chord, chunks, group, new_id
from ..workflows.plan import errbacks
from .handles import AsyncResult, GroupResult, ValueCallback

if TYPE_CHECKING:
    from ..config import Settings
    from ..tasks import Task, TaskRegistry
    from .sync import Client

CALLBACK_OPTIONS = ("link", "link_error")
"""Call options an eager run carries out itself: the callbacks run here, after the task."""
IGNORED_OPTIONS = ("retry", "retry_policy", "throw")
"""Publish options that mean nothing when nothing is published (``throw`` is apply's own)."""


class EagerResult(AsyncResult):
    """The outcome of a task run by ``apply()`` (Celery's ``EagerResult``): always ready,
    read from memory, never from the result database. ``get()`` returns the value or
    raises the task's exception (``propagate``); ``result`` is the value or the exception.
    """

    stored = False
    retries: int = 0  # a plain value here, not a row read

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
    def parent(self) -> AsyncResult | GroupResult | None:
        """The previous step's result (an EagerResult, or an EagerGroupResult before a
        chord's body), for a workflow run eagerly."""
        return self._parent if isinstance(self._parent, (AsyncResult, GroupResult)) else None

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

    def _record(self) -> None:
        """No row: the row-backed fields (args, worker, queue...) read None."""
        return None

    def maybe_throw(self, propagate: bool = True,
                    callback: Callable[[str, Any], Any] | None = None) -> Any:
        if propagate and self._state in (FAILURE, REVOKED):
            self.get()
        if callback is not None:
            callback(self.id, self._value)
        return self._value

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
    links = {name: as_list(options.pop(name, None)) for name in CALLBACK_OPTIONS}
    message = eager_message(task.name, args, kwargs, options, task.app.conf, task)
    check_arguments(task, args, kwargs)
    try:
        result = run(task, message, propagate)
    except Exception:
        _follow(task.app.client(), links["link_error"], (message.id,))
        raise
    if result.successful():
        _follow(task.app.client(), links["link"], (result.result,))
    else:
        _follow(task.app.client(), links["link_error"], (message.id,))
    return result


def submit(tasks: TaskRegistry, name: str, args: tuple[Any, ...],
           kwargs: dict[str, Any] | None, options: dict[str, Any]) -> EagerResult:
    """``client.submit`` under ``task_always_eager``: the task's ``apply()``. A name this
    process has no code for cannot run here, and is refused rather than sent."""
    if name not in tasks:
        raise NotRegistered(f"task_always_eager is on, but task {name!r} is not registered "
                            "in this process, so it cannot run eagerly")
    return tasks[name].apply(args, kwargs, **options)


def refuse_workflow() -> ConfigurationError:
    """The error for a workflow given to the AsyncClient under ``task_always_eager``."""
    return ConfigurationError(
        "task_always_eager: AsyncClient does not run workflows eagerly; use the app's "
        "(sync) client, or turn task_always_eager off and use a memory:// broker with a "
        "worker")


def eager_message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  options: dict[str, Any], conf: Settings, task: Task) -> TaskMessage:
    """The message a worker would have run, built and checked as ``submit`` builds it."""
    given = {k: v for k, v in options.items()
             if k not in IGNORED_OPTIONS and k not in CALLBACK_OPTIONS}
    return build_message(name, args, kwargs, given, conf, task.options)


def check_arguments(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """TypeError naming the task when the call does not fit the function."""
    task.check_arguments(args, kwargs)


def run(task: Task, message: TaskMessage, propagate: bool) -> EagerResult:
    """Attempts until one succeeds, fails for good, or retries run out."""
    while True:
        try:
            value = attempt(task, message)
        except (Reject, Ignore) as exc:  # as a worker records them; never raised here
            state = IGNORED if isinstance(exc, Ignore) else REJECTED
            return EagerResult(message.id, exc, state, "".join(tb.format_exception(exc)),
                               task.name, message.retries)
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
    request = _eager_request(message)
    token = set_request(request)
    try:
        value = task(*message.args, **message.kwargs)
        if inspect.isawaitable(value):
            value = _run_coroutine(task, value)
        if request.retry_later is not None:  # self.retry(throw=False): retried all the same
            raise request.retry_later
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


# -- workflows, run here ---------------------------------------------------------------
# As Celery's eager canvas: what a worker would run message after message runs in this
# thread in the same order, with the same arguments, and nothing is sent or stored.

EagerHandle = EagerResult | GroupResult


class EagerGroupResult(GroupResult):
    """A group run eagerly (Celery's GroupResult of EagerResults): every member is ready,
    read from memory; ``get()`` is the list of their values, raising the first failure
    (in order) when ``propagate``."""

    def _states(self) -> list[str]:
        return [FAILURE if m.failed() else SUCCESS if m.successful() else REVOKED
                for m in self.results]

    def join(self, timeout: float | None = None, propagate: bool = True,
             interval: float | None = None, callback: ValueCallback | None = None,
             **celery_options: Any) -> list[Any]:
        """The values at once (ResultSet.join); ``timeout`` and ``interval`` never
        matter here."""
        return super().join(None, propagate, callback=callback)

    get = wait = join

    def revoke(self, terminate: bool = False, signal: str | int | None = None) -> None:
        """Marks every member REVOKED (they have run already), as Celery does."""
        for member in self.results:
            member.revoke(terminate, signal)

    def save(self) -> EagerGroupResult:
        """Nothing is stored for an eager group."""
        return self

    def __repr__(self) -> str:
        return f"<EagerGroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"


def apply_workflow(client: Client, sig: Signature, args: tuple[Any, ...] = (),
                   kwargs: dict[str, Any] | None = None,
                   options: dict[str, Any] | None = None) -> EagerHandle:
    """Any signature under ``task_always_eager``: a task's EagerResult, a group's
    EagerGroupResult, a chain's or chord's last result (its ``.parent`` the step
    before). ``args``/``kwargs`` go where a worker would put them; ``task_id=`` names
    the result; ``link``/``link_error`` attach as they would when sent."""
    options = {k: v for k, v in (options or {}).items() if k not in IGNORED_OPTIONS}
    sig = (sig.group() if isinstance(sig, chunks) else sig).clone(args, kwargs)
    for callback in as_list(options.pop("link", None)):
        sig.link(callback)
    for errback in as_list(options.pop("link_error", None)):
        sig.link_error(errback)
    task_id = options.pop("task_id", None)
    sig.options.update(options)
    if task_id is not None:
        _result_of(sig).options["task_id"] = str(task_id)
    return _apply(client, sig)


def _apply(client: Client, sig: Signature, parent: EagerHandle | None = None) -> EagerHandle:
    """Run ``sig``; ``parent``: the result before it (``.parent`` links, set as on the
    handles of a workflow that was sent)."""
    if isinstance(sig, chunks):
        sig = sig.group()
    if isinstance(sig, chain):
        return _apply_chain(client, sig, parent)
    if isinstance(sig, chord):
        return _apply_chord(client, sig, parent)
    result = _apply_group(client, sig) if isinstance(sig, group) else \
        submit(client.tasks, sig.task, sig.args, sig.kwargs, dict(sig.options))
    _set_parent(result, parent)
    return result


def _own_options(sig: Signature) -> dict[str, Any]:
    """A composite's call options for its parts (not its id, nor its callbacks)."""
    return {k: v for k, v in sig.options.items() if k not in ("task_id", *CALLBACK_OPTIONS)}


def _apply_chain(client: Client, sig: chain, parent: EagerHandle | None) -> EagerHandle:
    """Step by step, each with the previous value (``get()``: a failed step raises here,
    after its errbacks ran); the chain's callbacks go to its last step, its errbacks to
    every step, its other options to each."""
    steps = [step.clone(**_own_options(sig)) for step in sig.tasks]
    if not steps:
        raise ConfigurationError("chain: no tasks to run")
    for callback in as_list(sig.options.get("link")):
        steps[-1].link(Signature.from_dict(callback))
    for errback in as_list(sig.options.get("link_error")):
        for step in steps:
            step.link_error(Signature.from_dict(errback))
    last = parent
    for i, step in enumerate(steps):
        last = _apply(client, step.clone((last.get(),)) if i and last is not None else step,
                      last)
    assert last is not None
    return last


def _apply_group(client: Client, sig: group) -> EagerGroupResult:
    """Each member in order, with the group's options and callbacks (a callback runs
    once per member, with that member's value, as when sent)."""
    members = []
    for member in sig.tasks:
        member = member.clone(**_own_options(sig))
        for callback in as_list(sig.options.get("link")):
            member.link(Signature.from_dict(callback))
        for errback in as_list(sig.options.get("link_error")):
            member.link_error(Signature.from_dict(errback))
        members.append(_apply(client, member))
    return EagerGroupResult(str(sig.options.get("task_id") or new_id()), members, client)


def _apply_chord(client: Client, sig: chord, parent: EagerHandle | None) -> EagerHandle:
    """The header, then the body with the list of its values. A failed header member
    fails the chord as on a worker: the body does not run, its result is FAILURE with
    that member's exception, and the body's errbacks run with the body's id."""
    header = _apply(client, sig.header.clone(**_own_options(sig)), parent)
    assert isinstance(header, EagerGroupResult)
    body = sig.body.clone(**_own_options(sig))
    failed = next((m for m in _leaves(header) if m.failed()), None)
    if failed is None:
        return _apply(client, body.clone((header.get(),)), header)
    end = _result_of(body)
    _follow(client, errbacks(body), (end.freeze(),))
    if client.conf.task_eager_propagates:
        raise failed.result
    result = EagerResult(end.freeze(), failed.result, FAILURE, failed.traceback,
                         end.task if type(end) is Signature else None)
    result._parent = header
    return result


def _set_parent(result: AsyncResult | GroupResult, parent: AsyncResult | GroupResult | None) -> None:
    if isinstance(result, EagerResult):
        result._parent = parent
    elif isinstance(result, GroupResult):
        result.parent = parent


def _leaves(result: AsyncResult | GroupResult) -> list[AsyncResult]:
    """The task results in a (nested) eager group, in order."""
    if isinstance(result, GroupResult):
        return [leaf for member in result.results for leaf in _leaves(member)]
    return [result]


def _result_of(sig: Signature) -> Signature:
    """The signature whose result is the workflow's (a chain's last step, a chord's body)."""
    if isinstance(sig, chain) and sig.tasks:
        return _result_of(sig.tasks[-1])
    if isinstance(sig, chord):
        return _result_of(sig.body)
    return sig


def _follow(client: Client, callbacks: list[Any], prepend: tuple[Any, ...]) -> None:
    """Run ``link`` callbacks (with the value) or ``link_error`` errbacks (with the failed
    task's id) here, each a task or any workflow."""
    for callback in callbacks:
        _apply(client, Signature.from_dict(callback).clone(prepend))
