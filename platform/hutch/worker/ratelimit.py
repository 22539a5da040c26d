"""Per-task rate limits: a token bucket per task, and deferral (the rate syntax is
Celery's, parsed where a task is declared: :func:`hutch.tasks.parse_rate`).

``@app.task(rate_limit="10/m")`` caps how often *one worker process* starts that
task. A delivery that finds no token must not sit in a pool slot (other tasks
would queue behind it) nor stay unacknowledged in memory for long (RabbitMQ's
consumer timeout). So every waiting delivery takes a token from the future (a
reservation, which spaces a burst out instead of waking it all at once) and:

- waits up to ``LOCAL_HOLD`` seconds in a timer here, unacknowledged, and is
  then handed back to the pool; or
- goes back through the delay ladder as a clean copy whose ``rate_slot``
  header carries its reserved time, the original acknowledged once the copy is
  confirmed. The ladder never delivers early but may deliver late under load, so
  the copy asks to come back up to a second before its slot and the remainder
  is a short local hold. A message that carries a slot already owns its token,
  on whichever worker it lands.

prefork children are independent consumers, so each gets ``rate / concurrency``
(``split``): the worker as a whole keeps to the rate in the long run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..brokers.base import ForwardingDelivery
from ..logs import get_logger
from ..messages import WORKER_HEADERS, Wire, continuation
from ..tasks import parse_rate

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..config import Settings
    from ..tasks import Task
    from .recorder import Recorder

log = get_logger("hutch.worker")

LOCAL_HOLD = 1.0
"""Longest wait held in this process; longer ones go through the delay ladder."""

LADDER_RESOLUTION = 1.0
"""How early a copy asks the ladder to bring it back: the ladder rounds up to 1/8 s,
and the rest of this margin absorbs its lateness under load."""

SLOT_HEADER = WORKER_HEADERS[0]
"""ISO time of the token a republished message reserved; it runs then without another."""

class TokenBucket:
    """``rate`` tokens a second, holding at most ``capacity`` (1: no bursts, as in Celery).

    ``reserve()`` always takes a token, borrowing from the future when the bucket
    is empty, and says how long until that token is due: callers that wait that
    long keep to the rate, and a burst is spread out in arrival order.
    """

    def __init__(self, rate: float, capacity: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """0.0: run now. Otherwise the seconds to wait before running."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            if self._tokens > -1e-9:
                return 0.0
            return -self._tokens / self.rate


class Holder:
    """One timer thread releasing held items when due (started on demand, gone when idle)."""

    def __init__(self, release: Callable[[Any], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._release = release
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def hold(self, seconds: float, item: Any) -> None:
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + seconds, next(self._order), item))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hutch-rate-hold",
                                                daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._release(item)
            except Exception:  # noqa: BLE001 - the unacked delivery is redelivered
                log.exception("could not hand a rate-limited delivery back to the pool")

    def _next(self) -> Any:
        with self._cond:
            while self._heap:
                due, _, item = self._heap[0]
                wait = due - self._clock()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    return item
                self._cond.wait(wait)
            self._thread = None
            return None


class HeldDelivery(ForwardingDelivery):
    """A delivery that waited here for its reserved token: the pool runs it unasked."""


def _not_attached(delivery: Delivery) -> None:
    raise RuntimeError("RateLimits.attach() was not called with the pool's submit")


class RateLimits:
    """The buckets of one worker process and what to do with a delivery that must wait."""

    def __init__(self, conf: Settings, recorder: Recorder, *, local_hold: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.conf = conf
        self.recorder = recorder
        self.local_hold = LOCAL_HOLD if local_hold is None else local_hold
        self.split = 1
        self._split: Callable[[], int] = lambda: 1
        self._clock = clock
        self._resubmit: Callable[[Delivery], None] = _not_attached
        self._holder = Holder(self._release, clock)
        self.held: dict[int, Delivery] = {}
        """Deliveries waiting here for their token, by ``id()`` of their wire: still
        reserved (``inspect reserved``) until they run."""
        self._buckets: dict[str, TokenBucket | None] = {}
        self._changed: dict[str, float | None] = {}
        """Rates set by ``hutch control rate_limit`` (per second), over the tasks' own."""
        self._lock = threading.Lock()

    def attach(self, resubmit: Callable[[Delivery], None],
               split: Callable[[], int] = lambda: 1) -> None:
        """``resubmit`` hands a delivery back to the pool; each task's rate is divided
        by ``split()`` (the number of prefork children sharing the worker's limits now:
        when the pool grows or shrinks, the buckets are made again)."""
        self._resubmit = resubmit
        self._split = split

    def bucket(self, task: Task) -> TokenBucket | None:
        """The task's bucket, made on first use (None: not limited). No lock once made:
        this runs for every task, limited or not."""
        if self._split() != self.split:
            self._resplit()
        try:
            return self._buckets[task.name]
        except KeyError:
            pass
        with self._lock:
            if task.name not in self._buckets:
                rate = (self._changed[task.name] if task.name in self._changed
                        else parse_rate(task.options.rate_limit, task.name))
                self._buckets[task.name] = self._made(rate)
            return self._buckets[task.name]

    def _made(self, rate: float | None) -> TokenBucket | None:
        return TokenBucket(rate / self.split, clock=self._clock) if rate else None

    def _resplit(self) -> None:
        with self._lock:
            self.split = max(1, self._split())
            self._buckets.clear()

    def change(self, task_name: str, value: str | float | None) -> float | None:
        """A new limit for ``task_name`` in this process (``hutch control rate_limit``):
        tasks per second for the whole worker, None for no limit; ConfigurationError for
        a rate that does not parse. Deliveries already waiting keep their reserved slot."""
        rate = parse_rate(value, task_name)
        with self._lock:
            self._changed[task_name] = rate
            self._buckets[task_name] = self._made(rate)
        return rate

    def admit(self, delivery: Delivery, task: Task, task_id: str) -> bool:
        """True: run it now. False: it waits (held here or republished), settled later."""
        if self.conf.worker_disable_rate_limits or isinstance(delivery, HeldDelivery):
            return True
        bucket = self.bucket(task)
        if bucket is None:
            return True
        slot = _reserved_slot(delivery.wire)
        if slot is not None:
            wait = (slot - _utcnow()).total_seconds()
        else:
            wait = bucket.reserve()
            slot = _utcnow() + dt.timedelta(seconds=wait)
        if wait <= 0:
            return True
        if wait <= self.local_hold:
            log.debug("rate limited; holding", task_id=task_id, wait=round(wait, 3))
            self.held[id(delivery.wire)] = delivery
            self._holder.hold(wait, HeldDelivery(delivery))
        else:
            self._through_ladder(delivery, slot, task_id)
        return False

    def _release(self, held: HeldDelivery) -> None:
        self.held.pop(id(held.wire), None)
        self._resubmit(held)

    def _through_ladder(self, delivery: Delivery, slot: dt.datetime, task_id: str) -> None:
        """Republish a clean copy due a little before its slot (the ladder may deliver
        up to a second late; the rest is a local hold); ack once it is confirmed."""
        early = min(LADDER_RESOLUTION, self.local_hold)
        copy = _with_slot(continuation(delivery.wire), slot,
                          slot - dt.timedelta(seconds=early))
        log.debug("rate limited; waiting in the delay ladder", task_id=task_id,
                  slot=slot.isoformat())
        self.recorder.record(None, [(delivery.queue, copy)], then=delivery.ack)


def _with_slot(wire: Wire, slot: dt.datetime, eta: dt.datetime) -> Wire:
    """The copy carries its slot and an eta for the ladder; the AMQP TTL stays behind
    (the worker checks ``expires`` itself, and a TTL would cut a ladder wait short)."""
    headers = {**wire.headers, SLOT_HEADER: slot.isoformat(), "eta": eta.isoformat()}
    return dataclasses.replace(wire, headers=headers, expiration=None)


def _reserved_slot(wire: Wire) -> dt.datetime | None:
    value = (wire.headers or {}).get(SLOT_HEADER)
    if not isinstance(value, str):
        return None
    try:
        slot = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return slot if slot.tzinfo else slot.replace(tzinfo=dt.timezone.utc)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
