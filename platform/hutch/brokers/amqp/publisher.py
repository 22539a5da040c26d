"""A thread-safe publisher with publisher confirms and a shared window of outstanding confirms.

Waiting for each confirm before the next publish caps a client near 1,900
messages/s; keeping many confirms outstanding reaches ~20,000/s. So one pika
``SelectConnection`` runs in a daemon I/O thread, every caller hands its batch
over with ``add_callback_threadsafe`` and waits on its own event, and all
callers' messages share the one channel's window: eight threads publishing one
message at a time pipeline just like one thread publishing a batch.

Guarantees: messages are persistent (delivery_mode 2) and published with
``mandatory=True``; ``publish`` returns only when every message is acked. A
``basic.return`` (it arrives before the ack) is an UnroutableError, a nack or a
missing confirm a PublishError, a failed or dropped connection
BrokerUnavailable. After a drop the next publish reconnects (lazily) and
redeclares topology.

On a cluster, a classic queue whose node is down cannot be declared (404). For a
route's queue that fails the publish with QueueNodeDown (a BrokerUnavailable: the
caller's retry policy retries it); a queue of the delay ladder is left out instead
(said once, naming the queue and the node) and the rest of the shared topology
declared, so a producer starts and sends its immediate tasks while a classic
ladder's node is down; a countdown through the missing queue is returned
unroutable until the node is back.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop

from ...errors import (
    BrokerError,
    BrokerUnavailable,
    PublishError,
    QueueNodeDown,
    UnroutableError,
)
from ...logs import get_logger
from ...messages import Wire
from .. import base
from ..base import Confirmation
from .failures import connect_error
from .floats import allow_float_headers
from .mismatch import queue_refusal, tell_down, tell_up
from .nodes import Nodes
from .topology import SHARED, Step, Topology, declare_async, queues_in, without

log = get_logger("hutch.amqp")

Routed = tuple[str, Wire]


def properties_for(wire: Wire, persistent: bool = True) -> pika.BasicProperties:
    """AMQP properties of a task message (the inverse of ``consumer.wire_from``)."""
    return pika.BasicProperties(
        delivery_mode=2 if persistent else 1,
        content_type=wire.content_type,
        content_encoding=wire.content_encoding,
        headers=wire.headers,
        message_id=wire.message_id,
        priority=wire.priority,
        expiration=wire.expiration,
        timestamp=int(time.time()),
        app_id="hutch",
    )


class _Batch(Confirmation):
    """One ``publish()`` call: its messages; settled once every one is confirmed or
    one fails."""

    __slots__ = ("dead", "messages", "remaining")

    def __init__(self, messages: Sequence[Routed], remaining: int = 0,
                 dead: bool = False) -> None:
        super().__init__()
        self.messages = messages
        self.remaining = remaining
        self.dead = dead
        """Into the routes' dead-letter queues instead of the routes."""

    def confirmed_one(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.settle()


@dataclass
class _Outstanding:
    batch: _Batch | None  # None: an event notice nobody waits for
    message_id: str


class Publisher:
    """Publishes from any thread over one confirm channel; see the module docstring."""

    def __init__(self, nodes: Nodes, topology: Topology, confirm_timeout: float = 30.0) -> None:
        """``nodes``: the broker nodes it connects to, moving to the next one when a
        connect fails or the connection drops (hutch.brokers.amqp.nodes)."""
        allow_float_headers()  # hutch headers carry floats (time_limit)
        self._nodes = nodes
        self._untried = 0
        """Nodes this round of connecting has yet to try (I/O thread only)."""
        self._topology = topology
        self._confirm_timeout = confirm_timeout
        self._ioloop = IOLoop()
        self._closed = False
        self._inbox: list[Callable[[], None]] = []
        self._inbox_lock = threading.Lock()
        self._wake_pending = False
        self._thread = threading.Thread(target=self._run_loop, name="hutch-amqp-publisher",
                                        daemon=True)
        # Everything below is touched only in the I/O thread.
        self._conn: pika.SelectConnection | None = None
        self._channel: Any = None
        self._waiting: list[_Work] = []  # work queued until the channel is open
        self._declared: set[str] = set()
        self._declaring: dict[str, list[_Work]] = {}
        self._steps_left: dict[str, list[Step]] = {}  # route -> steps not yet sent
        self._ladder = frozenset(topology.ladder_queues(topology.ladder_type))
        self._left_out: set[str] = set()  # ladder queues whose node is down (a connection's)
        self._keep_declared = False  # the next channel keeps _declared (see _channel_ready)
        self._next_tag = 1
        self._outstanding: OrderedDict[int, _Outstanding] = OrderedDict()
        self._returned: dict[str, str] = {}  # message_id -> reason
        self._probed: set[str] = set()  # exchanges of mandatory broadcasts
        self._unheard: dict[str, float] = {}  # exchange -> when one came back (monotonic)
        self._thread.start()

    # --- caller side ---------------------------------------------------------------

    def publish(self, messages: Sequence[Routed], timeout: float | None = None,
                dead: bool = False) -> None:
        """Publish all and wait for every confirm (see the module docstring for errors);
        ``dead``: into each route's dead-letter queue (through its ``.dlx`` exchange)."""
        if not messages:
            return
        batch = self.publish_later(messages, dead=dead)
        limit = self._confirm_timeout if timeout is None else timeout
        if not batch.wait(limit):
            self._call(lambda: batch.settle(PublishError("timed out")))
            raise PublishError(f"{len(messages)} message(s) not confirmed within {limit:g}s "
                               f"by {self._masked_url}")
        if batch.error is not None:
            raise batch.error

    def publish_later(self, messages: Sequence[Routed], dead: bool = False) -> _Batch:
        """Hand the messages to the I/O thread and return at once; the batch settles
        when every one is confirmed or one fails (nothing times it out: a caller that
        waits chooses how long)."""
        self._check_caller()
        batch = _Batch(list(messages), remaining=len(messages), dead=dead)
        if messages:
            self._call(lambda: self._submit(batch))
        else:
            batch.settle()
        return batch

    def declare(self, routes: Sequence[str], timeout: float | None = None) -> None:
        """Declare routes' topology on the publisher's channel (cached per connection)."""
        self._check_caller()
        batch = _Batch([], remaining=1)
        self._call(lambda: self._with_routes(routes, batch, batch.confirmed_one))
        limit = self._confirm_timeout if timeout is None else timeout
        if not batch.wait(limit):
            raise PublishError(f"declaring {list(routes)} took longer than {limit:g}s")
        if batch.error is not None:
            raise batch.error

    def publish_fanout(self, exchange: str, body: bytes, key: str = "",
                       mandatory: bool = False) -> None:
        """Fire-and-forget broadcast on a shared exchange (non-persistent, not waited
        for): the completion notices (under ``key``), the task events. ``mandatory``:
        RabbitMQ returns it when no queue is bound, and :meth:`heard` says so."""
        if not self._closed:
            self._call(lambda: self._submit_fanout(exchange, body, key, mandatory))

    def heard(self, exchange: str) -> bool:
        """False for UNHEARD_PAUSE seconds after RabbitMQ returned a mandatory broadcast
        on ``exchange`` (no subscriber's queue was bound to it)."""
        return base.pause_over(self._unheard.get(exchange))

    def publish_reply(self, queue: str, body: bytes) -> None:
        """Fire-and-forget, non-persistent, to ``queue`` through the default exchange
        (a reply to a control request; dropped if the queue is gone)."""
        if not self._closed:
            self._call(lambda: self._submit_reply(queue, body))

    def forget_declared(self) -> None:
        """The topology was deleted: declare again before the next publish (runs in the
        I/O thread before any publish handed over after this call)."""
        if not self._closed:
            self._call(self._declared.clear)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._ioloop.add_callback_threadsafe(self._shutdown)
        except Exception:  # noqa: BLE001 - the loop is already gone
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def node(self) -> str:
        """``host:port`` of the node connected to, or to be tried next."""
        address = self._nodes.current
        host = f"[{address.host}]" if ":" in address.host else address.host  # IPv6
        return f"{host}:{address.port}"

    @property
    def _masked_url(self) -> str:
        return self._nodes.masked

    def _call(self, fn: Callable[[], None]) -> None:
        """Hand ``fn`` to the I/O thread; one wake-up serves everything queued meanwhile,
        so many threads publishing at once cost the loop one callback, not one each."""
        if self._closed:
            raise BrokerUnavailable("publisher is closed")
        with self._inbox_lock:
            self._inbox.append(fn)
            if self._wake_pending:
                return
            self._wake_pending = True
        self._ioloop.add_callback_threadsafe(self._drain_inbox)

    def _drain_inbox(self) -> None:
        with self._inbox_lock:
            work, self._inbox = self._inbox, []
            self._wake_pending = False
        for fn in work:
            fn()

    def _check_caller(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("publish() called from the publisher's own I/O thread")

    # --- I/O thread: connection lifecycle ----------------------------------------------

    def _run_loop(self) -> None:
        try:
            self._ioloop.start()
        except Exception:  # pragma: no cover - the loop should never raise
            log.exception("publisher I/O loop crashed", url=self._masked_url)
            self._closed = True
        finally:
            self._fail_all(BrokerUnavailable("publisher closed"))

    def _when_open(self, work: _Work) -> None:
        """Run ``work`` now if the channel is open, else once it is (connecting if needed)."""
        if self._channel is not None and self._channel.is_open:
            work()
            return
        self._waiting.append(work)
        if self._conn is None:
            self._untried = len(self._nodes)
            self._connect()

    def _connect(self) -> None:
        log.debug("publisher connecting", url=self._masked_url)
        self._conn = pika.SelectConnection(
            self._nodes.params(), on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed, custom_ioloop=self._ioloop)

    def _on_open(self, conn: pika.SelectConnection) -> None:
        if self._conn is not None and conn is self._conn:
            self._left_out.clear()  # a new connection tries every queue again
            conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                 callback=lambda _frame: self._channel_ready(channel))

    def _channel_ready(self, channel: Any) -> None:
        self._channel, self._next_tag = channel, 1
        if not self._keep_declared:  # else: a declare was refused, nothing was deleted
            self._declared.clear()
        self._keep_declared = False
        log.debug("publisher channel open", url=self._masked_url)
        waiting, self._waiting = self._waiting, []
        for work in waiting:
            work()

    def _on_open_error(self, conn: pika.SelectConnection, error: BaseException) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        exc = connect_error(error, self._masked_url)
        log.debug("publisher cannot connect", url=self._masked_url, error=str(exc))
        self._nodes.failed()
        self._untried -= 1
        if self._untried > 0 and not self._closed:
            self._connect()  # the next node, with the work still waiting
            return
        self._fail_all(connect_error(error, self._nodes.every) if len(self._nodes) > 1 else exc)

    def _on_closed(self, conn: pika.SelectConnection, reason: BaseException) -> None:
        if self._closed:
            self._ioloop.stop()
        if conn is not self._conn:
            return
        self._conn, self._channel = None, None
        self._steps_left.clear()
        self._keep_declared = False
        lost = self._masked_url
        if not self._closed:
            log.warning("publisher connection lost", url=lost, reason=_describe(reason))
            self._nodes.failed()
        self._fail_all(BrokerUnavailable(f"connection to {lost} lost: {_describe(reason)}"))

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        """A refused declare or publish closes the channel: fail what was on it, reopen."""
        if self._channel is not None and channel is not self._channel:
            return
        self._channel = None
        conn = self._conn
        if not isinstance(reason, pika.exceptions.ChannelClosedByBroker) or conn is None \
                or not conn.is_open:
            return  # the connection is going; _on_closed reports BrokerUnavailable
        exc = queue_refusal(reason.reply_text, self._topology.prefix) or BrokerError(
            f"channel closed by broker: {_describe(reason)}")
        self._keep_declared = isinstance(exc, QueueNodeDown)  # the rest stays declared
        if isinstance(exc, QueueNodeDown) and self._leave_out(exc):
            self._fail_outstanding(BrokerUnavailable(f"channel closed: {exc}"))
        else:
            if isinstance(exc, QueueNodeDown):
                tell_down(exc, "publishes to it fail (retried by the caller's retry policy)",
                          url=self._masked_url)
            else:
                log.warning("publisher channel closed by broker", url=self._masked_url,
                            reason=_describe(reason))
            self._fail_outstanding(exc)
            self._fail_declaring(exc)
            self._steps_left.clear()
        if not self._closed:
            conn.channel(on_open_callback=self._on_channel)

    def _leave_out(self, down: QueueNodeDown) -> bool:
        """A ladder queue refused while declaring the shared topology: go on without it
        on the next channel, from the step after it, and run again what waited for any
        declare (the closed channel ended them all). False for any other queue."""
        left = self._steps_left.get(SHARED)
        if left is None or down.queue not in self._ladder:
            return False
        self._left_out.add(down.queue)
        tell_down(down, "publishing without the delay queues on that node; countdowns that "
                  "need one are returned unroutable until it is back",
                  key=self._topology.ladder_key, url=self._masked_url)
        self._steps_left = {SHARED: without(left, self._left_out)}
        declaring, self._declaring = self._declaring, {}
        for works in declaring.values():
            self._waiting.extend(works)
        return True

    def _shutdown(self) -> None:
        self._fail_all(BrokerUnavailable("publisher closed"))
        conn = self._conn
        if conn is not None and not conn.is_closed and not conn.is_closing:
            conn.close()  # _on_closed stops the loop once the close handshake is done
            self._ioloop.call_later(2.0, self._ioloop.stop)
        else:
            self._ioloop.stop()

    def _fail_all(self, exc: BaseException) -> None:
        self._fail_outstanding(exc)
        self._fail_declaring(exc)
        waiting, self._waiting = self._waiting, []
        for work in waiting:
            work.fail(exc)

    def _fail_declaring(self, exc: BaseException) -> None:
        declaring, self._declaring = self._declaring, {}
        for works in declaring.values():
            for work in works:
                work.fail(exc)

    def _fail_outstanding(self, exc: BaseException) -> None:
        outstanding, self._outstanding = self._outstanding, OrderedDict()
        self._returned.clear()
        for entry in outstanding.values():
            if entry.batch is not None:
                entry.batch.settle(exc)

    # --- I/O thread: publishing ---------------------------------------------------------

    def _submit(self, batch: _Batch) -> None:
        routes = [SHARED, *sorted({route for route, _ in batch.messages})]
        channel = self._channel
        if channel is not None and channel.is_open and self._declared.issuperset(routes):
            self._publish_batch(batch)  # the common case: no queuing, no declaring
            return
        self._with_routes(routes, batch, lambda: self._publish_batch(batch))

    def _with_routes(self, routes: Sequence[str], batch: _Batch,
                     then: Callable[[], None]) -> None:
        """Run ``then`` once the channel is open and these routes (and the shared
        topology every route relies on, the delay ladder included) are declared on it."""
        needed = [SHARED, *(r for r in routes if r != SHARED)]
        work = _Work(lambda: self._declare_then(needed, batch, then), batch)
        self._when_open(work)

    def _declare_then(self, routes: list[str], batch: _Batch, then: Callable[[], None]) -> None:
        missing = [r for r in routes if r not in self._declared]
        if batch.done():
            return
        if not missing:
            then()
            return
        route = missing[0]
        retry = _Work(lambda: self._declare_then(routes, batch, then), batch)
        if route in self._declaring:
            self._declaring[route].append(retry)
            return
        self._declaring[route] = [retry]
        steps = self._steps_left.get(route) or self._topology.steps_for(route, self._left_out)
        self._steps_left[route] = steps
        declare_async(self._channel, steps, lambda: self._route_declared(route))

    def _route_declared(self, route: str) -> None:
        self._steps_left.pop(route, None)
        if route != SHARED:
            tell_up(queues_in(self._topology.route_steps(route)))
        elif not self._left_out:
            tell_up([self._topology.ladder_key])
        self._declared.add(route)
        for work in self._declaring.pop(route, []):
            work()

    def _publish_batch(self, batch: _Batch) -> None:
        channel = self._channel
        for route, wire in batch.messages:
            exchange, routing_key = (self._topology.dead_letter_target(route) if batch.dead
                                     else self._topology.target(route, wire))
            self._outstanding[self._next_tag] = _Outstanding(batch, wire.message_id)
            try:
                channel.basic_publish(exchange, routing_key, wire.body, properties_for(wire),
                                      mandatory=True)
            except (pika.exceptions.UnsupportedAMQPFieldException, TypeError, ValueError,
                    struct.error) as exc:
                # pika marshals before writing: nothing was sent, the channel is intact
                del self._outstanding[self._next_tag]
                batch.settle(PublishError(f"cannot encode message {wire.message_id!r} "
                                          f"for AMQP: {type(exc).__name__}: {exc}"))
                return
            self._next_tag += 1

    def _submit_fanout(self, exchange: str, body: bytes, key: str,
                       mandatory: bool = False) -> None:
        """Publish once the shared topology (the fan-out exchanges) is declared on this
        channel, in order with the task publishes queued behind it: a publish to an
        exchange not declared yet would close the channel, failing those too (a
        client's first task-sent on a new topology goes out ahead of its task)."""
        def send() -> None:
            self._outstanding[self._next_tag] = _Outstanding(None, "")
            self._next_tag += 1
            self._channel.basic_publish(exchange, key, body,
                                        pika.BasicProperties(delivery_mode=1, app_id="hutch"),
                                        mandatory=mandatory)
        if mandatory:
            self._probed.add(exchange)
        channel = self._channel
        if channel is not None and channel.is_open and SHARED in self._declared:
            send()
            return
        self._with_routes([SHARED], _Batch([]), send)

    def _submit_reply(self, queue: str, body: bytes) -> None:
        """Once the channel is open (the default exchange needs no declaring); a reply
        to a queue gone is dropped by RabbitMQ (not mandatory)."""
        def send() -> None:
            self._outstanding[self._next_tag] = _Outstanding(None, "")
            self._next_tag += 1
            self._channel.basic_publish("", queue, body, pika.BasicProperties(
                delivery_mode=1, app_id="hutch", content_type="application/json"))
        channel = self._channel
        if channel is not None and channel.is_open:
            send()
            return
        self._with_routes([], _Batch([]), send)

    def _on_return(self, _channel: Any, method: Any, props: Any, _body: bytes) -> None:
        if not props.message_id and method.exchange in self._probed:
            self._unheard[method.exchange] = time.monotonic()  # a broadcast nobody got
            return
        self._returned[props.message_id or ""] = (
            f"{method.reply_code} {method.reply_text} (exchange {method.exchange!r}, "
            f"routing key {method.routing_key!r})")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        nack = isinstance(method, pika.spec.Basic.Nack)
        for tag in self._tags_confirmed(method.delivery_tag, method.multiple):
            entry = self._outstanding.pop(tag)
            self._settle(entry, nack)

    def _tags_confirmed(self, tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [tag] if tag in self._outstanding else []
        tags = []
        for t in self._outstanding:
            if t > tag:
                break
            tags.append(t)
        return tags

    def _settle(self, entry: _Outstanding, nack: bool) -> None:
        reason = self._returned.pop(entry.message_id, None) if self._returned else None
        batch = entry.batch
        if batch is None:
            return
        if nack:
            batch.settle(PublishError(f"broker nacked message {entry.message_id!r}"))
        elif reason is not None:
            batch.settle(UnroutableError(f"message {entry.message_id!r} is unroutable: {reason}"))
        else:
            batch.confirmed_one()


class _Work:
    """Deferred I/O-thread work that knows which batch to fail if it can never run."""

    def __init__(self, fn: Callable[[], None], batch: _Batch | None) -> None:
        self._fn, self._batch = fn, batch

    def __call__(self) -> None:
        self._fn()

    def fail(self, exc: BaseException) -> None:
        if self._batch is not None:
            self._batch.settle(exc)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text
