"""The result API on RabbitMQ + PostgreSQL with a prefork worker subprocess (issue #15):
the row-backed fields, and signatures and handles crossing a real worker as values."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from apps.result_tasks import make_app
from hutch import GroupResult, ResultSet, Signature, chain, group, signature
from support.processes import WorkerProc, worker_env
from support.rabbit import delete_prefixed
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture(scope="module")
def topology_prefix(amqp_url):
    """One prefix and one worker for the module (a prefork worker per test costs more
    than the tests)."""
    prefix = f"hutchtest.{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefixed(prefix)


@pytest.fixture(scope="module")
def app(amqp_url, postgres_url, topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    yield app
    app.close()


@pytest.fixture(scope="module")
def worker(amqp_url, postgres_url, topology_prefix):
    proc = WorkerProc(worker_env(amqp_url, postgres_url, topology_prefix), pool="prefork",
                      concurrency=2, app="apps.result_tasks",
                      extra_args=["-n", "results@test"]).start()
    try:
        proc.wait_ready(count=2)
        yield proc
    finally:
        assert proc.stop() == 0


def test_the_extended_fields_and_date_done_come_from_the_row(app, worker):
    t = app.tasks
    before = dt.datetime.now(dt.timezone.utc)
    r = t["tests.add"].apply_async((2, 3), queue="celery")
    retried = t["tests.retry_once"].delay(0.1)
    assert r.get(timeout=30) == 5 and retried.get(timeout=30) == 1
    assert (r.name, r.args, r.kwargs, r.queue, r.retries) == ("tests.add", [2, 3], {},
                                                              "celery", 0)
    assert r.worker.startswith("results@test") and retried.retries == 1
    assert r.date_done.tzinfo is not None and r.date_done >= before - dt.timedelta(seconds=5)
    rs = ResultSet([r, retried])
    assert rs.completed_count() == 2 and rs.join_native(timeout=30) == [5, 1]


def test_signatures_and_handles_cross_the_worker_as_values(app, worker):
    t = app.tasks
    data = t["results.make_sig"].delay(7).get(timeout=30)
    assert set(data) == {"task", "args", "kwargs", "options", "subtask_type", "immutable"}
    sig = signature(data, app=app)
    assert sig.id == data["options"]["task_id"]
    assert sig.delay().get(timeout=30) == 8 and app.AsyncResult(sig.id).get(timeout=30) == 8
    sigs = [signature(d, app=app) for d in t["results.make_sigs"].delay(2).get(timeout=30)]
    assert [type(s) for s in sigs] == [Signature, Signature, chain, group]
    assert ResultSet([s.delay() for s in sigs]).join(timeout=30) == [3, 4, 9, [0, 2]]

    child_id = t["results.send_child"].delay(4).get(timeout=30)
    assert app.AsyncResult(child_id).get(timeout=30) == 8
    group_id = t["results.send_group"].delay(3).get(timeout=30)
    assert GroupResult.restore(group_id, app=app).join(timeout=30) == [0, 2, 4]
    handle = app.AsyncResult(child_id)
    assert t["results.describe"].delay(handle).get(timeout=30) == ["str", child_id]


def test_collect_walks_children_sent_by_a_worker(app, worker):
    parent = app.tasks["results.spawn_many"].delay(3)
    assert parent.get(timeout=30) == 3
    store = app.client().store
    eventually(lambda: len(store.children(parent.id)) == 3, 30)
    collected = list(parent.collect(timeout=30))
    assert collected[0] == (parent, 3) and sorted(v for _, v in collected[1:]) == [100, 101,
                                                                                   102]
    assert parent.then(lambda r: r.children).result(timeout=30) == [c for c, _ in collected[1:]]
