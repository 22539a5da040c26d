"""Throughput of hutch's RabbitMQ layer alone (no serialization, no database).

Run: ``.venv/bin/python tests/bench/amqp_raw.py [--count N]``. Prints figures only;
the topology it declares (prefix ``hutchbench.<hex>``) is deleted at the end.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
import uuid

from hutch.brokers.amqp.broker import AmqpBroker
from hutch.config import Settings
from hutch.messages import Wire

URL = "amqp://guest:guest@127.0.0.1:5672//"
BODY = b'{"args": [1, 2], "kwargs": {}, "link": [], "link_error": [], "chord": null}'


def wire(i: int) -> Wire:
    return Wire(body=BODY, content_type="application/json", content_encoding="utf-8",
                headers={"hutch": 1, "task": "bench.add", "id": str(i), "retries": 0},
                message_id=str(i))


def rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<44} {count:>7} msgs  {seconds:6.2f}s  {count / seconds:>9,.0f} msg/s")


def publish_batches(broker: AmqpBroker, route: str, count: int, size: int = 100) -> None:
    started = time.perf_counter()
    for start in range(0, count, size):
        broker.publish([(route, wire(i)) for i in range(start, min(count, start + size))])
    rate("publish, 1 thread, batches of 100", count, time.perf_counter() - started)


def publish_threads(broker: AmqpBroker, route: str, count: int, threads: int) -> None:
    per = count // threads

    def one_at_a_time(t: int) -> None:
        for i in range(per):
            broker.publish([(route, wire(t * per + i))])

    workers = [threading.Thread(target=one_at_a_time, args=(t,)) for t in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rate(f"publish, {threads} thread(s), one at a time", per * threads,
         time.perf_counter() - started)


def consume(broker: AmqpBroker, route: str, count: int, prefetch: int = 200) -> None:
    acks: queue.SimpleQueue = queue.SimpleQueue()
    done = threading.Event()

    def acker() -> None:
        for _ in range(count):
            acks.get().ack()
        done.set()

    threading.Thread(target=acker, daemon=True).start()
    handle = broker.consume([route], prefetch, acks.put)
    started = time.perf_counter()
    handle.start()
    done.wait(120)
    elapsed = time.perf_counter() - started
    handle.stop()
    rate(f"consume, prefetch {prefetch}, acks from another thread", count, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    settings = Settings()
    settings.topology_prefix = f"hutchbench.{uuid.uuid4().hex[:8]}"
    broker = AmqpBroker(URL, settings)
    route = "bench"
    try:
        broker.declare([route])
        publish_batches(broker, route, args.count)
        publish_threads(broker, route, max(2000, args.count // 5), 1)
        publish_threads(broker, route, args.count, 8)
        total = broker.queue_depths([route])[route][0]
        consume(broker, route, total)
    finally:
        broker.delete_topology([route], shared=True)
        broker.close()


if __name__ == "__main__":
    main()
