"""Poison messages: a task that keeps killing its worker process is dead-lettered, not looped.

With late acknowledgement, a delivery whose worker process dies (a segfault, the
OOM killer, ``os._exit``, ``kill -9``) goes back to its queue, so a task that
kills every process it runs in would take a worker down for ever. Before a
*suspect* delivery runs (RabbitMQ marked it redelivered, or it is a copy that
already counts lost attempts), :class:`PoisonGuard` judges it by the row its
RECEIVED claim found (hutch.worker.claims; a finished row was settled before):

- the row is STARTED for this same attempt and the delivery is a redelivery, and
  the process that started it is gone (a live one is waited for first:
  hutch.worker.owners): the previous delivery started and never finished, so that
  attempt was lost. The
  guard publishes a clean copy with the ``lost_attempts`` header one higher and
  acknowledges the original only once the copy is confirmed (as a message whose
  eta is still ahead is delayed again); when the count reaches
  ``worker_max_lost_attempts`` it records FAILURE (``WorkerLostError``) and
  dead-letters the delivery instead.
- on a quorum route, a delivery whose ``x-delivery-count`` reached the queue's
  delivery limit is the last one RabbitMQ will make: the worker records FAILURE
  (``DeliveryLimitExceeded``) and dead-letters it itself, so the row says why.
- anything else (the delivery was only prefetched by a worker that died, or given
  back at a warm shutdown) runs, but its STARTED state is committed *before* it
  runs, so that a loss this time is recognised next time.

A task that raises ``Reject(requeue=True)`` is counted the same way: its copy back in
the queue carries one more lost attempt, and at the limit it is dead-lettered as
REJECTED (Executor._refused_by_task), so a task that always requeues cannot loop.

A first delivery's STARTED state is committed with the next batch (within about
50 ms), not before the task runs, which would cost a commit per task; a task that
kills its process in those first milliseconds is therefore run at most
``worker_max_lost_attempts + 1`` times. Tasks with ``ignore_result`` have no row
and are only protected on quorum routes, by the delivery limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..brokers.routes import route_options
from ..config import Settings
from ..errors import DeliveryLimitExceeded, WorkerLostError
from ..logs import get_logger
from ..messages import LOST_ATTEMPTS_HEADER, TaskMessage, Wire, continuation
from ..results.records import STARTED, Seen, StateChange
from .recorder import Recorder

if TYPE_CHECKING:
    from ..brokers.base import Delivery

log = get_logger("hutch.worker")

DELIVERY_COUNT_HEADER = "x-delivery-count"
"""Set by quorum queues: how many times this message was delivered before."""

STARTED_COMMIT_TIMEOUT = 30.0
"""Longest a suspect delivery waits for its STARTED commit (the database may be down)."""

DeadLetter = Callable[["Delivery", BaseException, TaskMessage], None]


class PoisonGuard:
    """Judges suspect deliveries for one executor (see the module docstring)."""

    def __init__(self, conf: Settings, recorder: Recorder, dead_letter: DeadLetter) -> None:
        self.limit = conf.worker_max_lost_attempts
        self._conf = conf
        self._recorder = recorder
        self._dead_letter = dead_letter
        self._delivery_limits: dict[str, int | None] = {}

    def settled(self, delivery: Delivery, message: TaskMessage, seen: Seen | None,
                started: Callable[[], StateChange]) -> bool:
        """True if the delivery was settled here; False if it should run now (for a
        suspect one, only after ``started()`` has been committed). ``seen`` is the row
        its RECEIVED claim found (worker/claims.py): None when it applied, and never a
        finished row (the executor settles those first)."""
        lost = lost_attempts(delivery.wire)
        if not (delivery.redelivered or lost):
            return False
        if delivery.redelivered and lost_in_flight(seen, message):
            self._lost(delivery, message, lost + 1)
            return True
        limit = self._delivery_limit(delivery.queue)
        delivered = _whole(delivery.wire.headers.get(DELIVERY_COUNT_HEADER))
        if limit is not None and delivered >= limit:
            self._dead_letter(delivery, DeliveryLimitExceeded(
                f"delivered {delivered + 1} times without finishing (the queue's "
                f"delivery_limit is {limit})"), message)
            return True
        if not message.ignore_result:
            self._recorder.record(started())
            self._recorder.flush(STARTED_COMMIT_TIMEOUT)
        return False

    def _lost(self, delivery: Delivery, message: TaskMessage, lost: int) -> None:
        if lost >= self.limit:
            self._dead_letter(delivery, WorkerLostError(
                f"the worker process running this task died at least {lost} times "
                f"(killed or crashed; worker_max_lost_attempts={self.limit})"), message)
            return
        log.warning("the worker process running this task died; running it again",
                    task_id=message.id, task_name=message.task, lost_attempts=lost,
                    limit=self.limit)
        self._recorder.record(None, [(delivery.queue, counted(delivery.wire, lost))],
                              then=delivery.ack)

    def _delivery_limit(self, route: str) -> int | None:
        if route not in self._delivery_limits:
            options = route_options(self._conf, route)
            self._delivery_limits[route] = (options.delivery_limit
                                            if options.queue_type == "quorum" else None)
        return self._delivery_limits[route]


def lost_attempts(wire: Wire) -> int:
    """Lost attempts the message already counts (0 for a message never lost)."""
    return _whole(wire.headers.get(LOST_ATTEMPTS_HEADER))


def counted(wire: Wire, lost: int) -> Wire:
    """A clean copy (no x-death, no delivery count) that counts ``lost`` attempts."""
    clean = continuation(wire)
    return dataclasses.replace(clean, headers={**clean.headers, LOST_ATTEMPTS_HEADER: lost})


def lost_in_flight(seen: Seen | None, message: TaskMessage) -> bool:
    """This attempt started (its STARTED state was committed) and never finished."""
    return seen is not None and seen.state == STARTED and seen.retries == message.retries


def _whole(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0
