"""AmqpBroker against the real RabbitMQ: topology, confirms, consuming, events, aio-pika."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import threading
import time
import uuid

import aiormq.exceptions
import pika
import pytest

from hutch.brokers import base
from hutch.brokers.amqp.aio import AsyncAmqpPublisher
from hutch.brokers.amqp.broker import AmqpBroker
from hutch.brokers.amqp.params import parse_url, pika_parameters
from hutch.brokers.amqp.subscriber import BroadcastSubscriber
from hutch.brokers.base import EVERY_KEY, NOTICE_EVERYONE, NOTICE_UNADDRESSED, TASK_EVENTS
from hutch.config import Settings
from hutch.errors import BrokerUnavailable, ConfigurationError, UnroutableError
from hutch.messages import Wire
from support.waiting import eventually

pytestmark = pytest.mark.rabbitmq


def wire(i: int = 0, **changes) -> Wire:
    fields = dict(body=f'{{"n": {i}}}'.encode(), content_type="application/json",
                  content_encoding="utf-8", headers={"task": "t.add", "id": f"id-{i}"},
                  message_id=f"id-{i}-{uuid.uuid4().hex[:6]}")
    fields.update(changes)
    return Wire(**fields)


class Collector:
    """on_delivery that queues deliveries, optionally acking them from another thread."""

    def __init__(self, delay: float = 0.0) -> None:
        self.deliveries: queue.Queue = queue.Queue()
        self.count = 0
        self.delay = delay

    def __call__(self, delivery) -> None:
        self.count += 1
        self.deliveries.put(delivery)
        if self.delay:
            time.sleep(self.delay)

    def take(self, n: int, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        return [self.deliveries.get(timeout=max(0.01, deadline - time.monotonic()))
                for _ in range(n)]


def consume(broker: AmqpBroker, routes, prefetch: int = 50, collector: Collector | None = None):
    collector = collector or Collector()
    handle = broker.consume(routes, prefetch, collector)
    handle.start()
    return handle, collector


def wait_for(predicate, timeout: float = 10.0) -> None:
    assert eventually(predicate, timeout), "condition not met in time"


def rabbitmqctl(*args: str) -> list[list[str]]:
    headers = ["--no-table-headers"] if args[0].startswith("list_") else []
    out = subprocess.run(["rabbitmqctl", "-q", *args, *headers], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def raw_channel(broker: AmqpBroker):
    conn = pika.BlockingConnection(pika_parameters(broker.url, broker.settings, "test"))
    return conn, conn.channel()


# --- params ---------------------------------------------------------------------------

@pytest.mark.parametrize("url, vhost", [
    ("amqp://guest:guest@localhost:5672//", "/"),
    ("amqp://guest:guest@localhost:5672/", "/"),
    ("amqp://guest:guest@localhost:5672", "/"),
    ("amqp://guest:guest@localhost:5672/%2F", "/"),
    ("amqp://u:p@h/prod", "prod"),
    ("amqp://u:p@h/a%2Fb", "a/b"),
])
def test_url_vhosts(url, vhost):
    assert parse_url(url).vhost == vhost


def test_bad_url_masks_password():
    with pytest.raises(ConfigurationError) as info:
        parse_url("amqp://guest:s3cret@host:notaport//")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    assert "s3cret" not in repr(parse_url("amqp://guest:s3cret@host//"))


# --- topology -------------------------------------------------------------------------

def test_a_broadcast_first_on_a_new_topology_leaves_the_publishes_behind_it_intact(broker):
    """A client's first task-sent goes out ahead of its task on a fresh publisher: the
    fan-out exchange must be declared before it is published to, or the channel closes
    (404) and the task's publish fails with it."""
    assert broker.broadcast(TASK_EVENTS, b'{"type": "task-sent"}') is True
    broker.publish([("celery", wire(1))])
    assert broker.queue_stats("celery").ready == 1
    got = queue.Queue()
    sub = broker.subscribe(TASK_EVENTS, got.put)
    try:
        broker.broadcast(TASK_EVENTS, b'{"type": "task-received"}')
        assert got.get(timeout=10) == b'{"type": "task-received"}'
    finally:
        sub.close()


def test_only_a_probing_broadcast_tells_the_publisher_that_nobody_got_it(broker, monkeypatch):
    """A worker's event batches are not mandatory (a return would carry each back for
    nothing); a client's task-sent probes, and heard() reads its return."""
    monkeypatch.setattr(base, "UNHEARD_PAUSE", 600.0)
    broker.broadcast(TASK_EVENTS, b"unprobed")  # nobody is bound
    broker.publish([("celery", wire(1))])  # its confirm comes after any return
    assert broker.heard(TASK_EVENTS)
    broker.broadcast(TASK_EVENTS, b"probe", probe=True)
    broker.publish([("celery", wire(2))])
    assert not broker.heard(TASK_EVENTS)


def test_topology_is_declared_idempotently(broker, topology_prefix):
    p = topology_prefix
    broker.declare(["celery", "priority.high"])
    broker.declare(["celery", "priority.high"])
    broker.declare_blocking(["celery"])
    queues = {row[0]: row[1:] for row in rabbitmqctl("list_queues", "name", "durable",
                                                     "arguments") if row[0].startswith(p)}
    ladder = {name: queues.pop(name) for name in list(queues) if name.startswith(f"{p}.delay.")}
    assert len(ladder) == 71  # 7 digit values on each of 10 levels, 1 on the highest
    assert {f"{p}.delay.{ms}ms" for ms in range(125, 1000, 125)} < set(ladder)
    assert {f"{p}.delay.{s}s" for s in (1, 7, 8, 56, 64, 2**27)} < set(ladder)
    assert '"x-message-ttl",125}' in ladder[f"{p}.delay.125ms"][1]
    assert f"{p}.delay.deliver" in ladder[f"{p}.delay.875ms"][1]
    assert f"{p}.delay.level0" in ladder[f"{p}.delay.7s"][1]
    assert str(2**27 * 1000) in ladder[f"{p}.delay.{2**27}s"][1]
    assert set(queues) == {f"{p}.celery", f"{p}.celery.dead", f"{p}.priority.high",
                           f"{p}.priority.high.dead"}
    assert queues[f"{p}.celery"][0] == "true"
    assert f"{p}.celery.dlx" in queues[f"{p}.celery"][1]
    assert "x-dead-letter-routing-key" in queues[f"{p}.celery"][1]
    exchanges = {row[0]: row[1:] for row in rabbitmqctl("list_exchanges", "name", "type",
                                                        "durable") if row[0].startswith(p)}
    ladder_exchanges = {n: exchanges.pop(n) for n in list(exchanges) if ".delay." in n}
    assert len(ladder_exchanges) == 12  # 11 levels and the final hop
    assert {kind for kind, _durable in ladder_exchanges.values()} == {"topic"}
    assert exchanges == {
        f"{p}.celery": ["direct", "true"], f"{p}.celery.dlx": ["direct", "true"],
        f"{p}.priority.high": ["direct", "true"], f"{p}.priority.high.dlx": ["direct", "true"],
        f"{p}.notices": ["topic", "true"], f"{p}.control": ["fanout", "true"],
        f"{p}.task-events": ["fanout", "true"]}
    bindings = {tuple(row) for row in rabbitmqctl("list_bindings", "source_name",
                                                  "destination_name", "routing_key")
                if row[0].startswith(p)}
    assert (f"{p}.delay.deliver", f"{p}.celery", "celery.#") in bindings
    assert (f"{p}.delay.deliver", f"{p}.priority.high", "priority%2Ehigh.#") in bindings
    assert (f"{p}.delay.level0", f"{p}.delay.125ms", "*.1.#") in bindings
    assert (f"{p}.delay.level0", f"{p}.delay.deliver", "*.0.#") in bindings
    assert (f"{p}.delay.level1", f"{p}.delay.7s", "*.*.7.#") in bindings
    assert (f"{p}.delay.level1", f"{p}.delay.level0", "*.*.0.#") in bindings
    assert (f"{p}.delay.level10", f"{p}.delay.level9", "*." * 11 + "0.#") in bindings
    bindings = {b for b in bindings if ".delay." not in b[0]}
    assert bindings == {(f"{p}.celery", f"{p}.celery", "celery"),
                        (f"{p}.celery.dlx", f"{p}.celery.dead", "celery"),
                        (f"{p}.priority.high", f"{p}.priority.high", "priority.high"),
                        (f"{p}.priority.high.dlx", f"{p}.priority.high.dead", "priority.high")}
    # the arguments are exactly what topology.py says: redeclaring them raw succeeds
    conn, ch = raw_channel(broker)
    ch.queue_declare(f"{p}.celery", durable=True,
                     arguments=broker.topology.work_queue_arguments("celery"))
    conn.close()


# --- publishing -----------------------------------------------------------------------

def test_round_trip_preserves_every_wire_field(broker):
    sent = wire(1, headers={"task": "t.add", "id": "x", "retries": 2, "flag": True,
                            "ratio": 0.5, "nested": {"a": [1, "b"]}},
                content_type="application/x-msgpack", content_encoding="zlib",
                priority=3, expiration="60000", body=b"\x00\xffbinary")
    broker.publish([("celery", sent)])
    handle, got = consume(broker, ["celery"])
    try:
        (delivery,) = got.take(1)
        assert delivery.wire == sent
        assert delivery.queue == "celery" and delivery.redelivered is False
        delivery.ack()
    finally:
        handle.stop()


def test_one_call_of_5000_messages_all_confirmed_and_stored(broker):
    broker.publish([("bulk", wire(i)) for i in range(5000)])
    assert broker.queue_depths(["bulk"]) == {"bulk": (5000, 0)}


def test_unroutable_message_raises(broker, topology_prefix):
    broker.declare(["gone"])
    conn, ch = raw_channel(broker)
    ch.queue_delete(f"{topology_prefix}.gone")  # the exchange stays, bound to nothing
    conn.close()
    with pytest.raises(UnroutableError, match="NO_ROUTE"):
        broker.publish([("gone", wire(1))])
    broker.publish([("other", wire(2))])  # the publisher is still usable


def test_eight_threads_share_the_confirm_window(broker):
    broker.declare(["many"])
    errors: list[BaseException] = []

    def produce(t: int) -> None:
        try:
            for i in range(200):
                broker.publish([("many", wire(t * 1000 + i))])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert broker.queue_depths(["many"])["many"] == (1600, 0)


def test_unreachable_broker_fails_fast_and_masks_password():
    settings = Settings()
    settings.broker_connection_timeout = 2.0
    broker = AmqpBroker("amqp://guest:s3cret@127.0.0.1:5999//", settings)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        broker.publish([("celery", wire(1))])
    assert time.monotonic() - started < settings.broker_connection_timeout + 1
    assert "s3cret" not in str(info.value)
    with pytest.raises(BrokerUnavailable):
        broker.consume(["celery"], 10, lambda d: None).start()
    with pytest.raises(BrokerUnavailable):
        broker.subscribe_notices(lambda b: None, (EVERY_KEY,))
    broker.close()


# --- consuming ------------------------------------------------------------------------

def test_ack_from_another_thread(broker):
    broker.publish([("acks", wire(i)) for i in range(100)])
    handle, got = consume(broker, ["acks"], prefetch=200)
    deliveries = got.take(100)
    threading.Thread(target=lambda: [d.ack() for d in deliveries]).start()
    wait_for(lambda: broker.queue_depths(["acks"])["acks"] == (0, 1))
    handle.stop()
    assert broker.queue_depths(["acks"])["acks"] == (0, 0)  # nothing was left unacked


def test_reject_dead_letters_with_x_death(broker, topology_prefix):
    broker.publish([("rej", wire(7))])
    handle, got = consume(broker, ["rej"])
    (delivery,) = got.take(1)
    threading.Thread(target=delivery.reject).start()
    wait_for(lambda: broker.dead_letter_count("rej") == 1)
    handle.stop()
    conn, ch = raw_channel(broker)
    method, props, body = ch.basic_get(f"{topology_prefix}.rej.dead", auto_ack=True)
    conn.close()
    death = props.headers["x-death"][0]
    assert death["reason"] == "rejected" and death["queue"] == f"{topology_prefix}.rej"
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.message_id == delivery.wire.message_id


def test_reject_requeue_redelivers(broker):
    broker.publish([("rq", wire(1))])
    handle, got = consume(broker, ["rq"])
    try:
        (first,) = got.take(1)
        assert not first.redelivered
        first.reject(requeue=True)
        (again,) = got.take(1)
        assert again.redelivered and again.wire == first.wire
        again.ack()
    finally:
        handle.stop()


def test_cancel_stops_deliveries_and_requeues_unhanded(broker):
    broker.publish([("cx", wire(i)) for i in range(100)])
    handle, got = consume(broker, ["cx"], prefetch=50, collector=Collector(delay=0.02))
    wait_for(lambda: got.count >= 5)
    handle.cancel()
    handed = got.count
    time.sleep(0.5)
    assert got.count == handed, "on_delivery was called after cancel()"
    for delivery in got.take(handed):
        delivery.ack()  # acks still flow after cancel
    wait_for(lambda: broker.queue_depths(["cx"])["cx"] == (100 - handed, 0))
    handle.stop()


LONG_POLL = 60.0
"""A poll far longer than the waits below: only a wake-up ends the thread's wait."""


def test_cancel_and_stop_wake_the_consumer_thread(broker, monkeypatch):
    """The worker's stop must not wait out the consumer's poll (0.2 s each for the
    cancel and the stop, on every worker process's shutdown)."""
    monkeypatch.setattr("hutch.brokers.amqp.consumer.POLL_SECONDS", LONG_POLL)
    handle, _ = consume(broker, ["wake"])
    time.sleep(0.2)  # the thread is inside its long wait
    handle.cancel(timeout=10)
    assert handle._cancelled.is_set(), "cancel() waited for the poll to end"
    handle.stop(timeout=10)
    assert not handle._thread.is_alive(), "stop() waited for the poll to end"


def test_closing_a_subscriber_wakes_its_thread(broker, monkeypatch):
    monkeypatch.setattr("hutch.brokers.amqp.subscriber.POLL_SECONDS", LONG_POLL)
    subscriber = broker.subscribe_notices(lambda body: None, (EVERY_KEY,))
    time.sleep(0.2)
    subscriber.close(timeout=10)
    assert not subscriber.is_alive(), "close() waited for the poll to end"


def _break_channel(conn, channel) -> None:
    """Make the broker close ``channel`` alone, as ``consumer_timeout`` does: an ack of a
    delivery tag it never sent is a PRECONDITION_FAILED channel error. Run in the
    connection's own thread (pika is not thread-safe)."""
    conn.add_callback_threadsafe(lambda: channel.basic_ack(999_999))


def test_a_consumer_whose_channel_the_broker_closes_consumes_again(broker):
    broker.publish([("chan", wire(1))])
    handle, got = consume(broker, ["chan"])
    [held] = got.take(1)
    session = handle._session
    _break_channel(session.conn, session.channel)
    assert eventually(lambda: handle._session is not session, 10), \
        "the consumer sat on a closed channel"
    assert held.stale  # RabbitMQ requeued it with the channel: this copy must not run
    [again] = got.take(1)
    assert again.redelivered and again.wire.message_id == held.wire.message_id
    again.ack()
    broker.publish([("chan", wire(2))])
    [later] = got.take(1)
    later.ack()
    handle.stop()


def test_a_subscriber_whose_channel_the_broker_closes_listens_again(broker, monkeypatch):
    connected: list[tuple] = []
    real_connect = BroadcastSubscriber._connect

    def recording(self):
        connected.append(real_connect(self))
        return connected[-1]

    monkeypatch.setattr(BroadcastSubscriber, "_connect", recording)
    got: queue.Queue = queue.Queue()
    subscriber = broker.subscribe_notices(got.put, (EVERY_KEY,))
    try:
        _break_channel(*connected[0])
        assert eventually(lambda: len(connected) == 2, 10), "it sat on a closed channel"

        def delivered() -> bool:
            broker.publish_notice(b"after", NOTICE_EVERYONE)
            try:
                return got.get(timeout=0.2) == b"after"
            except queue.Empty:
                return False

        assert eventually(delivered, 10)
    finally:
        subscriber.close()


def test_unacked_deliveries_return_when_the_consumer_stops(broker):
    broker.publish([("un", wire(i)) for i in range(10)])
    handle, got = consume(broker, ["un"])
    first = got.take(10)
    handle.stop()
    assert not handle.is_alive()
    first[0].ack()  # a late ack for a closed connection is a no-op
    handle, got = consume(broker, ["un"])
    try:
        again = got.take(10)
        assert all(d.redelivered for d in again)
        assert {d.wire.message_id for d in again} == {d.wire.message_id for d in first}
        for d in again:
            d.ack()
    finally:
        handle.stop()


# --- events ---------------------------------------------------------------------------

def test_events_fan_out_to_every_subscriber(broker):
    a: queue.Queue = queue.Queue()
    b: queue.Queue = queue.Queue()
    sub_a = broker.subscribe_notices(a.put, (EVERY_KEY,))
    sub_b = broker.subscribe_notices(b.put, (NOTICE_EVERYONE,))
    try:
        broker.publish_notice(b"notice-1", NOTICE_EVERYONE)
        assert a.get(timeout=5) == b"notice-1" and b.get(timeout=5) == b"notice-1"
    finally:
        sub_a.close()
        sub_b.close()


# --- aio-pika -------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _subscribed(amqp_url, amqp_settings, keys=(EVERY_KEY,)):
    """(publisher, its event subscription, the notices it received), closed afterwards."""
    pub = AsyncAmqpPublisher(amqp_url, amqp_settings)
    await pub.connect()
    notices: asyncio.Queue = asyncio.Queue()
    subscription = await pub.subscribe_notices(notices.put_nowait, keys)
    try:
        yield pub, subscription, notices
    finally:
        await subscription.close()
        await pub.close()


def test_an_async_subscription_whose_channel_the_broker_closes_subscribes_again(
        amqp_url, amqp_settings):
    """A channel error closes the channel alone (the connection stays up), and its
    exclusive queue with it: notices must flow again on a new subscription."""
    async def scenario() -> bytes:
        async with _subscribed(amqp_url, amqp_settings) as (pub, subscription, notices):
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await subscription._channel.declare_queue("amq.reserved-name")
            assert not subscription._conn.is_closed  # only the channel went
            for _ in range(100):  # until the new subscription takes them
                await pub.publish_notice(b"after", NOTICE_EVERYONE)
                with contextlib.suppress(asyncio.TimeoutError):
                    return await asyncio.wait_for(notices.get(), 0.1)
            raise AssertionError("no notice arrived after the channel closed")

    assert asyncio.run(scenario()) == b"after"


def test_an_async_subscription_takes_only_the_notices_of_its_keys(amqp_url, amqp_settings):
    async def scenario() -> list[bytes]:
        async with _subscribed(amqp_url, amqp_settings, ("client.mine", NOTICE_EVERYONE)
                               ) as (pub, _, notices):
            for body, key in ((b"theirs", "client.theirs"), (b"mine", "client.mine"),
                              (b"unaddressed", NOTICE_UNADDRESSED), (b"all", NOTICE_EVERYONE)):
                await pub.publish_notice(body, key)
            got = [await asyncio.wait_for(notices.get(), 5) for _ in range(2)]
            await asyncio.sleep(0.2)
            return got + [notices.get_nowait() for _ in range(notices.qsize())]

    assert asyncio.run(scenario()) == [b"mine", b"all"]


def test_aio_publisher_round_trip_unroutable_and_events(broker, amqp_url, amqp_settings,
                                                        topology_prefix):
    sent = [wire(i, priority=1, expiration="30000") for i in range(50)]

    async def scenario() -> bytes:
        async with _subscribed(amqp_url, amqp_settings) as (pub, _, notices):
            await asyncio.gather(*(pub.publish([("aio", w)], 10) for w in sent))
            await pub.publish([("gone", wire(98))], 10)
            conn, ch = raw_channel(broker)
            ch.queue_delete(f"{topology_prefix}.gone")  # the exchange stays, bound to nothing
            conn.close()
            with pytest.raises(UnroutableError, match="NO_ROUTE"):
                await pub.publish([("gone", wire(99))], 10)
            await pub.publish([("aio", wire(100))], 10)  # still usable afterwards
            await pub.publish_notice(b"aio-notice", NOTICE_EVERYONE)
            return await asyncio.wait_for(notices.get(), 5)

    assert asyncio.run(scenario()) == b"aio-notice"
    handle, got = consume(broker, ["aio"], prefetch=100)
    try:
        received = got.take(51)
        assert sorted((d.wire for d in received[:50]), key=lambda w: w.message_id) == \
            sorted(sent, key=lambda w: w.message_id)
        for d in received:
            d.ack()
    finally:
        handle.stop()


def test_aio_unreachable_broker():
    settings = Settings()
    settings.broker_connection_timeout = 2.0

    async def scenario() -> None:
        pub = AsyncAmqpPublisher("amqp://guest:s3cret@127.0.0.1:5999//", settings)
        with pytest.raises(BrokerUnavailable) as info:
            await pub.publish([("celery", wire(1))])
        assert "s3cret" not in str(info.value)

    asyncio.run(scenario())


def test_consumer_reconnects_when_its_connection_is_closed(broker):
    """Closes only this test's consumer connection (found by its connection_name); a
    route added while running (hutch control add_consumer) is consumed again too."""
    broker.publish([("rc", wire(1))])
    handle, got = consume(broker, ["rc"])
    try:
        got.take(1)[0].ack()
        assert handle.add_route("rc-added") is True
        name = f"hutch worker {os.uname().nodename}:{os.getpid()}"
        rows = [r for r in rabbitmqctl("list_connections", "pid", "client_properties")
                if name in r[1]]
        assert rows, "consumer connection not found"
        for row in rows:
            rabbitmqctl("close_connection", row[0], "test")
        broker.publish([("rc", wire(2))])
        (again,) = got.take(1, timeout=15)
        again.ack()
        broker.publish([("rc-added", wire(3))])
        (added,) = got.take(1, timeout=15)
        assert added.queue == "rc-added"
        added.ack()
        assert handle.is_alive()
    finally:
        handle.stop()


def test_a_consumer_stuck_in_a_callback_reads_as_not_alive(broker):
    """Its thread lives, but its loop no longer turns (here: a callback that blocks):
    is_alive() says False after ``stuck_after``, so the watchdog stops (worker/liveness.py);
    once the loop turns again it is alive again."""
    release = threading.Event()
    handle = broker.consume(["stuck"], 10, lambda delivery: release.wait(30))
    handle.stuck_after = 1.0
    handle.start()
    try:
        time.sleep(1.5)
        assert handle.is_alive()  # idle, the loop turns: alive
        broker.publish([("stuck", wire(1))])
        wait_for(lambda: not handle.is_alive(), 10)
        release.set()
        wait_for(handle.is_alive, 10)
    finally:
        release.set()
        handle.stop()


def test_set_prefetch_changes_how_many_deliveries_a_running_consumer_holds(broker):
    """RabbitMQ fixes a consumer's prefetch when it starts: set_prefetch swaps in a new
    consumer, which takes its own prefetch while the deliveries held from the old one
    are still acked on the same channel; none is lost or duplicated (a threads
    worker's pool_grow/pool_shrink)."""
    broker.publish([("pf", wire(i)) for i in range(8)])
    handle, got = consume(broker, ["pf"], prefetch=1)
    try:
        held = got.take(1)
        time.sleep(0.3)  # would a second arrive? (the limit holds it back)
        assert got.deliveries.qsize() == 0
        handle.set_prefetch(3)
        held += got.take(3)  # the new consumer's three, beside the old one's
        wait_for(lambda: broker.queue_stats("pf").ready == 4)
        handle.set_prefetch(1)
        held += got.take(1)
        for delivery in held:
            delivery.ack()
        rest = []
        for _ in range(3):  # one at a time now
            (one,) = got.take(1)
            time.sleep(0.2)
            assert got.deliveries.qsize() == 0
            one.ack()
            rest.append(one)
        assert sorted(int(d.wire.message_id.split("-")[1]) for d in held + rest) == list(range(8))
        wait_for(lambda: broker.queue_stats("pf").ready == 0)
    finally:
        handle.stop()
