"""One contract for both brokers: every test runs on memory:// and on the real RabbitMQ.

The worker, the clients and the operator tools (``hutch dlq``, the dashboard) are
written against brokers.base's Transport, FanOut and Admin; whatever they may
rely on is checked here on both implementations, so the demo broker cannot drift
from the product. Where RabbitMQ cannot tell something over AMQP (unacknowledged
counts) the contract says None, and the test says which broker counts them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import queue
import uuid
from collections.abc import Iterator

import pytest

from hutch.brokers import base
from hutch.brokers.amqp.broker import AmqpBroker
from hutch.brokers.base import (
    CONTROL,
    EVERY_KEY,
    NOTICE_EVERYONE,
    NOTICE_UNADDRESSED,
    NOTICES,
    TASK_EVENTS,
    Broker,
    FanOutChannel,
    QueueStats,
)
from hutch.brokers.memory import MemoryBroker
from hutch.messages import Wire
from support.waiting import eventually


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def contract_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A fresh broker of each kind: its own memory:// URL, or its own RabbitMQ prefix."""
    if request.param == "memory":
        broker: Broker = MemoryBroker(f"memory://contract-{uuid.uuid4().hex}")
    else:
        settings = request.getfixturevalue("amqp_settings")
        broker = AmqpBroker(settings.broker_url, settings)
    yield broker
    broker.close()


def wire(i: int = 0) -> Wire:
    return Wire(body=f'{{"n": {i}}}'.encode(), content_type="application/json",
                content_encoding="utf-8",
                headers={"task": "t.add", "id": f"id-{i}", "time_limit": 1.5},
                message_id=f"id-{i}-{uuid.uuid4().hex[:6]}")


def unacked(broker: Broker, count: int) -> int | None:
    """What queue_stats reports for ``count`` unacknowledged deliveries on this broker."""
    return count if isinstance(broker, MemoryBroker) else None


def settles_to(broker: Broker, route: str, ready: int, held: int, consumers: int) -> bool:
    """Whether the route's stats reach these counts (consumers settle asynchronously)."""
    expected = QueueStats(ready, unacked(broker, held), consumers)
    return eventually(lambda: broker.queue_stats(route) == expected)


class Collector:
    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue()

    def __call__(self, item) -> None:
        self.items.put(item)

    def take(self, n: int) -> list:
        return [self.items.get(timeout=10) for _ in range(n)]


def consuming(broker: Broker, route: str, prefetch: int = 10):
    got = Collector()
    handle = broker.consume([route], prefetch, got)
    handle.start()
    return handle, got


# --- Transport -------------------------------------------------------------------------

def test_published_messages_arrive_in_order_and_intact(contract_broker):
    sent = [wire(i) for i in range(3)]
    contract_broker.publish([("work", w) for w in sent])
    handle, got = consuming(contract_broker, "work")
    try:
        deliveries = got.take(3)
        assert [d.wire for d in deliveries] == sent  # float headers included
        assert {d.queue for d in deliveries} == {"work"}
        assert not any(d.redelivered for d in deliveries)
        # where it came from, for self.request.delivery_info: memory:// has no exchanges
        assert {d.routing_key for d in deliveries} == {"work"}
        exchange = "" if isinstance(contract_broker, MemoryBroker) else \
            f"{contract_broker.settings.topology_prefix}.work"
        assert {d.exchange for d in deliveries} == {exchange}
        for d in deliveries:
            d.ack()
        assert settles_to(contract_broker, "work", ready=0, held=0, consumers=1)
    finally:
        handle.stop()


def test_reject_dead_letters_and_requeue_redelivers(contract_broker):
    first, second = wire(1), wire(2)
    contract_broker.publish([("rej", first), ("rej", second)])
    handle, got = consuming(contract_broker, "rej", prefetch=1)
    try:
        (delivery,) = got.take(1)
        delivery.reject()
        assert eventually(lambda: contract_broker.dead_letter_count("rej") == 1)
        [dead] = contract_broker.dead_letters("rej")
        assert dead.message_id == first.message_id
        assert dead.headers["x-death"][0]["reason"] == "rejected"
        (delivery,) = got.take(1)
        delivery.reject(requeue=True)
        (again,) = got.take(1)
        assert again.redelivered and again.wire == second
        again.ack()
    finally:
        handle.stop()
    assert contract_broker.dead_letter_count("rej") == 1  # reading left it in place


def test_publish_dead_goes_straight_to_the_dead_letter_queue(contract_broker):
    refused = wire(3)
    contract_broker.publish_dead("pd", refused)
    assert contract_broker.dead_letter_count("pd") == 1
    assert [w.message_id for w in contract_broker.dead_letters("pd")] == [refused.message_id]
    assert contract_broker.queue_stats("pd").ready == 0


def test_a_running_consumer_adds_and_cancels_routes(contract_broker):
    first = wire(1)
    contract_broker.publish([("added", first)])
    handle, got = consuming(contract_broker, "base")
    try:
        assert contract_broker.queue_stats("added").consumers == 0
        assert handle.add_route("added") is True
        (delivery,) = got.take(1)
        assert delivery.queue == "added" and delivery.wire == first
        assert handle.add_route("added") is False
        assert handle.add_route("fresh") is True  # declared on the way
        assert settles_to(contract_broker, "fresh", ready=0, held=0, consumers=1)

        assert handle.cancel_route("added") is True
        assert handle.cancel_route("added") is False
        delivery.ack()  # delivered before the cancel: still settles
        contract_broker.publish([("added", wire(2))])
        assert settles_to(contract_broker, "added", ready=1, held=0, consumers=0)
        contract_broker.publish([("base", wire(3))])
        (other,) = got.take(1)
        assert other.queue == "base"
        other.ack()
        assert got.items.empty()
    finally:
        handle.stop()


# --- FanOut ----------------------------------------------------------------------------

@pytest.mark.parametrize("channel", [NOTICES, CONTROL, TASK_EVENTS], ids=lambda c: c.name)
def test_a_broadcast_reaches_every_subscriber(contract_broker, channel: FanOutChannel):
    a, b = Collector(), Collector()
    sub_a, sub_b = contract_broker.subscribe(channel, a), contract_broker.subscribe(channel, b)
    try:
        contract_broker.broadcast(channel, b"one")
        assert a.take(1) == [b"one"] and b.take(1) == [b"one"]
        sub_a.close()
        contract_broker.broadcast(channel, b"two")
        assert b.take(1) == [b"two"]
        assert a.items.empty()  # closed before the broadcast
    finally:
        sub_a.close()
        sub_b.close()


def test_a_probed_channel_tells_whether_a_broadcast_reached_anybody(contract_broker,
                                                                   monkeypatch):
    """TASK_EVENTS is probed: heard() turns False once a broadcast reached no subscriber
    (RabbitMQ returns it; memory:// knows), so a client can skip building events."""
    monkeypatch.setattr(base, "UNHEARD_PAUSE", 600.0)
    got = Collector()
    sub = contract_broker.subscribe(TASK_EVENTS, got)
    try:
        contract_broker.broadcast(TASK_EVENTS, b"heard", probe=True)
        assert got.take(1) == [b"heard"]
        contract_broker.publish([("contract", wire(1))])  # its confirm follows any return
        assert contract_broker.heard(TASK_EVENTS)
    finally:
        sub.close()

    def unheard() -> bool:
        contract_broker.broadcast(TASK_EVENTS, b"nobody", probe=True)  # until it is gone
        contract_broker.publish([("contract", wire(2))])
        return not contract_broker.heard(TASK_EVENTS)

    assert eventually(unheard, 10)
    assert contract_broker.heard(NOTICES) and contract_broker.heard(CONTROL)  # not probed


def test_each_channel_reaches_only_its_own_subscribers(contract_broker):
    events, control, task_events = Collector(), Collector(), Collector()
    subs = [contract_broker.subscribe_notices(events, (EVERY_KEY,)),
            contract_broker.subscribe_control(control),
            contract_broker.subscribe(TASK_EVENTS, task_events)]
    try:
        assert contract_broker.broadcast(TASK_EVENTS, b"task-started") is True
        contract_broker.publish_control(b"command")
        contract_broker.publish_notice(b"notice", NOTICE_EVERYONE)
        assert events.take(1) == [b"notice"] and control.take(1) == [b"command"]
        assert task_events.take(1) == [b"task-started"]
    finally:
        for sub in subs:
            sub.close()


def test_notices_reach_the_subscribers_of_their_key_and_those_of_every_key(contract_broker):
    """A client's notices reach that client alone, plus whoever listens to every key."""
    mine, theirs, everything = Collector(), Collector(), Collector()
    subs = [contract_broker.subscribe_notices(mine, ("client.mine", NOTICE_EVERYONE)),
            contract_broker.subscribe_notices(theirs, ("client.theirs", NOTICE_EVERYONE)),
            contract_broker.subscribe_notices(everything, (EVERY_KEY,))]
    try:
        for body, key in ((b"1", "client.mine"), (b"2", "client.theirs"),
                          (b"3", NOTICE_UNADDRESSED), (b"4", NOTICE_EVERYONE),
                          (b"5", "client.mine")):
            contract_broker.publish_notice(body, key)
        assert sorted(everything.take(5)) == [b"1", b"2", b"3", b"4", b"5"]
        assert mine.take(3) == [b"1", b"4", b"5"]
        assert theirs.take(2) == [b"2", b"4"]
        contract_broker.publish_notice(b"last", "client.theirs")  # in order behind the rest
        assert theirs.take(1) == [b"last"] and everything.take(1) == [b"last"]
        assert mine.items.empty()
    finally:
        for sub in subs:
            sub.close()


def test_a_failing_subscriber_neither_stops_others_nor_reaches_the_publisher(contract_broker):
    def broken(_body: bytes) -> None:
        raise RuntimeError("subscriber bug")

    good = Collector()
    subs = [contract_broker.subscribe(CONTROL, broken), contract_broker.subscribe(CONTROL, good)]
    try:
        contract_broker.broadcast(CONTROL, b"first")
        contract_broker.broadcast(CONTROL, b"second")
        assert good.take(2) == [b"first", b"second"]
    finally:
        for sub in subs:
            sub.close()


# --- Replies ---------------------------------------------------------------------------

def test_replies_reach_the_inbox_named_in_a_broadcast_request(contract_broker):
    """The control round trip: a request names an inbox, each subscriber replies there."""
    def answer(body: bytes) -> None:
        contract_broker.reply(body.decode(), b"pong")

    subs = [contract_broker.subscribe(CONTROL, answer) for _ in range(2)]
    inbox = contract_broker.open_inbox()
    try:
        contract_broker.broadcast(CONTROL, inbox.name.encode())
        assert [inbox.get(5.0), inbox.get(5.0)] == [b"pong", b"pong"]
        assert inbox.get(0.1) is None
    finally:
        inbox.close()
        for sub in subs:
            sub.close()


def test_inboxes_are_apart_and_a_reply_to_a_closed_one_is_dropped(contract_broker):
    first, second = contract_broker.open_inbox(), contract_broker.open_inbox()
    assert first.name != second.name
    first.close()
    contract_broker.reply(first.name, b"too late")  # never raises
    contract_broker.reply(second.name, b"mine")
    try:
        assert second.get(5.0) == b"mine"
    finally:
        second.close()


# --- Admin -----------------------------------------------------------------------------

def test_queue_stats_count_ready_unacked_and_consumers(contract_broker):
    contract_broker.publish([("st", wire(i)) for i in range(5)])
    assert contract_broker.queue_stats("st") == QueueStats(5, unacked(contract_broker, 0), 0)
    handle, got = consuming(contract_broker, "st", prefetch=2)
    try:
        held = got.take(2)
        assert settles_to(contract_broker, "st", ready=3, held=2, consumers=1)
        handle.cancel()
        assert settles_to(contract_broker, "st", ready=3, held=2, consumers=0)
        for delivery in held:
            delivery.ack()
        assert settles_to(contract_broker, "st", ready=3, held=0, consumers=0)
    finally:
        handle.stop()
    assert contract_broker.queue_depths(["st"]) == {"st": (3, 0)}


def test_a_route_never_declared_reads_as_empty(contract_broker):
    assert contract_broker.queue_stats("nowhere") == QueueStats(0, unacked(contract_broker, 0), 0)
    assert contract_broker.dead_letter_count("nowhere") == 0
    assert contract_broker.dead_letters("nowhere") == []
    assert contract_broker.replay_dead("nowhere") == []
    assert contract_broker.purge("nowhere") == 0
    assert contract_broker.purge_dead("nowhere") == 0


def test_replay_puts_dead_letters_back_on_their_route(contract_broker):
    dead = [wire(i) for i in range(3)]
    for w in dead:
        contract_broker.publish_dead("rp", w)
    seen: list[str] = []
    replayed = contract_broker.replay_dead("rp", dead[1].message_id,
                                           lambda copy: seen.append(copy.message_id))
    assert [w.message_id for w in replayed] == seen == [dead[1].message_id]
    assert contract_broker.dead_letter_count("rp") == 2
    assert contract_broker.queue_stats("rp").ready == 1
    assert len(contract_broker.replay_dead("rp")) == 2
    assert contract_broker.dead_letter_count("rp") == 0
    assert contract_broker.queue_stats("rp").ready == 3


def test_purge_empties_the_work_queue_and_the_dead_letters_apart(contract_broker):
    contract_broker.publish([("pg", wire(i)) for i in range(4)])
    contract_broker.publish_dead("pg", wire(9))
    assert contract_broker.purge("pg") == 4
    assert contract_broker.queue_stats("pg").ready == 0
    assert contract_broker.dead_letter_count("pg") == 1
    assert contract_broker.purge_dead("pg") == 1
    assert contract_broker.dead_letter_count("pg") == 0


def test_deleted_topology_is_empty_and_declared_again_on_publish(contract_broker):
    contract_broker.publish([("del", wire(1)), ("del", wire(2))])
    contract_broker.publish_dead("del", wire(3))
    contract_broker.delete_topology(["del"])
    assert contract_broker.queue_stats("del") == QueueStats(0, unacked(contract_broker, 0), 0)
    assert contract_broker.dead_letter_count("del") == 0
    contract_broker.publish([("del", wire(4))])
    assert contract_broker.queue_stats("del").ready == 1


def delayed(i: int, seconds: float) -> Wire:
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    plain = wire(i)
    return dataclasses.replace(plain, headers={**plain.headers, "eta": eta.isoformat()})


def test_delayed_count_counts_what_waits_for_its_eta(contract_broker):
    assert contract_broker.delayed_count() == 0  # on RabbitMQ: no ladder declared yet
    contract_broker.publish([("dl", delayed(1, 600)), ("dl", delayed(2, 3600)),
                             ("dl", delayed(3, 0.3)), ("dl", wire(4))])
    assert contract_broker.delayed_count() in (2, 3)  # the 0.3 s one may be through
    assert eventually(lambda: contract_broker.queue_stats("dl").ready == 2)
    assert contract_broker.delayed_count() == 2
