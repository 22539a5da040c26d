"""A task's hooks: ``on_success``, ``on_failure``, ``on_retry``, ``after_return``.

Called as Celery calls them, in the process that ran the task (a prefork child, a
pool thread, the asyncio pool's loop, or the caller of an eager ``apply()``), once
the outcome is handed to the recorder:

- success: ``on_success(retval, task_id, args, kwargs)``, then
  ``after_return(SUCCESS, retval, task_id, args, kwargs, None)``;
- failure: ``on_failure(exc, task_id, args, kwargs, einfo)``, then
  ``after_return(FAILURE, exc, task_id, args, kwargs, einfo)``;
- retry: ``on_retry(exc, task_id, args, kwargs, einfo)`` only, where ``exc`` is the
  reason the RETRY row records (``self.retry(exc=...)``'s, or the error
  ``autoretry_for`` caught) and ``einfo`` describes it.

``einfo`` is an :class:`ExceptionInfo`. Celery's own tracer passes ``None`` as
``after_return``'s ``einfo`` even after a failure; hutch passes the failure's, which
is what Celery documents.

A hook that raises is logged with the task id and changes nothing else: the outcome
stands and the worker goes on. A plain ``@app.task`` has no hooks, and costs one type
check here.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .logs import get_logger
from .results.records import FAILURE, SUCCESS
from .tasks import Task

if TYPE_CHECKING:
    from .messages import TaskMessage

log = get_logger("hutch.tasks")


@dataclass(frozen=True)
class ExceptionInfo:
    """The ``einfo`` hooks get (after Celery's ``ExceptionInfo``): the exception, its
    type, and its formatted traceback; ``str(einfo)`` is the traceback."""

    exception: BaseException
    type: type[BaseException]
    traceback: str

    @classmethod
    def of(cls, exc: BaseException, text: str | None = None) -> ExceptionInfo:
        return cls(exc, type(exc), text or "".join(traceback.format_exception(exc)))

    def __str__(self) -> str:
        return self.traceback


def has_hooks(task: Task) -> bool:
    """False for a plain ``@app.task`` (no class of its own, so no hooks)."""
    return type(task) is not Task


def succeeded(task: Task, message: TaskMessage, value: Any) -> None:
    if not has_hooks(task):
        return
    m = message
    _call(task, "on_success", m.id, value, m.id, m.args, m.kwargs)
    _call(task, "after_return", m.id, SUCCESS, value, m.id, m.args, m.kwargs, None)


def failed(task: Task, message: TaskMessage, exc: BaseException,
           text: str | None = None) -> None:
    """``text``: the traceback already formatted for the row, if there is one."""
    if not has_hooks(task):
        return
    m, einfo = message, ExceptionInfo.of(exc, text)
    _call(task, "on_failure", m.id, exc, m.id, m.args, m.kwargs, einfo)
    _call(task, "after_return", m.id, FAILURE, exc, m.id, m.args, m.kwargs, einfo)


def retried(task: Task, message: TaskMessage, reason: BaseException,
            text: str | None = None) -> None:
    if not has_hooks(task):
        return
    m = message
    _call(task, "on_retry", m.id, reason, m.id, m.args, m.kwargs, ExceptionInfo.of(reason, text))


def _call(task: Task, hook: str, task_id: str, *args: Any) -> None:
    method = getattr(type(task), hook)
    if method is getattr(Task, hook):
        return  # not overridden: nothing to run
    try:
        returned = method(task, *args)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a hook never changes the outcome
        log.error("task hook raised; the task's outcome stands", task_id=task_id,
                  task_name=task.name, hook=hook, error=f"{type(exc).__name__}: {exc}",
                  exc_info=exc)
        return
    if inspect.iscoroutine(returned):
        returned.close()  # never awaited: closed, so Python does not warn as well
        log.error("task hook is a coroutine function; hooks must be plain functions, "
                  "so it did not run", task_id=task_id, task_name=task.name, hook=hook)
