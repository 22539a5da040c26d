"""Client: submit tasks by name and read their results; needs no task code.

``submit()`` returns only once RabbitMQ has confirmed the message, so an
accepted task is on disk in the broker. With ``retry=True`` (the default, as in
Celery) an unreachable broker is retried under the call's ``retry_policy``; the
caller gets the error if the last attempt fails (each retry is an INFO log line).
A refused login (BrokerAccessRefused) is raised at once: retrying cannot help.
Everything but the I/O is in :mod:`hutch.client.base`, shared with ``AsyncClient``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..brokers.factory import open_broker
from ..call_options import RetryPolicy
from ..errors import BrokerUnavailable
from ..events import TaskEvents
from ..messages import TaskMessage, Wire
from ..workflows.apply import handle
from ..workflows.canvas import Signature
from . import eager
from .base import BaseClient, publish_retrying
from .confirms import ConfirmTracker, Unconfirmed
from .handles import AsyncResult, GroupResult
from .waiter import CompletionWaiter, Mark

if TYPE_CHECKING:
    from ..brokers.base import Broker
    from ..tasks import Task

Handle = AsyncResult | GroupResult


class Client(BaseClient):
    """A producer and result reader. ``Client(broker=..., backend=...)`` or ``app.client()``."""

    _broker: Broker | None = None
    _waiter: CompletionWaiter | None = None
    _confirms: ConfirmTracker | None = None

    @property
    def broker(self) -> Broker:
        return self._once("_broker", lambda: open_broker(self.conf))

    @property
    def waiter(self) -> CompletionWaiter:
        return self._once("_waiter", lambda: CompletionWaiter(self.broker, self.notice_key))

    @property
    def confirms(self) -> ConfirmTracker:
        """The submits handed over without waiting for their confirms
        (``broker_confirm_wait`` off: hutch.client.confirms)."""
        def make() -> ConfirmTracker:
            if self.conf.task_track_pending:
                _ = self.pending_writer  # made first: its exit flush runs after ours
            return ConfirmTracker(lambda: self.broker, self._confirmed_later,
                                  self.conf.broker_confirm_timeout)
        return self._once("_confirms", make)

    def _open_task_events(self) -> TaskEvents:
        # task_send_sent_event is read at each send (_sent_bodies), so it may change
        return TaskEvents.on(self.broker, socket.gethostname(), probe=True)

    def _announce(self, messages: Sequence[TaskMessage]) -> None:
        """Send task-sent for the messages, in one broker message just ahead of theirs on
        the same channel, so a reader sees it before the worker's events (a publish that
        then fails leaves events without tasks: events are for live views, the rows are
        the record). Skipped, events not even built, while the broker says no reader is
        bound (FanOut.heard: for up to a second after RabbitMQ returned one)."""
        events = self.task_events
        if events.wanted():
            events.send_bodies(self._sent_bodies(messages))

    # -- submitting ---------------------------------------------------------------
    def submit(self, name: str, *args: Any, kwargs: dict[str, Any] | None = None,
               **options: Any) -> AsyncResult:
        """Send task ``name`` with positional ``args``; returns at once with ``.id``.

        Task keyword arguments go in ``kwargs=``; every other keyword is a call
        option (queue=, serializer=, link=, ... see docs/guide.md). Under
        ``task_always_eager`` a registered task runs here instead (hutch.client.eager).
        """
        if self.conf.task_always_eager:
            return eager.submit(self.tasks, name, args, kwargs, options)
        mark = self._sent_mark(options)
        message, retry, policy = self._submission(name, args, kwargs, options)
        unconfirmed = self._submit_one(message, retry, policy)
        return AsyncResult(message.id, self, ignored=message.ignore_result, sent_mark=mark,
                           unconfirmed=unconfirmed, sent_here=True)

    def apply(self, task: Task, args: tuple[Any, ...] | list[Any] | None,
              kwargs: dict[str, Any] | None, options: dict[str, Any]) -> eager.EagerResult:
        """``task.apply()``: run it here, send nothing (hutch.client.eager)."""
        return eager.apply(task, args, kwargs, options)

    def apply_here(self, sig: Signature) -> Handle:
        """Any signature run in this process, whatever ``task_always_eager`` says: what an
        eager ``self.replace(sig)`` runs (hutch.client.eager.apply_workflow)."""
        return eager.apply_workflow(self, sig)

    def send_signature(self, sig: Signature) -> AsyncResult:
        return self.submit(sig.task, *sig.args, kwargs=sig.kwargs, **sig.options)

    def apply_workflow(self, sig: Signature, args: tuple[Any, ...] = (),
                       kwargs: dict[str, Any] | None = None,
                       options: dict[str, Any] | None = None) -> Handle:
        """Send a chain, group, chord or chunks (see hutch.workflows.apply); under
        ``task_always_eager`` it runs here instead (hutch.client.eager)."""
        if self.conf.task_always_eager:
            return eager.apply_workflow(self, sig, args, kwargs, options)
        out = self._workflow(sig, args, kwargs, options)
        self.store.insert_groups(out.plan.groups)
        self.send(out.plan.messages, retry=out.retry, policy=out.policy)
        return handle(out.sig, self)

    def send(self, messages: Sequence[TaskMessage], retry: bool = True,
             policy: RetryPolicy | None = None, *, as_republished: bool = False) -> None:
        """Publish already-built messages, wait for RabbitMQ's confirms, then queue their
        PENDING rows. ``as_republished``: copies of runs whose first publish may have
        reached the broker (hutch.messages.republished; beat's unsent-run sweep)."""
        routed = self._before_publish(self._routed(messages, as_republished), retry, policy)
        pauses = self._pauses(retry, policy)
        self._announce(messages)
        self._publish_waiting(messages, routed, pauses)

    def _publish_waiting(self, messages: Sequence[TaskMessage],
                         routed: list[tuple[str, Wire]], pauses: Iterator[float]) -> None:
        routed = publish_retrying(self.broker, routed, pauses, self.conf.broker_confirm_timeout)
        self._sent(messages)
        self._after_publish(routed)

    def _submit_one(self, message: TaskMessage, retry: bool,
                    policy: RetryPolicy) -> Unconfirmed | None:
        """``submit()``'s publish: waited for (the default), or with
        ``broker_confirm_wait`` off handed over, returning what tracks its confirm
        (hutch.client.confirms). after_task_publish is then sent at the hand-over, as
        Celery sends it without confirms. A publisher that cannot take it now (closed,
        reconnecting) is waited for, retrying as usual."""
        if self.conf.broker_confirm_wait:
            self.send([message], retry=retry, policy=policy)
            return None
        routed = self._before_publish(self._routed([message], False), retry, policy)
        pauses = self._pauses(retry, policy)
        self._announce([message])
        try:
            unconfirmed = self.confirms.hand_over(routed, [message], pauses)
        except BrokerUnavailable:
            self._publish_waiting([message], routed, pauses)
            return None
        self._after_publish(routed)
        return unconfirmed

    def _confirmed_later(self, unconfirmed: Unconfirmed) -> None:
        """A handed-over submit was confirmed: its PENDING rows, as after a waited one."""
        self._sent(unconfirmed.messages)

    # -- results ------------------------------------------------------------------
    def _sent_mark(self, options: dict[str, Any]) -> Mark | None:
        """The waiter's mark before a publish, when the new handle may use it: not for
        a task id the caller chose (it may have finished before, unannounced here)."""
        if self._waiter is None or options.get("task_id") is not None:
            return None
        return self._waiter.mark()

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        return AsyncResult(task_id, self)

    def _task_handle(self, task_id: str, parent: Handle | None) -> Handle:
        return AsyncResult(task_id, self, parent, sent_here=True)

    def _group_handle(self, group_id: str, members: list[Handle],
                      parent: Handle | None) -> Handle:
        return GroupResult(group_id, members, self, parent)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything submitted so far is confirmed by RabbitMQ (or failed
        for good, ``broker_confirm_wait`` off) and its PENDING row written."""
        started = time.monotonic()
        if self._confirms is not None and not self._confirms.flush(timeout):
            return False
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self._flush_pending(left)

    def close(self) -> None:
        self.flush()
        self._close_results()
        if self._waiter is not None:
            self._waiter.close()
        if self._broker is not None:
            self._broker.close()
        self._broker = self._waiter = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
