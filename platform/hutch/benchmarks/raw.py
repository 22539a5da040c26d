"""The yardsticks: raw pika with no hutch code in it.

``raw_pipeline``: a confirmed publisher (SelectConnection, a window of outstanding
confirms) and a manual-ack consumer (BlockingConnection, prefetch 200) run at the same
time in two threads; the figure is messages fully through (published, confirmed,
consumed, acked) per second.

``confirm_each``: one thread publishing and waiting for each confirm, the ceiling of a
``delay()`` loop, alone or with a consumer process acking each message beside it (as a
worker on the same host would).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import threading
import time

import pika
import pika.channel
import pika.frame

from ..brokers.amqp.params import pika_parameters
from ..config import Settings

WINDOW = 1000
PREFETCH = 200


def _params(url: str) -> pika.ConnectionParameters:
    return pika_parameters(url, Settings(), "hutch bench raw")


class _WindowedPublisher:
    def __init__(self, url: str, exchange: str, routing_key: str, count: int) -> None:
        self.url, self.exchange, self.key, self.count = url, exchange, routing_key, count
        self.sent = self.confirmed = 0
        self.done = threading.Event()

    def run(self) -> None:
        self.conn = pika.SelectConnection(_params(self.url), on_open_callback=self._opened,
                                          on_close_callback=self._closed)
        self.conn.ioloop.start()

    def _closed(self, conn: pika.SelectConnection, _reason: BaseException) -> None:
        """Stop the loop once closed, so ``raw_pipeline`` does not wait out its join."""
        conn.ioloop.stop()

    def _opened(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._channel)

    def _channel(self, ch: pika.channel.Channel) -> None:
        self.ch = ch
        ch.confirm_delivery(self._on_confirm)
        self._fill()

    def _fill(self) -> None:
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        while self.sent < self.count and self.sent - self.confirmed < WINDOW:
            self.ch.basic_publish(self.exchange, self.key, b'{"args":[],"kwargs":{}}', props)
            self.sent += 1

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked_to = method.delivery_tag
        self.confirmed = acked_to if method.multiple else max(self.confirmed, acked_to)
        if self.confirmed >= self.count:
            self.done.set()
            self.conn.close()
            return
        self._fill()


def raw_pipeline(url: str, queue: str, count: int) -> float:
    """Messages/s through publish+confirm and consume+ack, both running at once."""
    setup = pika.BlockingConnection(_params(url))
    ch = setup.channel()
    ch.queue_declare(queue, durable=True)
    ch.queue_purge(queue)
    setup.close()
    publisher = _WindowedPublisher(url, "", queue, count)
    consumed = 0
    started = time.perf_counter()
    thread = threading.Thread(target=publisher.run, daemon=True)
    thread.start()
    conn = pika.BlockingConnection(_params(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=PREFETCH)
    for method, _props, _body in ch.consume(queue, inactivity_timeout=30):
        if method is None:
            break
        consumed += 1
        ch.basic_ack(method.delivery_tag)
        if consumed >= count:
            break
    elapsed = time.perf_counter() - started
    ch.cancel()
    ch.queue_delete(queue)
    conn.close()
    thread.join(10)
    return consumed / elapsed


def confirm_each(url: str, queue: str, count: int, with_consumer: bool) -> float:
    """Publishes/s of one thread that waits for each confirm (BlockingConnection)."""
    conn = pika.BlockingConnection(_params(url))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.queue_purge(queue)
    ch.confirm_delivery()
    consumer = None
    if with_consumer:
        spawn = multiprocessing.get_context("spawn")  # this process runs threads: no fork
        ready = spawn.Event()
        consumer = spawn.Process(target=_ack_each, args=(url, queue, count, ready), daemon=True)
        consumer.start()
        ready.wait(30)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    started = time.perf_counter()
    for _ in range(count):
        ch.basic_publish("", queue, b'{"args":[],"kwargs":{}}', props)
    elapsed = time.perf_counter() - started
    if consumer is not None:
        consumer.join(30)
    ch.queue_delete(queue)
    conn.close()
    return count / elapsed


def _ack_each(url: str, queue: str, count: int,
              ready: multiprocessing.synchronize.Event) -> None:
    """The consumer process of ``confirm_each``: acks each message as it comes."""
    conn = pika.BlockingConnection(_params(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=PREFETCH)
    ready.set()
    consumed = 0
    for method, _props, _body in ch.consume(queue, inactivity_timeout=30):
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)
        consumed += 1
        if consumed >= count:
            break
    conn.close()
