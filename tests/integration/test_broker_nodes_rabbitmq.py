"""Several nodes in ``broker_url`` against the real RabbitMQ (issue #17, first slice):
with a dead address first, every kind of connection (publisher, consumer, events,
reply inbox, admin, asyncio publisher) reaches the node that answers; a connection
that drops moves to the next node; with none answering the error names them all,
passwords masked. The second "node" is the same server under another host name
(127.0.0.1 and localhost), so the test needs no cluster; a private 3-node cluster
is the next slice's (tests/cluster/)."""

from __future__ import annotations

import asyncio

import pytest

from hutch.brokers.amqp.aio import AsyncAmqpPublisher
from hutch.brokers.amqp.broker import AmqpBroker
from hutch.brokers.base import TASK_EVENTS
from hutch.config import Settings
from hutch.errors import BrokerUnavailable
from hutch.messages import Wire
from support.rabbit import close_connections
from support.waiting import eventually

pytestmark = pytest.mark.rabbitmq

DEAD = "amqp://guest:deadsecret@127.0.0.1:5999//"  # nothing listens there


def wire(i: int) -> Wire:
    return Wire(body=f'{{"n": {i}}}'.encode(), content_type="application/json",
                content_encoding="utf-8", headers={"task": "t.add", "id": f"id-{i}"},
                message_id=f"id-{i}")


def settings_for(url: str, prefix: str) -> Settings:
    conf = Settings()
    conf.update(broker_url=url, topology_prefix=prefix, broker_connection_timeout=3.0)
    return conf


@pytest.fixture
def two_nodes(amqp_url, topology_prefix):
    """A dead node first, then the real one."""
    url = f"{DEAD};{amqp_url}"
    broker = AmqpBroker(url, settings_for(url, topology_prefix))
    yield broker
    broker.close()


def test_every_connection_reaches_the_node_that_answers(two_nodes):
    two_nodes.publish([("n1", wire(1))])
    assert two_nodes.queue_depths(["n1"]) == {"n1": (1, 0)}, "admin connection"
    got: list = []
    consumer = two_nodes.consume(["n1"], 10, got.append)
    consumer.start()
    events: list[bytes] = []
    subscription = two_nodes.subscribe(TASK_EVENTS, events.append)
    inbox = two_nodes.open_inbox()
    try:
        assert eventually(lambda: len(got) == 1, 10), "consumer"
        got[0].ack()
        two_nodes.broadcast(TASK_EVENTS, b'{"type": "probe"}')
        assert eventually(lambda: events == [b'{"type": "probe"}'], 10), "events subscriber"
        two_nodes.reply(inbox.name, b"answer")
        assert inbox.get(10) == b"answer", "reply inbox"
    finally:
        inbox.close()
        subscription.close()
        consumer.stop()


def test_the_asyncio_publisher_reaches_the_node_that_answers(amqp_url, topology_prefix):
    url = f"{DEAD};{amqp_url}"

    async def scenario() -> None:
        publisher = AsyncAmqpPublisher(url, settings_for(url, topology_prefix))
        try:
            await publisher.publish([("n2", wire(2))])
        finally:
            await publisher.close()

    asyncio.run(scenario())
    broker = AmqpBroker(amqp_url, settings_for(amqp_url, topology_prefix))
    try:
        assert broker.queue_depths(["n2"]) == {"n2": (1, 0)}
    finally:
        broker.close()


def test_a_dropped_connection_moves_to_the_next_node(amqp_url, topology_prefix):
    """127.0.0.1 then localhost: the same server, two addresses. After RabbitMQ closes
    the publisher's and the consumer's connections, each comes back on the other one."""
    other = amqp_url.replace("127.0.0.1", "localhost")
    url = f"{amqp_url};{other}"
    broker = AmqpBroker(url, settings_for(url, topology_prefix))
    got: list = []
    consumer = broker.consume(["n3"], 10, got.append)
    consumer.start()
    try:
        broker.publish([("n3", wire(1))])
        assert eventually(lambda: len(got) == 1, 10)
        got[0].ack()
        publisher = broker._get_publisher()
        assert publisher._nodes.current.host == consumer._nodes.current.host == "127.0.0.1"
        assert close_connections("publisher") and close_connections("worker")
        assert eventually(lambda: consumer._nodes.current.host == "localhost", 15)
        broker.publish([("n3", wire(2))])  # the first try may meet the closed connection
        assert publisher._nodes.current.host == "localhost"
        assert eventually(lambda: len(got) == 2, 15), "consuming again, on the next node"
        assert got[1].wire.message_id == "id-2"
        got[1].ack()
    finally:
        consumer.stop()
        broker.close()


def test_with_no_node_answering_the_error_names_every_node_masked(topology_prefix):
    url = f"{DEAD};amqp://guest:othersecret@127.0.0.1:5998//"
    broker = AmqpBroker(url, settings_for(url, topology_prefix))
    try:
        with pytest.raises(BrokerUnavailable) as publish:
            broker.publish([("n4", wire(1))], timeout=10)
        with pytest.raises(BrokerUnavailable) as admin:
            broker.queue_depths(["n4"])
        with pytest.raises(BrokerUnavailable) as consume:
            broker.consume(["n4"], 1, lambda d: None).start()
        for info in (publish, admin, consume):
            text = str(info.value)
            assert "127.0.0.1:5999" in text and "127.0.0.1:5998" in text, text
            assert "deadsecret" not in text and "othersecret" not in text
    finally:
        broker.close()
