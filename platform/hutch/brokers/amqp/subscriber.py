"""Receiving broadcasts (``P.notices`` completion notices, ``P.control`` commands) in a thread.

Each subscriber has its own BlockingConnection and an exclusive, auto-delete,
server-named queue bound to the exchange, once per routing key it takes (the notices'
exchange routes by key; a fanout exchange ignores it). The queue is bound before
:func:`subscribe` returns, so a caller may subscribe, read the database, then
wait for a notice without a gap in between. Notices are best effort: those
published while the subscriber is reconnecting are lost, so callers also poll.
Reconnects follow backoff.py: short, capped delays, reset once bound again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pika

from ...errors import BrokerAccessRefused, BrokerUnavailable
from ...logs import get_logger
from .backoff import REFUSED_RETRY, Backoff
from .blocking import close_quietly, wake
from .failures import channel_closed, connect_error
from .nodes import Nodes
from .topology import Topology, declare_blocking

log = get_logger("hutch.amqp")

POLL_SECONDS = 0.2


class BroadcastSubscriber:
    """Implements ``hutch.brokers.base.SubscriptionHandle``."""

    def __init__(self, nodes: Nodes, topology: Topology, on_message: Callable[[bytes], None],
                 exchange: str | None = None, keys: Sequence[str] = ("",)) -> None:
        """``nodes``: the broker nodes it connects to, moving to the next one when a
        connect fails or the connection drops (hutch.brokers.amqp.nodes); ``keys``: the
        routing keys its queue is bound with, again after each reconnect."""
        self._nodes, self._topology = nodes, topology
        self._exchange = exchange or topology.notices_exchange
        self._keys = tuple(keys)
        self._on_message = on_message
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening: pika.BlockingConnection | None = None
        """The connection the thread waits on now: close() wakes it."""

    def start(self) -> BroadcastSubscriber:
        """Connect and bind (raising BrokerUnavailable on failure), then listen in a thread."""
        conn, channel = self._connect()
        self._thread = threading.Thread(target=self._run, args=(conn, channel),
                                        name="hutch-amqp-subscriber", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._closing.set()
        wake(self._listening)  # not at the end of its POLL_SECONDS wait
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _connect(self) -> tuple[pika.BlockingConnection, Any]:
        """A connection and its channel, consuming from a new queue bound to the exchange."""
        try:
            conn = self._nodes.first_answering(pika.BlockingConnection)
            channel = conn.channel()
            declare_blocking(channel, self._topology.fanout_steps())
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            for key in self._keys:
                channel.queue_bind(queue, self._exchange, key)
            channel.basic_consume(queue, self._deliver, auto_ack=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise connect_error(exc, self._nodes.every,
                                f"subscribe to {self._exchange} at") from exc
        return conn, channel

    def _deliver(self, _channel: Any, _method: Any, _props: Any, body: bytes) -> None:
        try:
            self._on_message(body)
        except Exception:
            log.exception("event callback failed")

    def _run(self, conn: pika.BlockingConnection, channel: Any) -> None:
        while not self._closing.is_set():
            try:
                self._listen(conn, channel)
            except Exception as exc:  # noqa: BLE001 - keep listening whatever broke
                close_quietly(conn)
                self._nodes.failed()
                restored = self._reconnect(f"{type(exc).__name__}: {exc}")
                if restored is None:  # closing
                    return
                conn, channel = restored
        close_quietly(conn)

    @property
    def _masked_url(self) -> str:
        return self._nodes.masked

    def _listen(self, conn: pika.BlockingConnection, channel: Any) -> None:
        self._listening = conn
        while not self._closing.is_set():
            conn.process_data_events(time_limit=POLL_SECONDS)
            if not channel.is_open and not self._closing.is_set():
                raise channel_closed(channel, "the subscription's")

    def _reconnect(self, error: str) -> tuple[pika.BlockingConnection, Any] | None:
        """Connect and bind a new queue, retrying after short capped delays; None once
        closing. Each outage starts its own backoff, logged once as lost and once as
        restored (failed attempts in between at debug level); a refused login is logged
        once as an error and retried every REFUSED_RETRY seconds."""
        log.warning("events connection lost; reconnecting", url=self._masked_url,
                    exchange=self._exchange, error=error)
        backoff, refused_logged, delay = Backoff(), False, 0.0
        while not self._closing.wait(delay or backoff.next_delay()):
            try:
                connected = self._connect()
            except BrokerAccessRefused as exc:
                if not refused_logged:
                    log.error("broker refuses the events connection; retrying",
                              error=str(exc), retry_every=REFUSED_RETRY)
                    refused_logged = True
                delay = REFUSED_RETRY
                continue
            except BrokerUnavailable as exc:
                log.debug("events reconnect failed", error=str(exc))
                delay = 0.0
                continue
            log.info("events connection restored", url=self._masked_url,
                     exchange=self._exchange, attempts=backoff.failures)
            return connected
        return None
