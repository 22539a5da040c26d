"""Workflows on RabbitMQ + PostgreSQL with two worker subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from apps.tasks import CustomError, make_app
from hutch import GroupResult, chain, chord, group
from hutch.errors import ChordError, TimeLimitExceeded
from hutch.results.groups import Done
from hutch.results.records import StateChange
from hutch.worker.chords import ChordKeeper
from hutch.workflows.plan import Planner
from support import failures
from support.chords import commit
from support.processes import TESTS_DIR, WorkerProc, worker_env
from support.rabbit import delete_prefixed
from support.seed import check_seed_workflows
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture(scope="module")
def topology_prefix(amqp_url):
    """One prefix for the module: its workers serve every test here (starting and
    stopping two prefork workers per test would cost more than the tests)."""
    prefix = f"hutchtest.{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefixed(prefix)


@pytest.fixture(scope="module")
def app(amqp_url, postgres_url, topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    yield app
    app.close()


@pytest.fixture(scope="module")
def env(amqp_url, postgres_url, topology_prefix):
    return worker_env(amqp_url, postgres_url, topology_prefix)


@pytest.fixture(scope="module")
def two_workers(env):
    """Two worker nodes (``w1``, ``w2``), prefork with two children each."""
    started = [WorkerProc(env, pool="prefork", concurrency=2,
                          extra_args=["-n", f"w{i}@test"]).start() for i in (1, 2)]
    try:
        for worker in started:
            worker.wait_ready(count=2)
        yield started
    finally:
        codes = []
        for worker in started:  # every one, even if one of them ignores SIGTERM
            try:
                codes.append(worker.stop())
            except AssertionError as exc:
                codes.append(str(exc))
        assert codes == [0, 0]


def test_every_seed_example(app, two_workers):
    check_seed_workflows(app)


def test_a_chord_of_1000_header_tasks_over_two_workers_runs_its_body_once(app, two_workers,
                                                                            tmp_path):
    marker = tmp_path / "body-runs"
    t = app.tasks
    r = chord((t["tests.add"].s(i, i) for i in range(1000)),
              t["tests.count_call"].s(str(marker)))()
    assert r.get(timeout=120) == [2 * i for i in range(1000)]
    assert marker.read_text().count("\n") == 1
    store = app.client().store
    rows = store.get_many(m.id for m in r.parent.results)
    assert {row.worker.split("@")[0] for row in rows.values()} == {"w1", "w2"}
    group_row = store.get_groups([r.parent.id])[r.parent.id]
    assert (group_row.state, group_row.completed, group_row.failed) == ("COMPLETE", 1000, 0)


def test_a_failed_header_task_fails_the_chord(app, two_workers, tmp_path):
    marker = tmp_path / "body-runs"
    t = app.tasks
    header = [t["tests.add"].s(i, i) for i in range(20)] + [t["tests.fail"].s("no luck")]
    c = chord(header, t["tests.count_call"].s(str(marker)))
    c.link_error(t["tests.errback"].s())
    r = c()
    with pytest.raises(CustomError, match="^no luck$"):
        r.get(timeout=30)  # the failed header task's own exception
    failed = r.parent.results[-1]
    assert isinstance(r.result, ChordError)  # the body's row names the failed task
    assert f"tests.fail[{failed.id}]" in str(r.result) and "no luck" in str(r.result)
    assert r.state == "FAILURE" and r.failed()
    assert [child.get(timeout=10) for child in _children(r)] == [f"{r.id}: {r.result!r}"]
    assert r.parent.get(timeout=30, propagate=False)[:20] == [2 * i for i in range(20)]
    assert not marker.exists()


def test_each_group_in_a_chain_gathers_into_the_step_after_it(app, two_workers, tmp_path):
    failures.check_groups_gather(app, tmp_path / "runs")


@pytest.mark.parametrize("tail", failures.TAILS)
def test_a_failed_step_fails_the_rest_of_its_chain_at_once(app, two_workers, tail):
    failures.check_failed_chain(app, tail)


def test_a_failed_step_in_a_member_chain_fails_the_group_at_once(app, two_workers):
    failures.check_failed_member_chain(app)


@pytest.mark.parametrize("body", failures.BODIES)
def test_get_on_a_failed_chord_raises_the_header_task_exception(app, two_workers, body):
    failures.check_failed_chord(app, body)


def test_nested_workflows(app, two_workers):
    t = app.tasks
    add, mul, xsum = t["tests.add"], t["tests.mul"], t["tests.xsum"]
    assert (add.s(1, 1) | group(add.s(1), add.s(2)) | xsum.s() | mul.s(10))().get(
        timeout=20) == 70
    assert group(chain(add.s(i, i), mul.s(3)) for i in range(5))().get(timeout=20) == \
        [6 * i for i in range(5)]
    inner = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    assert chord([inner, chain(add.s(1, 1), mul.s(10))], xsum.s())().get(timeout=20) == 26
    r = (add.s(2, 3) | chord([mul.s(2), mul.s(3)], xsum.s()) | add.s(1))()
    assert r.get(timeout=20) == 26
    header = r.parent.parent
    assert isinstance(header, GroupResult) and header.parent.get() == 5
    root = header.parent.id
    rows = app.client().store.get_many([r.id, r.parent.id, *(m.id for m in header.results)])
    assert {row.root_id for row in rows.values()} == {root}


def test_a_saved_group_is_restored_in_another_process(app, two_workers, env):
    g = group(app.tasks["tests.add"].s(i, 1) for i in range(5))()
    g.save()
    script = ("import json, sys; from apps.tasks import app_from_env; from hutch import GroupResult;"
              "g = GroupResult.restore(sys.argv[1], app=app_from_env());"
              "print(json.dumps([g.get(timeout=30), g.completed_count(), [r.id for r in g]]))")
    out = subprocess.run([sys.executable, "-c", script, g.id], env=env, cwd=TESTS_DIR,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    values, count, ids = json.loads(out.stdout)
    assert values == [1, 2, 3, 4, 5] and count == 5 and ids == [r.id for r in g]


def _children(result, timeout=10.0):
    return eventually(lambda: result.children, timeout)


def test_a_header_task_killed_at_its_time_limit_fails_the_chord(app, two_workers, tmp_path):
    """The prefork supervisor records the FAILURE and kills the child; the redelivered
    message finds the task finished and, being a chord header, is counted then, and
    the rest of its chain is marked failed then."""
    marker = tmp_path / "body-runs"
    t = app.tasks
    r = chord([t["tests.add"].s(1, 1), t["tests.hard_limited"].s(5) | t["tests.add"].s(1)],
              t["tests.count_call"].s(str(marker)))()
    with pytest.raises(TimeLimitExceeded):
        r.get(timeout=60)
    assert "TimeLimitExceeded" in str(r.result)  # the body's ChordError names it
    with pytest.raises(TimeLimitExceeded):  # the step after the killed one
        app.AsyncResult(r.parent.results[1].id).get(timeout=30)
    assert not marker.exists()
    # the killed child's replacement is up before teardown
    assert eventually(lambda: sum(w.output().count('"worker ready"') for w in two_workers) >= 5,
                      30), "no replacement child"


def _stored_chord(app, size=2):
    t = app.tasks
    c = chord([t["tests.add"].s(i, i) for i in range(size)], t["tests.xsum"].s())
    c.freeze()
    plan = Planner(app.conf, lambda name: None).plan(c)
    app.client().store.insert_groups(plan.groups)
    return c.header.id, [m.id for m in plan.messages]


def test_counting_on_postgresql_is_idempotent_across_workers(app):
    """The count in the upsert's statement on PostgreSQL: an outcome counts only in
    the statement that made the task final, whichever worker writes it again later,
    and once when a batch carries it twice."""
    store = app.client().store
    gid, (a, b) = _stored_chord(app)
    first = ChordKeeper(app.conf, app.tasks, shard="w1")
    second = ChordKeeper(app.conf, app.tasks, shard="w2")

    def success(task_id):
        return [StateChange(task_id=task_id, state="SUCCESS", result=2)]

    assert commit(first, store, success(a), [], [Done(gid, a, "SUCCESS")]).followups == []
    assert commit(second, store, success(a), [], [Done(gid, a, "SUCCESS")]).followups == []
    done = commit(second, store, success(b), [], [Done(gid, b, "SUCCESS")])
    assert len(done.followups) == 1
    assert commit(first, store, success(b) * 2, [], [Done(gid, b, "SUCCESS")] * 2).followups == []
    row = store.get_groups([gid])[gid]
    assert (row.state, row.completed, row.failed) == ("COMPLETE", 2, 0)


def test_a_failure_batched_with_a_success_fails_the_chord_on_postgresql(app):
    """A batch with a header failure takes the transaction: both outcomes are counted
    (by the upsert's statement) and the failure decides the chord in it, once."""
    store = app.client().store
    gid, (a, b, _) = _stored_chord(app, 3)
    keeper = ChordKeeper(app.conf, app.tasks, shard="w1")
    changes = [StateChange(task_id=a, state="SUCCESS", result=0),
               StateChange(task_id=b, state="FAILURE", exception_message="boom")]
    out = commit(keeper, store, changes, [], [Done(gid, a, "SUCCESS"), Done(gid, b, "FAILURE")])
    assert out.sent == [gid] and len(out.finished) == 1  # the body's FAILURE row
    assert commit(keeper, store, changes, [], [Done(gid, b, "FAILURE")]).sent == []
    row = store.get_groups([gid])[gid]
    assert (row.state, row.completed, row.failed, row.failed_task_id) == ("FAILED", 2, 1, b)


def test_a_header_task_revoked_before_any_worker_saw_it_fails_the_chord_on_postgresql(app):
    store = app.client().store
    gid, (a, _) = _stored_chord(app)
    app.control.revoke(a)  # marks the row REVOKED at once, without counting
    keeper = ChordKeeper(app.conf, app.tasks, shard="w1")
    dropped = [StateChange(task_id=a, state="REVOKED", exception_message="revoked")]
    out = commit(keeper, store, dropped, [], [Done(gid, a, "REVOKED", "revoked early")])
    assert out.sent == [gid] and len(out.finished) == 1
    row = store.get_groups([gid])[gid]
    assert (row.state, row.completed, row.failed, row.failed_task_id) == ("FAILED", 1, 1, a)
