"""memory:// admin edge a RabbitMQ contract test cannot share: settling a delivery whose
route was deleted (and declared again) meanwhile leaves the new route's counts alone."""

from __future__ import annotations

import queue
import uuid

from hutch.brokers.base import QueueStats
from hutch.brokers.memory import MemoryBroker
from hutch.messages import Wire


def test_a_delivery_settled_after_its_route_was_deleted_touches_nothing():
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    got: queue.Queue = queue.Queue()
    broker.publish([("r", Wire(body=b"1", content_type="application/json",
                               content_encoding="utf-8", headers={}, message_id="m1"))])
    handle = broker.consume(["r"], 1, got.put)
    handle.start()
    try:
        delivery = got.get(timeout=10)
        broker.delete_topology(["r"])
        broker.declare(["r"])
        delivery.reject()  # would dead-letter into, and uncount from, the new route
        assert broker.queue_stats("r") == QueueStats(ready=0, unacked=0, consumers=0)
        assert broker.dead_letter_count("r") == 0
    finally:
        handle.stop()
