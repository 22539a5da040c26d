"""The task signals a worker sends (hutch.signals; not OS signals: see worker/signals.py).

The executor calls these at each point of a delivery's life; each builds its arguments
only when a receiver is connected, so a worker nobody listens to pays one check of an
empty tuple per point. Everything runs in the process and thread that handle the
delivery: a prefork child, a thread of the thread pool, or the asyncio pool's loop
(docs/signals.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import signals
from ..messages import Request, TaskMessage
from ..results.records import FAILURE, RETRY, SUCCESS
from ..signals import ExceptionInfo

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from .executor import Executor, Job


def received(executor: Executor, message: TaskMessage) -> None:
    if signals.task_received.receivers:
        signals.task_received.send(executor, request=Request.of(message, executor.worker_name))


def prerun(job: Job) -> None:
    if signals.task_prerun.receivers:
        m = job.message
        signals.task_prerun.send(job.task, task_id=m.id, task=job.task, args=m.args,
                                 kwargs=m.kwargs)


def ran(job: Job, worker_name: str) -> None:
    """The outcome's signal (success, failure or retry; task_revoked is sent where the
    REVOKED row is recorded), then task_postrun, once the outcome is decided. Nothing
    for a run that ended without one (the pool torn down under it: it runs again)."""
    m, task, state, retval = job.message, job.task, job.state, job.retval
    if state is None:
        return
    if state == SUCCESS and signals.task_success.receivers:
        signals.task_success.send(task, result=retval)
    elif state == FAILURE and signals.task_failure.receivers:
        signals.task_failure.send(task, task_id=m.id, exception=retval, args=m.args,
                                  kwargs=m.kwargs, traceback=retval.__traceback__,
                                  einfo=ExceptionInfo.of(retval))
    elif state == RETRY and signals.task_retry.receivers:
        signals.task_retry.send(task, request=Request.of(m, worker_name), reason=retval,
                                einfo=ExceptionInfo.of(retval))
    if signals.task_postrun.receivers:
        signals.task_postrun.send(task, task_id=m.id, task=task, args=m.args, kwargs=m.kwargs,
                                  retval=retval, state=state)


def revoked(executor: Executor, m: TaskMessage, reason: str) -> None:
    """``reason``: "revoked", "expired" or "terminated" (the executor's words)."""
    if signals.task_revoked.receivers:
        signals.task_revoked.send(executor.tasks.get(m.task) or m.task,
                                  request=Request.of(m, executor.worker_name),
                                  terminated=reason == "terminated", signum=None,
                                  expired=reason == "expired")


def unknown(executor: Executor, delivery: Delivery, m: TaskMessage, exc: Exception) -> None:
    if signals.task_unknown.receivers:
        signals.task_unknown.send(executor, message=delivery, exc=exc, name=m.task, id=m.id)


def rejected(executor: Executor, delivery: Delivery, exc: Exception) -> None:
    if signals.task_rejected.receivers:
        signals.task_rejected.send(executor, message=delivery, exc=exc)

