"""``/metrics`` of hutch web on the real RabbitMQ and PostgreSQL (in-process, with
Starlette's TestClient): the queue length of a route with waiting messages, a dead
letter counted, a worker up from its heartbeat row, the beat lease holder, task
counts through PostgreSQL's statement timeout; and with RabbitMQ unreachable, the
broker's parts left out and named while the database's still answer."""

from __future__ import annotations

import datetime as dt
import socket
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from apps.tasks import make_app
from hutch import Hutch
from hutch.beat.store import BeatStore, Lease
from hutch.messages import Wire
from hutch.results.records import StateChange
from hutch.results.workers import WorkerBeat, WorkerStore
from hutch.web.app import create_app

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(app: Hutch) -> tuple[Samples, str]:
    with TestClient(create_app(app)) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200, answer.text
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(answer.text)
               for s in family.samples}
    return samples, answer.text


def _value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[metric, frozenset(labels.items())]


def _wire() -> Wire:
    task_id = uuid.uuid4().hex
    return Wire(body=b"[[], {}, {}]", content_type="application/json", content_encoding="utf-8",
                headers={"task": "tests.add", "id": task_id}, message_id=task_id)


@pytest.fixture
def app(amqp_url, fresh_postgres_url, topology_prefix):
    """A database of this test's own: counts and the beat lease start from nothing
    (the session's database holds every other test's rows and leases)."""
    app = make_app(amqp_url, fresh_postgres_url, topology_prefix=topology_prefix)
    yield app
    app.close()


def test_queues_dead_letters_workers_beat_and_tasks(app):
    route = "metrics"
    broker, store = app.client().broker, app.client().store
    broker.declare([route])
    broker.publish([(route, _wire()), (route, _wire()), (route, _wire())])
    broker.publish_dead(route, _wire())
    now = dt.datetime.now(dt.timezone.utc)
    WorkerStore(store).beat(WorkerBeat(
        hostname="w1@metrics", pid=1, version="1", pool="prefork", concurrency=1, processes=1,
        queues=[route], prefetch=1, state="online", heartbeat_interval=60.0, started_at=now))
    assert Lease(BeatStore(store), 30.0).acquire("beat@metrics", now).held
    store.write([StateChange(task_id=uuid.uuid4().hex, state="SUCCESS", name="tests.add",
                             queue=route, created_at=now, received_at=now, started_at=now,
                             finished_at=now)])

    samples, _ = _scrape(app)

    assert {labels: v for (name, labels), v in samples.items()
            if name == "hutch_scrape_error" and v} == {}
    assert _value(samples, "hutch_queue_length", queue_name=route) == 3
    assert _value(samples, "hutch_active_consumer_count", queue_name=route) == 0
    assert _value(samples, "hutch_dead_letter_queue_length", queue_name=route) == 1
    assert _value(samples, "hutch_worker_up", hostname="w1@metrics") == 1
    assert _value(samples, "hutch_beat_lease_holder", holder="beat@metrics") == 1
    assert _value(samples, "hutch_tasks", name="tests.add", state="SUCCESS") == 1
    assert _value(samples, "hutch_task_runtime_gcount", name="tests.add", queue_name=route) == 1
    assert _value(samples, "hutch_delayed_messages") == 0


def test_rabbitmq_down_leaves_the_broker_parts_out(postgres_url, topology_prefix):
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = Hutch("t", broker=f"amqp://guest:s3cret@127.0.0.1:{port}//", backend=postgres_url,
                topology_prefix=topology_prefix)
    try:
        samples, text = _scrape(app)
    finally:
        app.close()
    errors = {dict(labels)["part"]: v for (name, labels), v in samples.items()
              if name == "hutch_scrape_error"}
    assert errors == {"tasks": 0, "timings": 0, "workers": 0, "beat": 0,
                      "queues": 1, "delayed": 1}
    assert ("hutch_workers", frozenset({("state", "online")})) in samples
    assert "hutch_queue_length" not in text and "s3cret" not in text
