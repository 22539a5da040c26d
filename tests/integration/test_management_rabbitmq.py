"""Queue stats through RabbitMQ's management HTTP API (``broker_management_url``), on a
private node with the plugin on (the shared RabbitMQ must not have it switched on):
unacked counted when the API answers, the passive declare when it does not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient
from test_amqp_broker import consume, wire

from hutch import Hutch
from hutch.brokers.amqp.broker import AmqpBroker
from hutch.brokers.base import QueueStats
from hutch.config import Settings
from hutch.ops.queues import queue_infos
from hutch.web.app import create_app
from support.servers import PrivateRabbit, free_port
from support.waiting import eventually

pytestmark = pytest.mark.rabbitmq

ROUTE = "work"
PUBLISHED, HELD = 5, 2


def monitor_url(node: PrivateRabbit) -> str:
    """A user that may only read the management API, made as docs/ops.md says (tag
    ``monitoring``, no AMQP rights), through the API itself (faster than rabbitmqctl)."""
    api, admin = f"http://127.0.0.1:{node.management_port}/api", ("guest", "guest")
    httpx.put(f"{api}/users/monitor", auth=admin, json={"password": "m0n-pw", "tags": "monitoring"}
              ).raise_for_status()
    httpx.put(f"{api}/permissions/%2F/monitor", auth=admin,
              json={"configure": "^$", "write": "^$", "read": "^$"}).raise_for_status()
    return f"http://monitor:m0n-pw@127.0.0.1:{node.management_port}/"


def broker_for(node: PrivateRabbit, prefix: str, management_url: str) -> AmqpBroker:
    conf = Settings(topology_prefix=prefix, broker_management_url=management_url,
                    broker_connection_timeout=2.0)
    return AmqpBroker(node.url, conf)


@pytest.fixture(scope="module")
def held(private_rabbit_management: PrivateRabbit) -> Iterator[tuple[PrivateRabbit, str]]:
    """ROUTE with PUBLISHED messages, HELD of them delivered to one consumer that never
    acks (prefetch HELD), for the module; yields the node and the topology prefix."""
    node = private_rabbit_management
    prefix = f"hutchtest.{uuid.uuid4().hex[:10]}"
    broker = broker_for(node, prefix, node.management_url)
    broker.publish([(ROUTE, wire(i)) for i in range(PUBLISHED)])
    handle, collector = consume(broker, [ROUTE], prefetch=HELD)
    collector.take(HELD)
    try:
        yield node, prefix
    finally:
        handle.stop()
        broker.close()


def test_the_management_api_counts_unacked_messages(held):
    node, prefix = held
    broker = broker_for(node, prefix, monitor_url(node))
    want = QueueStats(ready=PUBLISHED - HELD, unacked=HELD, consumers=1)
    assert eventually(lambda: broker.queue_stats(ROUTE) == want, 15), broker.queue_stats(ROUTE)
    [info] = queue_infos(broker, {ROUTE: ["default"]})
    assert (info.ready, info.unacked, info.consumers) == (PUBLISHED - HELD, HELD, 1)


def test_a_route_never_declared_is_empty_with_no_warning(held, caplog):
    node, prefix = held
    broker = broker_for(node, prefix, node.management_url)
    assert broker.queue_stats("never-declared") == QueueStats(ready=0, unacked=None, consumers=0)
    assert not [r for r in caplog.records if r.name.startswith("hutch") and r.levelno >= 30]


@pytest.mark.parametrize("how", ["bad password", "closed port"])
def test_a_failing_api_falls_back_to_the_passive_declare_and_warns_once(held, caplog, how):
    node, prefix = held
    url = (f"http://guest:Wr0ng-s3cret@127.0.0.1:{node.management_port}/"
           if how == "bad password" else f"http://guest:Wr0ng-s3cret@127.0.0.1:{free_port()}/")
    broker = broker_for(node, prefix, url)
    fallback = QueueStats(ready=PUBLISHED - HELD, unacked=None, consumers=1)
    assert [broker.queue_stats(ROUTE) for _ in range(3)] == [fallback] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "management API not usable" in warnings[0]
    assert ("401" if how == "bad password" else "ConnectError") in warnings[0]
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "Wr0ng-s3cret" not in logged


def test_the_queues_page_and_api_show_the_unacked_number(held, sqlite_url):
    node, prefix = held
    app = Hutch("mgmt-web", broker=node.url, backend=sqlite_url, topology_prefix=prefix,
                task_default_queue=ROUTE, broker_management_url=node.management_url)
    try:
        with TestClient(create_app(app)) as http:
            def work() -> dict:
                [item] = http.get("/api/v1/queues").json()["items"]
                return item
            assert eventually(lambda: work()["unacked"] == HELD, 15), work()
            assert (work()["ready"], work()["consumers"]) == (PUBLISHED - HELD, 1)
            row = http.get("/queues").text.split('<tr class="queue">', 1)[1].split("</tr>")[0]
            assert f'<td class="num">{PUBLISHED - HELD}</td><td class="num">{HELD}</td>' in row
    finally:
        app.close()
