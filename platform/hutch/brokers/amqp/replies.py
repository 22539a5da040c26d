"""Reply inboxes on RabbitMQ: where the answers to a control request arrive.

An inbox is a server-named, exclusive, auto-delete queue on a connection of its
own, consumed with automatic acknowledgement: it lives exactly as long as the
requester holds it, and a reply sent after the requester gave up is dropped by
the default exchange (no queue of that name any more). Replies are published
non-persistent to the default exchange with the inbox's name as routing key.

Not RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to``): it requires the
request to be published on the very channel that consumes the replies, and
hutch broadcasts control requests over its own short-lived confirmed channel
(AmqpBroker.broadcast); a queue of the requester's keeps the two apart at the
cost of one declare per request, which an operator's command can afford.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pika
import pika.exceptions

from ...errors import BrokerUnavailable
from .blocking import close_quietly
from .failures import connect_error
from .nodes import Nodes


class AmqpInbox:
    """Implements ``hutch.brokers.base.Inbox``; used by one thread."""

    def __init__(self, nodes: Nodes) -> None:
        self._received: deque[bytes] = deque()
        try:
            self._conn = nodes.first_answering(pika.BlockingConnection)
            channel = self._conn.channel()
            self.name: str = channel.queue_declare(
                "", exclusive=True, auto_delete=True).method.queue
            channel.basic_consume(self.name, self._deliver, auto_ack=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise connect_error(exc, nodes.every, "open a reply inbox at") from exc

    def _deliver(self, _channel: Any, _method: Any, _props: Any, body: bytes) -> None:
        self._received.append(body)

    def get(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._received:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self._conn.process_data_events(time_limit=min(left, 0.2))
            except (pika.exceptions.AMQPError, OSError) as exc:
                raise BrokerUnavailable(f"reply inbox lost: {type(exc).__name__}: {exc}") from exc
        return self._received.popleft()

    def close(self) -> None:
        close_quietly(self._conn)
