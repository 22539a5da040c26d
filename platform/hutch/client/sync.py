"""Client: submit tasks by name and read their results; needs no task code.

``submit()`` returns only once RabbitMQ has confirmed the message, so an
accepted task is on disk in the broker. With ``retry=True`` (the default, as in
Celery) an unreachable broker is retried under the call's ``retry_policy``; the
caller gets the error if the last attempt fails (each retry is an INFO log line).
A refused login (BrokerAccessRefused) is raised at once: retrying cannot help.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..brokers.factory import open_broker
from ..call_options import RetryPolicy, build_message
from ..config import Settings
from ..errors import BrokerUnavailable
from ..logs import get_logger
from ..messages import TaskMessage, resent
from ..results.store import ResultStore, open_store
from ..workflows.apply import apply_workflow
from ..workflows.canvas import Signature
from .handles import AsyncResult, GroupResult
from .pending import PendingWriter, pending_changes
from .waiter import CompletionWaiter

if TYPE_CHECKING:
    from ..app import Hutch
    from ..brokers.base import Broker
    from ..tasks import TaskOptions

log = get_logger("hutch.client")

T = TypeVar("T")


class Client:
    """A producer and result reader. ``Client(broker=..., backend=...)`` or ``app.client()``."""

    def __init__(self, broker: str | None = None, backend: str | None = None, *,
                 app: Hutch | None = None, conf: Settings | None = None,
                 **settings: Any) -> None:
        self.app = app
        self.conf = conf if conf is not None else Settings.build(broker, backend, **settings)
        self._lock = threading.RLock()
        self._broker: Broker | None = None
        self._store: ResultStore | None = None
        self._waiter: CompletionWaiter | None = None
        self._pending: PendingWriter | None = None

    # -- lazily opened connections ------------------------------------------------
    def _once(self, attr: str, factory: Callable[[], T]) -> T:
        """Create a connection object on first use, once, whichever thread asks first."""
        value = getattr(self, attr)
        if value is None:
            with self._lock:  # re-entrant: the waiter's factory asks for the broker
                value = getattr(self, attr)
                if value is None:
                    value = factory()
                    setattr(self, attr, value)
        return value

    @property
    def broker(self) -> Broker:
        return self._once("_broker", lambda: open_broker(self.conf))

    @property
    def store(self) -> ResultStore:
        return self._once("_store", lambda: open_store(self.conf))

    @property
    def waiter(self) -> CompletionWaiter:
        return self._once("_waiter", lambda: CompletionWaiter(self.broker))

    # -- submitting ---------------------------------------------------------------
    def submit(self, name: str, *args: Any, kwargs: dict[str, Any] | None = None,
               **options: Any) -> AsyncResult:
        """Send task ``name`` with positional ``args``; returns at once with ``.id``.

        Task keyword arguments go in ``kwargs=``; every other keyword is a call
        option (queue=, serializer=, link=, ... see docs/guide.md).
        """
        retry = options.pop("retry", True)
        policy = RetryPolicy.from_mapping(options.pop("retry_policy", None))
        message = build_message(name, args, kwargs or {}, options, self.conf,
                                self.task_options(name))
        self.send([message], retry=retry, policy=policy)
        return AsyncResult(message.id, self, ignored=message.ignore_result)

    def send_signature(self, sig: Signature) -> AsyncResult:
        options = dict(sig.options)
        return self.submit(sig.task, *sig.args, kwargs=sig.kwargs, **options)

    def apply_workflow(self, sig: Signature, args: tuple[Any, ...] = (),
                       kwargs: dict[str, Any] | None = None,
                       options: dict[str, Any] | None = None) -> AsyncResult | GroupResult:
        """Send a chain, group, chord or chunks (see hutch.workflows.apply)."""
        return apply_workflow(self, sig, args, kwargs, options)

    def send(self, messages: Sequence[TaskMessage], retry: bool = True,
             policy: RetryPolicy | None = None) -> None:
        """Publish already-built messages and wait for RabbitMQ's confirms."""
        routed = [(m.queue, m.encode()) for m in messages]
        self._publish(routed, retry, policy or RetryPolicy())
        if self.conf.task_track_pending:
            self._record_pending(messages)

    def _publish(self, routed: list, retry: bool, policy: RetryPolicy) -> None:
        intervals = iter(policy.intervals()) if retry else iter(())
        while True:
            try:
                self.broker.publish(routed, timeout=self.conf.broker_confirm_timeout)
                return
            except BrokerUnavailable as exc:
                pause = next(intervals, None)
                if pause is None:
                    raise
                log.info("broker unreachable, retrying publish", error=str(exc),
                         retry_in=pause)
                time.sleep(pause)
                routed = resent(routed)

    def _record_pending(self, messages: Sequence[TaskMessage]) -> None:
        """PENDING rows so DBAs see queued work, written in the background (see
        hutch.client.pending for why submit() does not wait for them)."""
        rows = pending_changes(messages)
        if rows:
            self.pending_writer.add(rows)

    @property
    def pending_writer(self) -> PendingWriter:
        return self._once("_pending", lambda: PendingWriter(self.store))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the PENDING rows of everything submitted so far are written."""
        return self._pending.flush(timeout) if self._pending is not None else True

    def task_options(self, name: str) -> TaskOptions | None:
        """The app's defaults for task ``name`` (None without an app, or for unknown names)."""
        task = self.app.tasks.get(name) if self.app is not None else None
        return task.options if task is not None else None

    # -- results ------------------------------------------------------------------
    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        return AsyncResult(task_id, self)

    def close(self) -> None:
        self.flush()
        if self._waiter is not None:
            self._waiter.close()
        if self._broker is not None:
            self._broker.close()
        if self._store is not None:
            self._store.close()
        self._broker = self._store = self._waiter = self._pending = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
