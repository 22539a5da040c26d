"""Reject, Ignore, ``self.retry()``'s keywords and ``self.request``'s fields with a prefork
worker on RabbitMQ and PostgreSQL (tests/unit/test_request_memory.py: the same on memory://)."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.request_tasks import make_app
from hutch import IGNORED, REJECTED, SUCCESS, Ignore, Reject
from hutch.messages import DEAD_REASON_HEADER
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def app(amqp_url, postgres_url, topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    yield app
    app.close()


@pytest.fixture
def worker(amqp_url, postgres_url, topology_prefix, workers):
    w = workers(worker_env(amqp_url, postgres_url, topology_prefix, HUTCH_MAX_LOST_ATTEMPTS="3"),
                queues=["celery", "urgent"], pool="prefork", concurrency=2,
                app="apps.request_app")
    w.wait_ready(count=2)
    return w


def test_reject_and_ignore_on_a_prefork_worker(app, worker, tmp_path):
    t, store, broker = app.tasks, app.client().store, app.client().broker
    rejected = t["tests.request.reject"].delay("bad input")
    early = t["tests.request.reject_early"].delay("too late")
    again = t["tests.request.reject_once"].delay(str(tmp_path / "marker"))
    looping = t["tests.request.reject"].delay("busy", requeue=True)
    ignored = t["tests.request.ignore"].delay()
    with pytest.raises(Reject, match="bad input"):
        rejected.get(timeout=30)
    with pytest.raises(Reject, match="too late"):
        early.get(timeout=30)
    assert again.get(timeout=30) == "ran again"
    with pytest.raises(Reject, match="requeued 3 times"):
        looping.get(timeout=30)
    with pytest.raises(Ignore):
        ignored.get(timeout=30)
    letters = eventually(lambda: len(broker.dead_letters("celery")) == 3 and
                         broker.dead_letters("celery"), timeout=30)
    reasons = {w.message_id: w.headers[DEAD_REASON_HEADER] for w in letters}
    assert reasons[rejected.id] == "hutch.errors.Reject: bad input"
    assert reasons[early.id] == "hutch.errors.Reject: too late"
    assert "worker_max_lost_attempts=3" in reasons[looping.id]
    rows = store.get_many([rejected.id, early.id, again.id, looping.id, ignored.id])
    assert [rows[r.id].state for r in (rejected, early, again, looping, ignored)] == \
        [REJECTED, REJECTED, SUCCESS, REJECTED, IGNORED]
    assert broker.queue_stats("celery").ready == 0
    assert worker.stop() == 0


def test_request_fields_and_retry_keywords_seen_inside_a_prefork_child(app, worker,
                                                                       topology_prefix):
    t = app.tasks
    got = t["tests.request.seen"].apply_async(
        (1,), {"k": "v"}, expires=300, time_limit=30, soft_time_limit=20,
        link=t["tests.add"].s(1)).get(timeout=30)
    assert got["delivery_info"] == {"exchange": f"{topology_prefix}.celery",
                                    "routing_key": "celery", "priority": None,
                                    "redelivered": False}
    assert got["hostname"] and got["origin"]
    assert got["properties"]["content_type"] == "application/json"
    assert (got["args"], got["kwargs"], got["timelimit"]) == ([1], {"k": "v"}, [30, 20])
    assert [c["task"] for c in got["callbacks"]] == ["tests.add"] and got["is_eager"] is False
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.5)
    delayed = t["tests.request.seen"].apply_async(eta=eta).get(timeout=30)
    assert delayed["eta"] == eta.isoformat()
    # a delayed message comes out of the delay ladder (hutch.brokers.amqp.ladder)
    assert delayed["delivery_info"]["exchange"] == f"{topology_prefix}.delay.deliver"
    assert delayed["delivery_info"]["routing_key"].startswith("celery.")
    retried = t["tests.request.retry_with"].delay(
        retry={"args": [2], "kwargs": {"retry": {}}, "queue": "urgent", "expires": 60}
    ).get(timeout=30)
    assert (retried["args"], retried["queue"], retried["retries"]) == ([2], "urgent", 1)
    assert retried["delivery_info"]["exchange"] != got["delivery_info"]["exchange"]
    assert worker.stop() == 0
