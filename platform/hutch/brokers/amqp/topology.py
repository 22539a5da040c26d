"""Every exchange and queue name hutch uses, and their idempotent declaration.

Names and arguments are computed in one place (:class:`Topology`) as a neutral
list of steps; three small executors run those steps on a pika blocking
channel, on the publisher's asynchronous pika channel, and on an aio-pika
channel, so the sync publisher, the worker and the AsyncClient can never
disagree about the topology. docs/topology.md draws it.

For route ``R`` and prefix ``P``::

    exchange P.R (direct) --R--> queue P.R  --(reject / expiry)--> exchange P.R.dlx
    exchange P.R.dlx (direct) --R--> queue P.R.dead
    exchange P.notices (topic)   completion notices, non-persistent, under the key of the
        client that sent the tasks (or "all", "none")
    exchange P.control (fanout)  broadcasts (revoke)
    exchange P.task-events (fanout)  task events for live views, non-persistent
    exchange P.delay.level10 .. P.delay.level0 (topic) + TTL queues P.delay.134217728s ..
        P.delay.125ms: the delay ladder (hutch.brokers.amqp.ladder), whose last hop P.delay.deliver
        (topic) hands a due message to queue P.R
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import QueueNodeDown
from ...messages import Wire, delay_ticks
from ..base import NOTICES
from . import ladder
from .mismatch import queue_refusal

QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True)
class RouteOptions:
    """Per-route queue features; the defaults give a plain durable classic queue.

    Built from settings by :mod:`hutch.brokers.routes`, which refuses combinations RabbitMQ
    3.10 cannot do (priorities on quorum queues, a delivery limit on classic ones).
    """

    max_priority: int | None = None
    queue_type: QueueType = "classic"
    delivery_limit: int | None = None

    def queue_arguments(self) -> dict[str, Any]:
        """Quorum queues dead-letter at least once, which RabbitMQ only allows together
        with ``reject-publish`` overflow (there is no length limit, so it never rejects)."""
        args: dict[str, Any] = {}
        if self.queue_type == "quorum":
            args["x-queue-type"] = "quorum"
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"
        if self.max_priority is not None:
            args["x-max-priority"] = int(self.max_priority)
        if self.delivery_limit is not None:
            args["x-delivery-limit"] = int(self.delivery_limit)
        return args


@dataclass(frozen=True)
class ExchangeStep:
    name: str
    kind: str  # "direct" | "fanout" | "topic"


@dataclass(frozen=True)
class QueueStep:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BindStep:
    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class ExchangeBindStep:
    destination: str
    source: str
    routing_key: str


Step = ExchangeStep | QueueStep | BindStep | ExchangeBindStep

LADDER_TYPES = ("classic", "quorum")

SHARED = "\0shared"
"""Pseudo-route naming the shared steps (events, control, the delay ladder) in caches."""


@dataclass(frozen=True)
class RouteNames:
    route: str
    exchange: str
    queue: str
    dead_letter_exchange: str
    dead_letter_queue: str


class Topology:
    """Names and declaration steps for one ``topology_prefix``."""

    def __init__(self, prefix: str = "hutch",
                 options: Mapping[str, RouteOptions] | None = None,
                 default: RouteOptions = RouteOptions(), ladder_type: str = "classic") -> None:
        """``ladder_type``: ``classic`` or ``quorum``, the delay ladder this topology
        declares and publishes to (``delay_queue_type``); the two ladders have names of
        their own, so switching leaves the other one to drain into the same routes."""
        self.prefix = prefix
        self._options = dict(options or {})
        self._default = default
        self.ladder_type = ladder_type

    def fanout_exchange(self, channel: str) -> str:
        """The exchange of a broadcast channel (brokers.base.FanOutChannel's name)."""
        return f"{self.prefix}.{channel}"

    @property
    def notices_exchange(self) -> str:
        """The completion notices' exchange (brokers.base.NOTICES): a topic exchange,
        since each notice is routed to the client that sent its tasks."""
        return self.fanout_exchange(NOTICES.name)

    @property
    def control_exchange(self) -> str:
        return self.fanout_exchange("control")

    @property
    def task_events_exchange(self) -> str:
        """Task events for live views (brokers.base.TASK_EVENTS), apart from the notices."""
        return self.fanout_exchange("task-events")

    @property
    def deliver_exchange(self) -> str:
        """Where the delay ladder's last hop hands messages back to their route."""
        return f"{self.prefix}.delay.deliver"

    def _ladder_base(self, ladder_type: str | None = None) -> str:
        """``P.delay`` (classic ladder) or ``P.delay.quorum``."""
        kind = ladder_type or self.ladder_type
        return f"{self.prefix}.delay" + (".quorum" if kind == "quorum" else "")

    def delay_exchange(self, level: int, ladder_type: str | None = None) -> str:
        """Level ``level``'s exchange: reads the octal digit worth 8**level ticks."""
        return f"{self._ladder_base(ladder_type)}.level{level}"

    def delay_queue(self, level: int, digit: int, ladder_type: str | None = None) -> str:
        """The queue holding ``digit`` at ``level``, named after its TTL (``P.delay.3s``,
        ``P.delay.quorum.3s``)."""
        return f"{self._ladder_base(ladder_type)}.{ladder.queue_suffix(level, digit)}"

    def ladder_steps(self) -> list[Step]:
        """The delay ladder: level L holds a message D x 8**L ticks in its queue for
        digit D of the routing key and passes a 0 straight down (docs/topology.md)."""
        steps: list[Step] = [ExchangeStep(self.deliver_exchange, "topic")]
        for level in range(ladder.LEVELS):
            name = self.delay_exchange(level)
            below = self.delay_exchange(level - 1) if level else self.deliver_exchange
            steps.append(ExchangeStep(name, "topic"))
            for digit in ladder.level_digits(level):
                queue = self.delay_queue(level, digit)
                steps += [QueueStep(queue, self._ladder_queue_arguments(level, digit, below)),
                          BindStep(queue, name, ladder.hold_binding(level, digit))]
            steps.append(ExchangeBindStep(below, name, ladder.pass_binding(level)))
        return steps

    def _ladder_queue_arguments(self, level: int, digit: int, below: str) -> dict[str, Any]:
        """A ladder queue's TTL and where it dead-letters to. A quorum ladder queue
        dead-letters at least once (RabbitMQ 3.10+: it needs reject-publish overflow),
        so a node failing mid-hop does not lose the message, as a classic queue's
        at-most-once dead-lettering could."""
        arguments: dict[str, Any] = {"x-message-ttl": ladder.queue_ttl_ms(level, digit),
                                     "x-dead-letter-exchange": below}
        if self.ladder_type == "quorum":
            arguments.update({"x-queue-type": "quorum",
                              "x-dead-letter-strategy": "at-least-once",
                              "x-overflow": "reject-publish"})
        return arguments

    def target(self, route: str, wire: Wire) -> tuple[str, str]:
        """(exchange, routing key) for a publish: the route, or, while eta is ahead, the
        ladder level of the delay's highest digit (no hops through the empty levels above)."""
        ticks = delay_ticks(wire)
        if ticks <= 0:
            return self.names(route).exchange, route
        level, key = ladder.routing_key(route, ticks)
        return self.delay_exchange(level), key

    def dead_letter_target(self, route: str) -> tuple[str, str]:
        """(exchange, routing key) that puts a message straight into the route's
        dead-letter queue, as RabbitMQ does when a delivery is rejected."""
        return self.names(route).dead_letter_exchange, route

    def options(self, route: str) -> RouteOptions:
        return self._options.get(route, self._default)

    def names(self, route: str) -> RouteNames:
        base = f"{self.prefix}.{route}"
        return RouteNames(route=route, exchange=base, queue=base,
                          dead_letter_exchange=f"{base}.dlx", dead_letter_queue=f"{base}.dead")

    def work_queue_arguments(self, route: str) -> dict[str, Any]:
        names = self.names(route)
        return {"x-dead-letter-exchange": names.dead_letter_exchange,
                "x-dead-letter-routing-key": route,
                **self.options(route).queue_arguments()}

    def route_steps(self, route: str) -> list[Step]:
        """Dead-letter side first, so the work queue's DLX exists before anything can die."""
        n = self.names(route)
        dead_args = ({"x-queue-type": "quorum"}
                     if self.options(route).queue_type == "quorum" else {})
        return [
            ExchangeStep(n.dead_letter_exchange, "direct"),
            QueueStep(n.dead_letter_queue, dead_args),
            BindStep(n.dead_letter_queue, n.dead_letter_exchange, route),
            ExchangeStep(n.exchange, "direct"),
            QueueStep(n.queue, self.work_queue_arguments(route)),
            BindStep(n.queue, n.exchange, route),
            # the route is one escaped word, so `work` never takes `work.high`'s
            BindStep(n.queue, self.deliver_exchange, ladder.deliver_binding(route)),
        ]

    def fanout_steps(self) -> list[Step]:
        """The broadcast exchanges (notices, control, task events): all a subscriber or
        a broadcast needs of the shared topology."""
        return [ExchangeStep(self.notices_exchange, "topic"),
                ExchangeStep(self.control_exchange, "fanout"),
                ExchangeStep(self.task_events_exchange, "fanout")]

    def shared_steps(self) -> list[Step]:
        return [*self.fanout_steps(), *self.ladder_steps()]

    def shared_names(self) -> tuple[list[str], list[str]]:
        """(exchanges, queues) shared by every route, both ladders', for deletion."""
        exchanges = [self.notices_exchange, self.control_exchange, self.task_events_exchange,
                     self.deliver_exchange]
        queues: list[str] = []
        for kind in LADDER_TYPES:
            exchanges += [self.delay_exchange(level, kind) for level in range(ladder.LEVELS)]
            queues += self.ladder_queues(kind)
        return exchanges, queues

    @property
    def ladder_key(self) -> str:
        """The name its queues are told by as a whole (``P.delay.*``) when their node is
        down (hutch.brokers.amqp.mismatch.tell_down)."""
        return f"{self._ladder_base()}.*"

    def ladder_queues(self, ladder_type: str) -> list[str]:
        """The queues of one ladder, lowest level first."""
        return [self.delay_queue(level, digit, ladder_type) for level in range(ladder.LEVELS)
                for digit in ladder.level_digits(level)]

    def steps_for(self, route: str, skip: Collection[str] = ()) -> list[Step]:
        """Steps behind a cache key: a route's own, or the shared ones for SHARED;
        ``skip``: queues left out, with the steps that bind them (see ``without``)."""
        return without(self.shared_steps() if route == SHARED else self.route_steps(route),
                       skip)

    def steps(self, routes: Iterable[str], shared: bool = True) -> list[Step]:
        out: list[Step] = self.shared_steps() if shared else []
        for route in routes:
            out.extend(self.route_steps(route))
        return out

    def all_names(self, routes: Iterable[str]) -> tuple[list[str], list[str]]:
        """(exchanges, queues) of these routes, for deletion."""
        exchanges, queues = [], []
        for route in routes:
            n = self.names(route)
            exchanges += [n.exchange, n.dead_letter_exchange]
            queues += [n.queue, n.dead_letter_queue]
        return exchanges, queues


def without(steps: Sequence[Step], queues: Collection[str]) -> list[Step]:
    """``steps`` less those that declare or bind one of ``queues``: the ladder queues
    whose node is down, declared later (a countdown through one of them is returned
    unroutable meanwhile; nothing else needs it)."""
    return [step for step in steps if not _touches(step, queues)] if queues else list(steps)


def _touches(step: Step, queues: Collection[str]) -> bool:
    """Whether ``step`` declares or binds one of ``queues``."""
    if isinstance(step, QueueStep):
        return step.name in queues
    return isinstance(step, BindStep) and step.queue in queues


def queues_in(steps: Iterable[Step]) -> list[str]:
    """The queues these steps declare."""
    return [step.name for step in steps if isinstance(step, QueueStep)]


# --- executors -------------------------------------------------------------------

def declare_blocking(channel: Any, steps: Sequence[Step], prefix: str = "") -> None:
    """Run steps on a ``pika.BlockingChannel``; QueueMismatchError if a queue exists
    with other arguments, QueueNodeDown if a queue's node is down (``prefix``: the
    topology's, so the mismatch message names the route)."""
    with _refusal_explained(prefix):
        _declare_blocking(channel, steps)


def declare_skipping_down(conn: Any, steps: Sequence[Step], prefix: str = "") -> \
        list[QueueNodeDown]:
    """Run steps on channels of a ``pika.BlockingConnection``, leaving out each queue
    whose node is down (with the steps that bind it) and going on on a fresh channel
    (the refusal closed the last one); the refusals met. For the shared topology: a
    classic delay ladder on a dead node must not stop a process from starting. Any
    other refusal is raised as declare_blocking raises it."""
    downs: list[QueueNodeDown] = []
    channel = conn.channel()
    for step in steps:
        if _touches(step, {down.queue for down in downs}):
            continue
        try:
            declare_blocking(channel, [step], prefix)
        except QueueNodeDown as exc:
            downs.append(exc)
            channel = conn.channel()
    if channel.is_open:
        channel.close()
    return downs


def _declare_blocking(channel: Any, steps: Sequence[Step]) -> None:
    for step in steps:
        if isinstance(step, ExchangeStep):
            channel.exchange_declare(step.name, exchange_type=step.kind, durable=True)
        elif isinstance(step, QueueStep):
            channel.queue_declare(step.name, durable=True, arguments=step.arguments or None)
        elif isinstance(step, ExchangeBindStep):
            channel.exchange_bind(step.destination, step.source, routing_key=step.routing_key)
        else:
            channel.queue_bind(step.queue, step.exchange, routing_key=step.routing_key)


def declare_async(channel: Any, remaining: list[Step], on_done: Callable[[], None]) -> None:
    """Run steps on an asynchronous pika channel, chained by callbacks; then ``on_done()``.

    The steps are taken from the front of ``remaining`` as they are sent, so after a
    refusal it holds the steps after the refused one (the publisher goes on from there
    when the refusal was a ladder queue whose node is down). A failing step closes the
    channel; the channel's close callback reports it. A channel that is closing (the
    connection is being shut down) ends the chain quietly: a declare on it would raise
    inside pika's I/O loop and abort the connection.
    """

    def next_step(_frame: Any = None) -> None:
        if not channel.is_open:
            return
        if not remaining:
            on_done()
            return
        step = remaining.pop(0)
        if isinstance(step, ExchangeStep):
            channel.exchange_declare(step.name, exchange_type=step.kind, durable=True,
                                     callback=next_step)
        elif isinstance(step, QueueStep):
            channel.queue_declare(step.name, durable=True, arguments=step.arguments or None,
                                  callback=next_step)
        elif isinstance(step, ExchangeBindStep):
            channel.exchange_bind(step.destination, step.source, routing_key=step.routing_key,
                                  callback=next_step)
        else:
            channel.queue_bind(step.queue, step.exchange, routing_key=step.routing_key,
                               callback=next_step)

    next_step()


async def declare_aio(channel: Any, steps: Sequence[Step], prefix: str = "") -> None:
    """Run steps on an ``aio_pika`` channel; QueueMismatchError and QueueNodeDown as
    declare_blocking."""
    with _refusal_explained(prefix):
        await _declare_aio(channel, steps)


async def declare_aio_skipping_down(conn: Any, steps: Sequence[Step], prefix: str = "") -> \
        list[QueueNodeDown]:
    """declare_skipping_down on an ``aio_pika`` connection."""
    downs: list[QueueNodeDown] = []
    channel = await conn.channel()
    for step in steps:
        if _touches(step, {down.queue for down in downs}):
            continue
        try:
            await declare_aio(channel, [step], prefix)
        except QueueNodeDown as exc:
            downs.append(exc)
            channel = await conn.channel()
    if not channel.is_closed:
        await channel.close()
    return downs


async def _declare_aio(channel: Any, steps: Sequence[Step]) -> None:
    import aio_pika

    for step in steps:
        if isinstance(step, ExchangeStep):
            await channel.declare_exchange(step.name, aio_pika.ExchangeType(step.kind),
                                           durable=True)
        elif isinstance(step, QueueStep):
            await channel.declare_queue(step.name, durable=True,
                                        arguments=step.arguments or None)
        elif isinstance(step, ExchangeBindStep):
            destination = await channel.get_exchange(step.destination, ensure=False)
            await destination.bind(step.source, routing_key=step.routing_key)
        else:
            queue = await channel.get_queue(step.queue, ensure=False)
            await queue.bind(step.exchange, routing_key=step.routing_key)


@contextlib.contextmanager
def _refusal_explained(prefix: str) -> Iterator[None]:
    """pika and aiormq both carry RabbitMQ's reply text; a 406 for inequivalent
    queue arguments becomes the error that says how to migrate the queue, a 404 for a
    queue whose node is down the error that names both (hutch.brokers.amqp.mismatch)."""
    try:
        yield
    except Exception as exc:
        refusal = queue_refusal(str(getattr(exc, "reply_text", None) or exc), prefix)
        if refusal is None:
            raise
        raise refusal from exc
