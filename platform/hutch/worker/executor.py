"""Run one delivery: decode, check, execute, and hand the outcome to the recorder.

Every path ends in exactly one of: the outcome recorded and the delivery acked;
the delivery dead-lettered after its FAILURE/REVOKED row is recorded; or (on
shutdown) the delivery requeued. Nothing raised by task code or by a bad message
escapes into the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import inspect
import os
import threading
import traceback
import uuid
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from structlog.contextvars import bind_contextvars, reset_contextvars

from .. import hooks, publishing, serialization, signals
from ..current import current_request, reset_request, set_request
from ..errors import (
    BackendError,
    BrokerError,
    HutchError,
    Ignore,
    MessageError,
    NotRegistered,
    Reject,
    Replaced,
    SerializationError,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
)
from ..events import NO_EVENTS, TaskEvents
from ..logs import get_logger
from ..messages import (
    Request,
    TaskMessage,
    Wire,
    continuation,
    delay_seconds,
    header_row_values,
    is_continued,
    is_republished,
    peek,
    peek_identity,
    refused,
    row_values,
    signal_number,
)
from ..results.exceptions import encode_args
from ..results.groups import Done
from ..results.pending_rows import pending_changes
from ..results.records import (
    FAILURE,
    IGNORED,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    Seen,
    StateChange,
)
from ..retries import RetryPlan, plan_retry
from ..workflows.canvas import Signature
from ..workflows.plan import GroupRow, Planner
from ..workflows.replace import hand_over
from ..workflows.unreached import Unreached, failure_of, unreached
from . import task_signals
from .claims import ClaimedDelivery, claim_of, received_at_of
from .counters import DUPLICATES, Counters
from .owners import wait_for_owner
from .poison import PoisonGuard, counted, lost_attempts, lost_in_flight
from .ratelimit import RateLimits
from .recorder import Recorder
from .revocations import revoked_by_stamps
from .timelimits import Guard, Overrides, Unenforced

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..config import Settings
    from ..tasks import Task, TaskRegistry

log = get_logger("hutch.worker")

CLAIM_WAIT_STEP = 0.25
"""How often a delivery waiting for its claim looks for a stop."""


class _Stopping(enum.Enum):
    """The one value of :data:`STOPPING` (an enum member, so its type is its own)."""

    STOPPING = "stopping"


STOPPING = _Stopping.STOPPING
"""What ``_claimed`` returns when the worker stops before the delivery's claim settles."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Job:
    """A delivery that passed every check and is ready to run."""

    delivery: Delivery
    message: TaskMessage
    task: Task
    started_at: dt.datetime
    acked_early: bool = False
    """``acks_late=False``: acknowledged before running (at most once, as in Celery)."""
    interrupted: BaseException | None = None
    """Why an asyncio task was cancelled: a time limit, or TaskRevokedError (terminate)."""
    aio_task: asyncio.Task[Any] | None = None
    state: str | None = None
    retval: Any = None
    """How the run ended (SUCCESS, FAILURE, RETRY, REVOKED) and its value or exception,
    for the task signals sent when it is over (worker/task_signals.py)."""

    def settle(self) -> None:
        if not self.acked_early:
            self.delivery.ack()


class Executor:
    """Runs deliveries for one pool.

    ``revoked`` is the set of ids never to run (worker/revocations.py); ``guard``
    applies time limits around a synchronous run (worker/timelimits.py);
    ``replaceable`` says this process is a prefork child, which may be killed to
    terminate its task because the supervisor starts another. ``tasks`` are the
    tasks it runs; a message for any other is refused with a NotRegistered error
    that names ``app_name``, the app they came from. ``events`` sends a task event at
    each state point (hutch.events; off: NO_EVENTS).
    """

    def __init__(self, conf: Settings, tasks: TaskRegistry, recorder: Recorder,
                 worker_name: str, *, app_name: str | None = None,
                 revoked: Container[str] = frozenset(), guard: Guard | None = None,
                 replaceable: bool = False, events: TaskEvents = NO_EVENTS) -> None:
        self.conf = conf
        self.events = events
        self.tasks = tasks
        self.app_name = app_name
        self.recorder = recorder
        self.worker_name = worker_name
        self.accept = tuple(conf.accept_content)
        self.max_bytes = conf.worker_max_message_bytes
        self.revoked = revoked
        self.guard: Guard = guard or Unenforced("threads")
        self.replaceable = replaceable
        self.running: dict[str, Job] = {}
        self.reserved: dict[int, Delivery] = {}
        """Deliveries received and not started yet (in the pool's queue, waiting for a
        slot or held by a rate limit), by ``id()`` of their wire, which every wrapper of
        a delivery shares: ``inspect reserved`` lists them (worker/queries.py)."""
        self.counters = Counters()
        self.closing = threading.Event()
        """Set when the worker stops: deliveries waiting to start go back to the queue."""
        self.terminating = False
        """Set just before a prefork child signals itself to stop a terminated task."""
        self.rate_limits = RateLimits(conf, recorder)
        self.time_limits = Overrides()
        """Limits set by ``hutch control time_limit``, replacing the messages'."""
        self.poison = PoisonGuard(conf, recorder, self._dead_letter)
        self.planner = Planner(conf, tasks.options_for)

    # -- arrival (consumer thread: headers only, no decoding) -----------------------
    def received(self, delivery: Delivery, idle: bool = False) -> Delivery:
        """Record RECEIVED as a claim (worker/claims.py); hand the pool what this returns.
        ``idle``: a pool thread waits for work with nothing queued ahead, so the claim is
        written by that thread as it takes the delivery rather than by the claim writer
        (one thread hand-over less before a task that arrives alone starts)."""
        self.reserved[id(delivery.wire)] = delivery
        task_id, name = peek_identity(delivery.wire)
        headers = delivery.wire.headers  # not decoded yet: only values that pass the checks
        if task_id is None or peek(headers, "ignore_result"):
            return delivery
        now = utcnow()
        claim = self.recorder.claim(StateChange(**{
            **header_row_values(headers), "task_id": task_id, "state": RECEIVED,
            "queue": delivery.queue, "worker": self.worker_name, "received_at": now}), idle)
        return ClaimedDelivery(delivery, claim, now)

    # -- preparation (pool thread) ----------------------------------------------------
    def prepare(self, delivery: Delivery) -> Job | None:
        """Decode and check; returns None when the delivery was settled here. Every header
        and body field is checked first (hutch.envelope): a message that fails is
        dead-lettered with the reason before anything else looks at it."""
        try:
            message = TaskMessage.decode(delivery.wire, self.accept, self.max_bytes)
        except (MessageError, SerializationError) as exc:
            task_signals.rejected(self, delivery, exc)
            self._dead_letter(delivery, exc)
            return None
        if delay_seconds(delivery.wire):
            self._delay_again(delivery)
            return None
        self.events.received(message)
        seen = self._claimed(delivery)
        if seen is not STOPPING and seen is not None and delivery.redelivered \
                and lost_in_flight(seen, message):
            seen = wait_for_owner(self.recorder.store, seen, message, self.closing) or STOPPING
        if seen is STOPPING:
            delivery.reject(requeue=True)
            return None
        if seen is not None and self._settled_by_row(delivery, message, seen):
            return None
        if not self.recorder.wait_until_answering(self.closing):
            delivery.reject(requeue=True)  # stopping while the result store is down
            return None
        if message.id in self.revoked or revoked_by_stamps(self.revoked, message):
            self._drop_revoked(delivery, message)
            return None
        now = utcnow()
        if message.expires is not None and now >= message.expires:
            self._revoke(delivery, message, "expired")
            return None
        task = self.tasks.get(message.task)
        if task is None:
            unknown = NotRegistered.in_app(message.task, self.app_name)
            task_signals.unknown(self, delivery, message, unknown)
            self._dead_letter(delivery, unknown, message)
            return None
        if not self.rate_limits.admit(delivery, task, message.id):
            return None  # waits without a pool slot; not STARTED yet
        task_signals.received(self, message)
        started = partial(self._started_change, message, now, received_at_of(delivery))
        if self.poison.settled(delivery, message, seen, started):
            return None
        if delivery.stale:  # RabbitMQ delivers it again: running this copy would run it twice
            log.info("not run: its broker connection was lost; it is delivered again",
                     task=message.task, task_id=message.id)
            return None
        if not message.ignore_result:
            self.recorder.record(started())
        self.events.started(message)
        job = Job(delivery, self.time_limits.apply(message), task, now,
                  acked_early=not self._acks_late(task))
        if job.acked_early:
            delivery.ack()
        return job

    def _acks_late(self, task: Task) -> bool:
        late = task.options.acks_late
        return self.conf.task_acks_late if late is None else late

    def _delay_again(self, delivery: Delivery) -> None:
        """A message whose eta is still ahead (a sender's clock running fast) goes back
        through the delay ladder, clean of its x-death history, and is acked once that
        publish is confirmed: a task never runs early and is never held in memory."""
        task_id, _ = peek_identity(delivery.wire)
        log.info("eta not reached yet; delaying again", task_id=task_id)
        self.recorder.record(None, [(delivery.queue, continuation(delivery.wire))],
                             then=delivery.ack)

    def _claimed(self, delivery: Delivery) -> Seen | None | Literal[_Stopping.STOPPING]:
        """What the delivery's RECEIVED write found (worker/claims.py), once committed;
        STOPPING if the worker stops first (the result store may be down)."""
        claim = claim_of(delivery)
        if claim is None:
            return None
        if claim.here is not None:
            self.recorder.claim_here(claim)
        while not claim.wait(CLAIM_WAIT_STEP):
            if self.closing.is_set():
                return STOPPING
        return claim.seen

    def _settled_by_row(self, delivery: Delivery, message: TaskMessage, seen: Seen) -> bool:
        """Settle a delivery of a task id that finished already, or a copy of one that
        another delivery holds already (received or running: it runs, or is redelivered
        if its worker dies); True if settled here. Left to run: a redelivery (the poison
        guard judges it) and a worker's own continuation of the attempt
        (hutch.messages.continuation). A row REVOKED by ``revoke()`` before the task
        arrived is left to the revocation check."""
        if seen.state == REVOKED and message.id in self.revoked:
            return False
        if seen.ready:
            self._skipped(delivery, message, seen, "task already finished")
            self._finished_before(delivery, message, seen)
            return True
        if _attempt_over(seen, message):
            self._skipped(delivery, message, seen,
                          "this attempt is over already (its retry was scheduled)")
        elif is_republished(delivery.wire) or not (
                delivery.redelivered or is_continued(delivery.wire)):
            self._skipped(delivery, message, seen, "task already received by another delivery")
        else:
            return False
        delivery.ack()
        return True

    def _skipped(self, delivery: Delivery, message: TaskMessage, seen: Seen, why: str) -> None:
        """One warning line and the DUPLICATES counter for a delivery not run."""
        log.warning(f"{why}; this delivery is acknowledged without running",
                    task_id=message.id, task_name=message.task, state=seen.state,
                    retries=seen.retries, message_retries=message.retries,
                    redelivered=delivery.redelivered,
                    duplicates_skipped=self.counters.add(DUPLICATES))

    def _finished_before(self, delivery: Delivery, message: TaskMessage, seen: Seen) -> None:
        """Acknowledge; a chord header task is counted again first (a no-op if it was
        counted), for an outcome written without counting, e.g. by the prefork
        supervisor at a hard time limit."""
        counted = chord_done(message, seen.state)
        ended = self._ended_before(message, seen)
        if counted is None and not ended.rows:
            delivery.ack()
            return
        self.recorder.record(None, then=delivery.ack, children=ended.rows, groups=ended.groups,
                             chord=replace(counted, reason=self._ended(message, seen),
                                           recheck=True) if counted else None)

    def _ended_before(self, message: TaskMessage, seen: Seen) -> Unreached:
        """For a task whose FAILURE was written without this worker's follow-ups (the
        prefork supervisor at a hard time limit): the later steps of its workflow,
        marked failed on its redelivery (a no-op if they were)."""
        if seen.state != FAILURE or not message.link:
            return Unreached()
        try:
            record = self.recorder.store.get(message.id)
        except BackendError:
            return Unreached()
        return self._unreached(message, failure_of(record)) if record else Unreached()

    def _ended(self, message: TaskMessage, seen: Seen) -> str:
        """How a finished chord header task ended, for the ChordError it may decide."""
        text = f"{message.task}[{message.id}] ended {seen.state}"
        if seen.state == SUCCESS:
            return text
        try:
            record = self.recorder.store.get(message.id)
        except BackendError:
            return text
        if record is None or not (record.exception_type or record.exception_message):
            return text
        return f"{text}: {record.exception_type or ''} {record.exception_message or ''}".strip()

    def _started_change(self, message: TaskMessage, now: dt.datetime,
                        received_at: dt.datetime | None) -> StateChange:
        """STARTED, with when this delivery was received: for a redelivery of a task
        the row shows STARTED already, this change is what updates both times
        (hutch.results.store, ``_restarts``)."""
        return StateChange(state=STARTED, worker=self.worker_name, received_at=received_at,
                           started_at=now, **row_values(message))

    # -- execution ------------------------------------------------------------------
    @contextlib.contextmanager
    def _running(self, job: Job) -> Iterator[None]:
        """Bind the task id/name into log lines and ``self.request`` for the task's run.
        The log binding is undone by its tokens (structlog's ``bound_contextvars`` copies
        the whole context twice a task to do the same)."""
        bound = bind_contextvars(task_id=job.message.id, task_name=job.message.task)
        try:
            token = set_request(self._request(job.message, job.delivery))
            self.running[job.message.id] = job
            task_signals.prerun(job)
            try:
                yield
            finally:
                self.running.pop(job.message.id, None)
                task_signals.ran(job, self.worker_name)
                reset_request(token)
        finally:
            reset_contextvars(**bound)

    def _prepared(self, delivery: Delivery) -> Job | None:
        """:meth:`prepare`, after which the delivery is no longer reserved: it runs, or
        was settled, unless a rate limit holds it here (it comes back through this)."""
        try:
            return self.prepare(delivery)
        finally:
            if id(delivery.wire) not in self.rate_limits.held:
                self.reserved.pop(id(delivery.wire), None)

    def handle(self, delivery: Delivery) -> None:
        """The whole life of one delivery, for thread-based pools."""
        job = self._prepared(delivery)
        if job is None:
            return
        with self._running(job):
            try:
                with self.guard.watch(job.message):
                    value = job.task(*job.message.args, **job.message.kwargs)
                    if inspect.isawaitable(value):
                        value = asyncio.run(_await(value))
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the failure is the outcome
                self.failed(job, exc)
                return
            self.succeeded(job, value)

    async def handle_async(self, delivery: Delivery) -> None:
        """The same for the asyncio pool: coroutines run on the pool's loop, and time
        limits and ``terminate`` cancel them (a sync task's thread cannot be stopped)."""
        job = self._prepared(delivery)
        if job is None:
            return
        with self._running(job), aio_limits(job):
            try:
                if job.task.is_async:
                    value = await job.task(*job.message.args, **job.message.kwargs)
                else:
                    value = await asyncio.to_thread(
                        job.task, *job.message.args, **job.message.kwargs)
            except asyncio.CancelledError:
                if job.interrupted is None:
                    raise  # the pool itself is being torn down
                self._interrupted(job)
                return
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the failure is the outcome
                self.failed(job, exc)
                return
            self.succeeded(job, value)

    def _interrupted(self, job: Job) -> None:
        reason = job.interrupted
        if isinstance(reason, TaskRevokedError):
            job.state, job.retval = REVOKED, reason
            self._record_revoked(job.message, "terminated", job.settle)
        else:
            assert reason is not None
            self.failed(job, reason)

    # -- terminate (revoke(..., terminate=True)) ----------------------------------------
    def terminate(self, task_id: str, signal_name: str) -> None:
        """Stop ``task_id`` if this process runs it (called from the control thread)."""
        job = self.running.get(task_id)
        if job is None:
            return
        if job.aio_task is not None:
            interrupt(job, TaskRevokedError(f"task {task_id} was terminated"))
        elif self.replaceable:
            self._terminate_child(job, signal_name)
        else:
            log.error("terminate is not supported on this pool; the task keeps running "
                      "(it is revoked for any later delivery). Use -P prefork or asyncio.",
                      task_id=task_id)

    def _terminate_child(self, job: Job, signal_name: str) -> None:
        """Record REVOKED, then signal this prefork child; the supervisor starts another."""
        log.warning("terminating the running task: this child process stops",
                    task_id=job.message.id, signal=signal_name)
        written = threading.Event()
        self._record_revoked(job.message, "terminated", written.set)
        written.wait(10)
        self.terminating = True
        os.kill(os.getpid(), signal_number(signal_name))

    def _request(self, m: TaskMessage, delivery: Delivery | None = None) -> Request:
        return Request.of(m, self.worker_name, delivery)

    # -- outcomes -------------------------------------------------------------------
    def succeeded(self, job: Job, value: Any) -> None:
        later = _retry_later()
        if later is not None:  # self.retry(throw=False): the value is not the outcome
            self.failed(job, later)
            return
        m = job.message
        job.state, job.retval = SUCCESS, value  # failed() overrides it if unstorable
        followups = self._callbacks(m, m.link, (value,))
        counted = chord_done(m, SUCCESS)
        if m.ignore_result and not followups.messages and counted is None:
            self.events.succeeded(m, value, _runtime(job))
            self.recorder.counters.outcome(SUCCESS)  # no row, but the heartbeat counts it
            job.settle()
            hooks.succeeded(job.task, m, value)
            return
        change = StateChange(task_id=m.id, state=SUCCESS, retries=m.retries,
                             worker=self.worker_name, finished_at=utcnow())
        try:
            self._put_result(change, value, m.serializer)
        except SerializationError as exc:
            self.failed(job, exc)
            return
        self.events.succeeded(m, value, _runtime(job))
        self._record_with_followups(change, followups, job.settle, m.notify, counted)
        hooks.succeeded(job.task, m, value)

    def failed(self, job: Job, exc: BaseException) -> None:
        """Retry when asked to (self.retry, autoretry_for); otherwise FAILURE, errbacks,
        and, when retries ran out, the delivery goes to the dead-letter queue. Reject and
        Ignore end the run as the task asks (:meth:`_refused_by_task`); ``replace()``
        sends the replacement instead (:meth:`_replaced`)."""
        if isinstance(exc, Replaced):
            self._replaced(job, exc)
            return
        m = job.message
        exc = _retry_later() or exc
        if isinstance(exc, (Reject, Ignore)):
            self._refused_by_task(job, exc)
            return
        plan = plan_retry(job.task.options, m, exc, utcnow(), self.conf.tzinfo)
        if isinstance(plan, RetryPlan):
            self._retry(job, plan)
            return
        exhausted = plan is not None
        if plan is not None:
            exc = plan
        job.state, job.retval = FAILURE, exc
        log.warning("task failed", error=f"{type(exc).__name__}: {exc}",
                    retries_exhausted=exhausted or None)
        change = _error_change(m, FAILURE, exc, self.worker_name)
        self.events.failed(m, exc, change.traceback)
        followups = self._callbacks(m, m.link_error, (m.id,)).end(self._unreached(m, change))
        dead_letter = exhausted and not job.acked_early
        self._record_with_followups(
            change, followups,
            (lambda: job.delivery.reject(requeue=False)) if dead_letter else job.settle,
            m.notify, chord_done(m, FAILURE, f"{m.task}[{m.id}] raised {_type_name(exc)}: {exc}"))
        hooks.failed(job.task, m, exc, change.traceback)

    def _replaced(self, job: Job, replaced: Replaced) -> None:
        """``self.replace(sig)``: no outcome, callbacks or chord count for this task; its
        replacement is sent in its place (hutch.workflows.replace), and the delivery
        acknowledged once that is recorded and published. A replacement that cannot
        be sent fails the task with the reason. task_postrun says IGNORED, as Celery's
        replace (which raises Ignore) does."""
        m = job.message
        job.state, job.retval = IGNORED, replaced
        try:
            handover = hand_over(self.planner.for_sender(m.notify), replaced.sig, m)
            wires = self._announce([(c.queue, c.encode()) for c in handover.plan.messages])
        except (HutchError, KeyError, TypeError) as exc:
            self.failed(job, exc)
            return
        log.info("task replaced; its replacement is sent", messages=len(handover.plan.messages))
        self.recorder.record(handover.change, wires, then=job.settle,
                             children=handover.children, groups=handover.plan.groups,
                             published=self._published(wires), notify=m.notify)

    def _retry(self, job: Job, plan: RetryPlan) -> None:
        m, reason = job.message, plan.reason
        job.state, job.retval = RETRY, reason
        log.info("task will retry", retry=plan.message.retries, eta=plan.eta.isoformat(),
                 error=f"{type(reason).__name__}: {reason}")
        change = _error_change(m, RETRY, reason, self.worker_name)
        change.eta = plan.eta
        self.events.retried(m, reason, change.traceback)
        wires = self._announce([(plan.message.queue, plan.message.encode())])
        self.recorder.record(change, wires, then=job.settle, published=self._published(wires))
        hooks.retried(job.task, m, reason, change.traceback)

    def _record_with_followups(self, change: StateChange, followups: Followups,
                               then: Callable[[], None], notify: str | None,
                               counted: Done | None = None) -> None:
        self.recorder.record(change, followups.wires, then=then,
                             children=pending_changes(followups.messages) + followups.ended,
                             groups=followups.groups, chord=counted,
                             published=self._published(followups.wires), notify=notify)

    def _announce(self, wires: list[tuple[str, Wire]]) -> list[tuple[str, Wire]]:
        """before_task_publish for messages this worker sends (hutch.publishing), in the
        thread that ran the task, as Celery does: a tracer's receiver still sees the
        task's span. The recorder publishes them; its receivers' headers go out."""
        return publishing.before(wires, self.conf.topology_prefix, None)

    def _published(self, wires: list[tuple[str, Wire]]) -> Callable[[], None] | None:
        """after_task_publish for ``wires``, which the recorder runs once they are
        confirmed; None when nobody listens."""
        if not wires or not signals.after_task_publish.receivers:
            return None
        return partial(publishing.after, wires, self.conf.topology_prefix)

    def _put_result(self, change: StateChange, value: Any, serializer: str) -> None:
        """JSON in ``result`` when it fits; otherwise encoded bytes beside it."""
        try:
            change.result = serialization.to_primitive(value)
            return
        except SerializationError:
            if serializer == "json":
                raise
        body, content_type, _ = serialization.dumps(value, serializer)
        change.result_encoded, change.result_content_type = body, content_type

    def _callbacks(self, m: TaskMessage, sigs: Sequence[dict[str, Any]],
                   prepend: tuple[Any, ...]) -> Followups:
        """Callbacks (a chain's next step among them) as messages and the group rows
        they need; a workflow callback (group, chord) is expanded here."""
        out = Followups()
        planner = self.planner.for_sender(m.notify)  # they tell m's sender, as m does
        for data in sigs:
            try:
                sig = Signature.from_dict(data)
                plan = planner.plan(sig, prepend, parent_id=m.id, root_id=m.root_id or m.id)
                wires = self._announce([(child.queue, child.encode()) for child in plan.messages])
            except (HutchError, KeyError, TypeError) as exc:
                log.error("callback could not be built; skipped", callback=data.get("task"),
                          error=str(exc))
                continue
            out.messages.extend(plan.messages)
            out.wires.extend(wires)
            out.groups.extend(plan.groups)
        return out

    def _unreached(self, m: TaskMessage, failure: StateChange) -> Unreached:
        """The rest of the workflow that ``m``'s failure ends (its chain's later steps)."""
        try:
            return unreached(self.planner, m.link, m.id, m.root_id or m.id, failure)
        except Exception as exc:  # noqa: BLE001 - the failure itself must still be recorded
            log.error("the later steps of this workflow could not be marked failed; "
                      "they will not run", error=f"{_type_name(exc)}: {exc}")
            return Unreached()

    # -- Reject and Ignore, raised by task code ----------------------------------------
    def _refused_by_task(self, job: Job, exc: Reject | Ignore) -> None:
        """``Reject()``: dead-lettered with its reason, the row REJECTED. ``Reject(requeue=
        True)``: a copy back to the tail of the queue counting one more lost attempt (row
        still STARTED), dead-lettered instead at ``worker_max_lost_attempts``, so a task
        that always requeues cannot loop. ``Ignore()``: acknowledged, the row IGNORED, no
        callbacks. Copies are confirmed before the acknowledgement, so both ack modes
        behave alike. A chain's later steps are marked failed, a chord counts a failure."""
        m = job.message
        job.state, job.retval = (REJECTED if isinstance(exc, Reject) else IGNORED), exc
        if isinstance(exc, Reject) and exc.requeue:
            lost, limit = lost_attempts(job.delivery.wire) + 1, self.poison.limit
            if lost < limit:
                log.info("task rejected its message with requeue; back to its queue",
                         requeued=lost, limit=limit, reason=str(exc))
                self.events.rejected(m.id, m.task, str(exc), requeue=True)
                copy = counted(job.delivery.wire, lost)
                self.recorder.record(None, [(job.delivery.queue, copy)], then=job.settle)
                return
            exc = Reject(f"requeued {lost} times (worker_max_lost_attempts={limit}); "
                         f"last reason: {exc.reason or 'none given'}")
        settle: Callable[[], None] = job.settle
        if isinstance(exc, Reject):
            settle = self._rejected_copy(job, exc)
            change = _error_change(m, REJECTED, exc, self.worker_name)
        else:
            log.info("task ignored its message")
            if m.ignore_result and not m.link and not m.chord:
                job.settle()
                return
            change = StateChange(task_id=m.id, state=IGNORED, retries=m.retries,
                                 worker=self.worker_name, exception_type=_type_name(exc),
                                 exception_message=str(exc), finished_at=utcnow())
        ended = self._unreached(m, change)
        self.recorder.record(change, then=settle, children=ended.rows, groups=ended.groups,
                             chord=chord_done(m, change.state, f"{m.task}[{m.id}] ended "
                                              f"{change.state}: {exc}"), notify=m.notify)

    def _rejected_copy(self, job: Job, exc: Reject) -> Callable[[], None]:
        """Put the rejected message's copy, with the reason, into the dead-letter queue;
        returns how to settle the delivery (rejected into it if the copy failed)."""
        reason = f"{_type_name(exc)}: {str(exc) or 'rejected by the task'}"
        log.warning("task rejected its message; dead-lettering it", reason=reason)
        self.events.rejected(job.message.id, job.message.task, reason)
        try:
            self.recorder.broker.publish_dead(
                job.delivery.queue, refused(job.delivery.wire, reason, self.worker_name))
        except BrokerError as error:
            log.warning("rejected message not copied into the dead-letter queue; rejecting "
                        "it into it instead", error=str(error), acked_early=job.acked_early)
            if not job.acked_early:
                return partial(job.delivery.reject, requeue=False)
        return job.settle

    # -- refusals -------------------------------------------------------------------
    def _dead_letter(self, delivery: Delivery, exc: BaseException,
                     message: TaskMessage | None = None) -> None:
        """Refuse a delivery with ``exc`` as the reason, in this order: a copy carrying the
        reason (messages.refused) is published into the route's dead-letter queue and
        confirmed (here, in the pool's thread), FAILURE is recorded (when the id is
        known), and the delivery is acknowledged. A crash anywhere leaves the message in
        its queue (to be handled again) or in the dead-letter queue, never in neither;
        only a crash between the confirm and the acknowledgement leaves a second copy.
        If the copy cannot be published, the delivery is rejected into the dead-letter
        queue instead, once FAILURE is recorded: its reason is then in the row and the
        log only."""
        task_id, name = (message.id, message.task) if message else peek_identity(delivery.wire)
        dead_id = None if task_id else str(uuid.uuid4())
        log.error("message refused; dead-lettering", task_id=task_id, task_name=name,
                  dead_id=dead_id, queue=delivery.queue, error=str(exc))
        copy = refused(delivery.wire, f"{_type_name(exc)}: {exc}", self.worker_name, dead_id)
        self.events.rejected(task_id, name, f"{_type_name(exc)}: {exc}")
        settle: Callable[[], None] = delivery.ack
        try:
            self.recorder.broker.publish_dead(delivery.queue, copy)
        except BrokerError as error:
            log.warning("refused message not copied into the dead-letter queue; rejecting "
                        "it into it instead", task_id=task_id, dead_id=dead_id,
                        error=str(error))
            settle = partial(delivery.reject, requeue=False)
        if task_id is None:
            self.recorder.record(None, then=settle)
            return
        change = StateChange(
            task_id=task_id, state=FAILURE, name=name, queue=delivery.queue,
            worker=self.worker_name, retries=peek(delivery.wire.headers, "retries") or 0,
            exception_type=_type_name(exc), exception_message=str(exc), finished_at=utcnow())
        counted = chord_done(message, FAILURE, f"{name}[{task_id}] was refused: {exc}") \
            if message else None
        ended = self._unreached(message, change) if message else Unreached()
        self.recorder.record(change, then=settle, chord=counted, children=ended.rows,
                             groups=ended.groups, notify=message.notify if message else None)

    def refuse_unexpected(self, delivery: Delivery, exc: Exception) -> None:
        """The pools' last line of defence, for an exception nothing else caught (a bug, or
        a message the checks let through): the delivery is dead-lettered with the error
        as its reason and never requeued, since handling it again would fail again."""
        try:
            message: TaskMessage | None = TaskMessage.decode(delivery.wire, self.accept,
                                                             self.max_bytes)
        except Exception:  # noqa: BLE001 - any failure here only means: refuse it by headers
            message = None
        frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        log.error("unexpected error handling a delivery; dead-lettering it",
                  error=f"{_type_name(exc)}: {exc}",
                  at=f"{frame[0].filename}:{frame[0].lineno} in {frame[0].name}" if frame
                  else None)
        self._dead_letter(delivery, exc, message)

    def _revoke(self, delivery: Delivery, m: TaskMessage, reason: str) -> None:
        """Expired: REVOKED, and the message goes to the dead-letter queue."""
        log.info("task not run", task_id=m.id, task_name=m.task, reason=reason)
        self._record_revoked(m, reason, lambda: delivery.reject(requeue=False))

    def _drop_revoked(self, delivery: Delivery, m: TaskMessage) -> None:
        """Revoked on purpose: REVOKED, and the message is acknowledged (nothing to replay)."""
        log.info("task not run", task_id=m.id, task_name=m.task, reason="revoked")
        self._record_revoked(m, "revoked", delivery.ack)

    def _record_revoked(self, m: TaskMessage, reason: str, then: Callable[[], None]) -> None:
        self.events.revoked(m, reason)
        task_signals.revoked(self, m, reason)
        change = StateChange(task_id=m.id, state=REVOKED, name=m.task, queue=m.queue,
                             worker=self.worker_name, retries=m.retries,
                             exception_message=reason, finished_at=utcnow())
        self.recorder.record(change, then=then,
                             chord=chord_done(m, REVOKED, f"{m.task}[{m.id}] was {reason}"),
                             notify=m.notify)


@dataclass
class Followups:
    """Messages a finished task sends next, encoded, and the group rows they need."""

    messages: list[TaskMessage] = field(default_factory=list)
    wires: list[tuple[str, Wire]] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    ended: list[StateChange] = field(default_factory=list)
    """FAILURE rows of the workflow steps a failed task ends (workflows/unreached.py)."""

    def end(self, steps: Unreached) -> Followups:
        self.ended.extend(steps.rows)
        self.groups.extend(steps.groups)
        return self


def _attempt_over(seen: Seen, m: TaskMessage) -> bool:
    """The row is at a later attempt, or this attempt ended in RETRY (the next attempt
    is a message of its own): a delivery of this attempt, even a redelivery after its
    worker died between scheduling the retry and acknowledging, must not run again."""
    return seen.retries > m.retries or (seen.state == RETRY and seen.retries == m.retries)


def chord_done(m: TaskMessage, state: str, reason: str = "") -> Done | None:
    """The chord event of a header task's final state: every failure counts (it fails
    the chord); a success counts for the member's last task only."""
    marker = m.chord
    if not isinstance(marker, dict) or not marker.get("group_id"):
        return None
    if state == SUCCESS and not marker.get("counts", True):
        return None
    return Done(str(marker["group_id"]), m.id, state, reason)


def _error_change(m: TaskMessage, state: str, exc: BaseException, worker: str) -> StateChange:
    return StateChange(
        task_id=m.id, state=state, retries=m.retries, worker=worker,
        exception_type=_type_name(exc), exception_message=str(exc),
        exception_args=encode_args(exc), traceback="".join(traceback.format_exception(exc)),
        finished_at=utcnow())


def _retry_later() -> BaseException | None:
    """The Retry a ``self.retry(throw=False)`` left on the running request, if any."""
    request = current_request()
    later: BaseException | None = request.retry_later if request is not None else None
    return later


def _runtime(job: Job) -> float:
    """Seconds from STARTED to now: the ``runtime`` of a task-succeeded event."""
    return (utcnow() - job.started_at).total_seconds()


async def _await(value: Any) -> Any:
    return await value


def interrupt(job: Job, reason: BaseException) -> None:
    """Cancel an asyncio job from any thread, remembering why."""
    task = job.aio_task
    if task is None or task.done():
        return
    job.interrupted = reason
    task.get_loop().call_soon_threadsafe(task.cancel)


@contextlib.contextmanager
def aio_limits(job: Job) -> Iterator[None]:
    """Soft and hard limits for the asyncio pool: the running task is cancelled (it sees
    ``asyncio.CancelledError``) and its outcome is the limit's exception."""
    job.aio_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    m, timers = job.message, []
    if m.soft_time_limit:
        timers.append(loop.call_later(m.soft_time_limit, interrupt, job, SoftTimeLimitExceeded(
            f"{m.task}[{m.id}] passed its soft time limit of {m.soft_time_limit:g} s")))
    if m.time_limit:
        timers.append(loop.call_later(m.time_limit, interrupt, job, TimeLimitExceeded(
            f"{m.task}[{m.id}] passed its time limit of {m.time_limit:g} s")))
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
