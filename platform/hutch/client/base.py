"""What ``Client`` (pika) and ``AsyncClient`` (aio-pika) share: everything but the I/O.

Settings, the task defaults of the app, message building, the publish retry
policy, PENDING rows and workflow planning are written here once; a subclass
opens its broker, publishes, waits and closes in its own way (threads and
blocking calls, or awaits). So a new call option, a new row column or a change
to how workflows are sent is made in one place and reaches both clients.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .. import publishing, signals
from ..call_options import RetryPolicy, build_message
from ..config import Settings
from ..errors import BrokerUnavailable, ConfigurationError
from ..events import TaskEvents
from ..logs import get_logger
from ..messages import TaskMessage, Wire, republished, resent, sent_event_fields
from ..results.pending_rows import pending_changes
from ..results.store import ResultStore, open_store
from ..tasks import TaskRegistry
from ..workflows.apply import Outgoing, prepare
from ..workflows.canvas import Signature
from .eager import refuse_workflow
from .pending import PendingWriter
from .waiter import new_notice_key

if TYPE_CHECKING:
    from ..brokers.base import Broker

log = get_logger("hutch.client")

T = TypeVar("T")

Routed = list[tuple[str, Wire]]

def next_pause(pauses: Iterator[float], exc: BrokerUnavailable) -> float:
    """The wait before the next publish attempt; re-raises ``exc`` when the policy
    (``pauses``, a call's ``retry_policy``) is spent."""
    pause = next(pauses, None)
    if pause is None:
        raise exc
    log.info("broker unreachable, retrying publish", error=str(exc), retry_in=pause)
    return pause


def publish_retrying(broker: Broker, routed: Routed, pauses: Iterator[float],
                     timeout: float) -> Routed:
    """Publish and wait for the confirms, retrying while the broker is unreachable after
    each wait of ``pauses`` (each retry as republished copies: the first try may have
    been stored with its confirm lost); what was published last. BrokerUnavailable once
    the waits are spent; the other publish errors at once."""
    while True:
        try:
            broker.publish(routed, timeout=timeout)
            return routed
        except BrokerUnavailable as exc:
            time.sleep(next_pause(pauses, exc))
            routed = resent(routed)


class HasTasks(Protocol):
    """What ``app=`` must have: a task registry (a ``Hutch`` app has one). The client
    takes nothing else from the app, so it names no app type."""

    @property
    def tasks(self) -> TaskRegistry: ...


class BaseClient:
    """Settings, message building, retry policy, PENDING rows and workflow planning."""

    def __init__(self, broker: str | None = None, backend: str | None = None, *,
                 app: HasTasks | None = None, tasks: TaskRegistry | None = None,
                 conf: Settings | None = None, **settings: Any) -> None:
        # the task defaults come from ``tasks`` (``app=`` is a shorthand for its tasks);
        # without either, every task gets the plain defaults and the settings decide
        self.tasks = tasks if tasks is not None else app.tasks if app is not None \
            else TaskRegistry()
        self.conf = conf if conf is not None else Settings.build(broker, backend, **settings)
        self._lock = threading.RLock()
        self._store: ResultStore | None = None
        self._pending: PendingWriter | None = None
        self._task_events: TaskEvents | None = None
        self.notice_key = new_notice_key()
        """The key workers send this client's tasks' completion notices under
        (TaskMessage.notify, hutch.client.waiter)."""

    # -- lazily opened connections ------------------------------------------------
    def _once(self, attr: str, factory: Callable[[], T]) -> T:
        """Create a connection object on first use, once, whichever thread asks first."""
        value: T | None = getattr(self, attr)
        if value is None:
            with self._lock:  # re-entrant: the waiter's factory asks for the broker
                value = getattr(self, attr)
                if value is None:
                    value = factory()
                    setattr(self, attr, value)
        return value

    @property
    def store(self) -> ResultStore:
        return self._once("_store", lambda: open_store(self.conf))

    @property
    def pending_writer(self) -> PendingWriter:
        return self._once("_pending", lambda: PendingWriter(self.store))

    # -- building -----------------------------------------------------------------
    def message(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                **options: Any) -> TaskMessage:
        """The message ``submit`` would send, without sending it (beat builds its runs'
        messages with this). ConfigurationError/SerializationError for bad input."""
        return build_message(name, tuple(args), kwargs or {}, options, self.conf,
                             self.tasks.options_for(name), notify=self.notice_key)

    def _submission(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None,
                    options: dict[str, Any]) -> tuple[TaskMessage, bool, RetryPolicy]:
        """``submit``'s message and its publish retry settings (``retry=``, ``retry_policy=``)."""
        if self.conf.task_always_eager:  # Client.submit runs the task before this
            raise ConfigurationError("task_always_eager: AsyncClient does not run tasks "
                                     "eagerly; call task.apply() in tests instead")
        retry = options.pop("retry", True)
        policy = RetryPolicy.from_mapping(options.pop("retry_policy", None))
        return self.message(name, args, kwargs, **options), retry, policy

    def _workflow(self, sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any] | None,
                  options: dict[str, Any] | None) -> Outgoing:
        """The frozen workflow, its messages and group rows (see hutch.workflows.apply)."""
        if self.conf.task_always_eager:
            raise refuse_workflow()
        return prepare(self.conf, self.tasks.options_for, sig, args, kwargs, options,
                       notify=self.notice_key)

    # -- publishing -----------------------------------------------------------------
    @staticmethod
    def _routed(messages: Sequence[TaskMessage], as_republished: bool) -> Routed:
        if as_republished:
            return [(m.queue, republished(m.encode())) for m in messages]
        return [(m.queue, m.encode()) for m in messages]

    @staticmethod
    def _pauses(retry: bool, policy: RetryPolicy | None) -> Iterator[float]:
        """The waits between publish attempts: none without ``retry``."""
        return iter((policy or RetryPolicy()).intervals()) if retry else iter(())

    _next_pause = staticmethod(next_pause)

    # -- before_task_publish / after_task_publish (hutch.signals) ----------------------
    def _before_publish(self, routed: Routed, retry: bool, policy: RetryPolicy | None) -> Routed:
        """Send before_task_publish for each message when a receiver is connected; its
        receivers may change the ``headers`` and ``properties`` that go out
        (hutch.publishing)."""
        if not signals.before_task_publish.receivers:
            return routed
        return publishing.before(
            routed, self.conf.topology_prefix,
            dataclasses.asdict(policy or RetryPolicy()) if retry else None)

    def _after_publish(self, routed: Routed) -> None:
        """after_task_publish for each confirmed message, when a receiver is connected."""
        publishing.after(routed, self.conf.topology_prefix)

    def _exchange(self, queue: str) -> str:
        return publishing.exchange(self.conf.topology_prefix, queue)

    # -- task-sent events (hutch.events) ---------------------------------------------
    def _open_task_events(self) -> TaskEvents:
        """The emitter of this client's task-sent events; a subclass that can send them
        one by one (the synchronous client) gives it a publish function."""
        return TaskEvents(None, socket.gethostname())

    @property
    def task_events(self) -> TaskEvents:
        return self._once("_task_events", self._open_task_events)

    def _exchange_of(self, m: TaskMessage) -> str:
        """The exchange a message is published to (docs/topology.md), for its event."""
        return self._exchange(m.queue)

    def _sent_bodies(self, messages: Sequence[TaskMessage]) -> list[bytes]:
        """The task-sent events of ``messages``, encoded (the asyncio client hands them
        to its publisher with the messages); none when ``task_send_sent_event`` is off."""
        if not self.conf.task_send_sent_event:
            return []
        events = self.task_events
        return [events.body("task-sent", sent_event_fields(m, self._exchange_of(m)))
                for m in messages]

    def _sent(self, messages: Sequence[TaskMessage]) -> None:
        """PENDING rows so DBAs see queued work, written in the background (see
        hutch.client.pending for why a publish does not wait for them)."""
        if self.conf.task_track_pending:
            rows = pending_changes(messages)
            if rows:
                self.pending_writer.add(rows)

    # -- closing ----------------------------------------------------------------------
    def _flush_pending(self, timeout: float | None = 10.0) -> bool:
        """Wait until the PENDING rows of everything submitted so far are written (each
        client's ``flush()`` waits for its confirms first)."""
        return self._pending.flush(timeout) if self._pending is not None else True

    def _close_results(self) -> None:
        """Write the outstanding PENDING rows, then close the result store."""
        self._flush_pending()
        if self._store is not None:
            self._store.close()
        self._store = self._pending = None
