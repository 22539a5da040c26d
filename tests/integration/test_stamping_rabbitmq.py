"""Stamping on RabbitMQ + PostgreSQL with a prefork worker: stamps reach every task's
request and row (and the DBA's jsonb query finds them), and revoke_by_stamped_headers
stops a running stamped task, refuses later ones, before and after a worker restart,
while unstamped tasks run."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from apps import stamp_tasks
from hutch import StampingVisitor, chord
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

WORKER_APP = "apps.stamp_tasks:env_app"


@pytest.fixture
def stamped(app):
    return stamp_tasks.register(app)


class Place(StampingVisitor):
    def on_signature(self, sig, **headers):
        return {"task": sig.task}

    def on_chord_body(self, sig, **headers):
        return {"body": True}


def test_stamps_reach_the_request_and_the_row(stamped, env, workers, postgres_url):
    w = workers(env, pool="prefork", concurrency=2, app=WORKER_APP)
    seen = stamped.tasks["stamps.seen"]
    flow = chord([seen.s(1), seen.s(2)], seen.s()).stamp(Place(), tenant="acme")
    w.wait_ready(count=2)
    result = flow.apply_async()
    body, report = result.get(timeout=30)
    assert report["stamps"] == {"tenant": "acme", "task": "stamps.seen", "body": True}
    assert [r[-1]["stamps"] for r in body] == [{"tenant": "acme", "task": "stamps.seen"}] * 2
    engine = stamped.client().store.engine
    with engine.connect() as conn:  # docs/dba.md's query
        rows = conn.execute(text("SELECT task_id, stamps FROM hutch_tasks "
                                 "WHERE stamps @> '{\"tenant\": \"acme\"}'")).all()
        bodies = conn.execute(text("SELECT task_id FROM hutch_tasks "
                                   "WHERE stamps @> '{\"body\": true}'")).scalars().all()
    assert len(rows) == 3 and bodies == [result.id]
    assert w.stop() == 0


def test_revoke_by_stamped_headers_stops_stamped_tasks_and_lets_others_run(
        stamped, env, workers, tmp_path):
    seen, wait = stamped.tasks["stamps.seen"], stamped.tasks["stamps.wait"]
    w = workers(env, pool="prefork", concurrency=2, app=WORKER_APP)
    w.wait_ready(count=2)
    started = tmp_path / "pid"
    running = wait.s(str(started)).stamp(job="j1").apply_async()
    assert eventually(lambda: started.exists() and started.read_text(), 30)
    stamped.control.revoke_by_stamped_headers({"job": "j1"}, terminate=True)
    assert eventually(lambda: running.state == "REVOKED", 30)
    assert stamped.client().store.get(running.id).exception_message == "terminated"
    later = seen.s(1).stamp(job=["j0", "j1"]).apply_async()
    plain = seen.delay(2)
    assert plain.get(timeout=30) == [2, {"stamps": {}, "stamped_headers": []}]
    assert eventually(lambda: later.state == "REVOKED", 30)
    assert w.stop() == 0

    again = seen.s(3).stamp(job="j1").apply_async()  # sent while no worker runs
    other = seen.s(4).stamp(job="j2").apply_async()
    restarted = workers(env, pool="prefork", concurrency=2, app=WORKER_APP)
    restarted.wait_ready(count=2)
    assert other.get(timeout=30)[0] == 4
    assert eventually(lambda: again.state == "REVOKED", 30)
    assert restarted.stop() == 0
