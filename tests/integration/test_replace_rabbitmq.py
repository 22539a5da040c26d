"""``self.replace(sig)`` on RabbitMQ + PostgreSQL with a prefork worker: the chain, chord
header and chord body cases, the ids and the chord's count as the rows keep them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from apps.replace_tasks import make_app
from hutch import chain, chord, group
from hutch.results.models import group_counts
from support.processes import WorkerProc, worker_env
from support.rabbit import delete_prefixed
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture(scope="module")
def app(amqp_url, postgres_url):
    """The test tasks' app, and a prefork worker (two children) running them on a prefix
    of this module's own, started once for every test here."""
    prefix = f"hutchtest.{uuid.uuid4().hex[:10]}"
    app = make_app(amqp_url, postgres_url, topology_prefix=prefix)
    worker = WorkerProc(worker_env(amqp_url, postgres_url, prefix), pool="prefork",
                        concurrency=2, app="apps.replace_tasks").start()
    try:
        worker.wait_ready(count=2)
        yield app
    finally:
        assert worker.stop() == 0, worker.output()
        app.close()
        delete_prefixed(prefix)


@pytest.fixture
def into(app):
    return lambda sig, *args: app.tasks["replace.into"].s(*args, sig=sig.to_dict())


def test_the_middle_of_a_chain_replaced_by_a_chain(app, into, tmp_path):
    add, mul = app.tasks["tests.add"], app.tasks["tests.mul"]
    gate = tmp_path / "gate"
    r = chain(add.s(1, 1), into(app.tasks["replace.gated"].si(str(gate), 10) | mul.s(3)),
              add.s(1))()
    replaced, first = r.parent, r.parent.parent
    store = app.client().store
    row = eventually(lambda: _waiting(store.get(replaced.id)), timeout=30)
    assert (row.name, row.retries) == ("replace.into", 1)  # the replaced run's, waiting
    gate.touch()
    assert r.get(timeout=30) == 31
    assert app.AsyncResult(replaced.id).get(timeout=30) == 30
    (step,) = store.children(first.id)  # the replacement's first task, where `into` was
    rows = store.get_many([r.id, replaced.id, step])
    assert (rows[step].name, rows[replaced.id].name) == ("replace.gated", "tests.mul")
    assert (rows[replaced.id].parent_id, rows[r.id].parent_id) == (step, replaced.id)
    assert {row.root_id for row in rows.values()} == {first.id}


def test_a_chord_header_member_replaced_by_a_group(app, into):
    add = app.tasks["tests.add"]
    r = chord([into(group(add.s(1, 1), add.s(2, 2))), add.s(3, 3)], app.tasks["tests.echo"].s())()
    assert r.get(timeout=30) == [[2, 4], 6]
    with app.client().store.engine.connect() as conn:
        counted = conn.execute(select(func.sum(group_counts.c.completed))
                               .where(group_counts.c.group_id == r.parent.id)).scalar()
    assert counted == 2  # the replacement's result once; the replaced task never


def test_a_chord_body_replaced(app, into):
    add, tsum = app.tasks["tests.add"], app.tasks["replace.tsum"]
    r = chord([add.s(1, 1), add.s(2, 2)], into(tsum.s() | add.s(1)))()
    assert r.get(timeout=30) == 7
    row = app.client().store.get(r.id)
    assert (row.state, row.name, row.root_id) == ("SUCCESS", "tests.add", r.parent.id)


def _waiting(row):
    return row if row is not None and row.state == "PENDING" and row.retries else None
