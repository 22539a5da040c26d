"""Workflows end to end on memory:// + SQLite: the seed's examples and the chord rules."""

import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from apps.tasks import CustomError
from hutch import GroupResult, chain, chord, group, signature
from hutch.errors import ChordError, NotRegistered
from hutch.ops.tree import render, workflow_tree
from hutch.results.groups import Done
from hutch.results.models import group_counts as counts_table
from hutch.results.models import groups as groups_table
from hutch.results.records import StateChange
from hutch.worker.chords import ChordKeeper
from hutch.workflows.plan import Planner
from support import failures
from support.chords import commit
from support.seed import check_seed_workflows
from support.waiting import eventually
from support.workers import running_worker


def until(fetch, timeout=10.0):
    """The first non-empty value ``fetch()`` returns within ``timeout`` seconds."""
    return eventually(fetch, timeout)


@pytest.fixture
def app(memory_app):
    return memory_app


@pytest.fixture
def t(app):
    return app.tasks


def test_the_seed_examples(app, t):
    with running_worker(app):
        check_seed_workflows(app)
        assert t["tests.add"].chunks(zip(range(4), range(4), strict=True), 2).group()().get(
            timeout=10) == [[0, 2], [4, 6]]


def test_chain_handles_exist_before_anything_ran_and_walk_back(app, t):
    add, mul = t["tests.add"], t["tests.mul"]
    r = (add.s(4, 16) | mul.s(2) | add.s(4))()
    first = r.parent.parent
    assert r.parent.parent.parent is None
    with running_worker(app):
        assert r.get(timeout=10) == 44
    assert (r.parent.get(), first.get()) == (40, 20)
    rows = app.client().store.get_many([r.id, r.parent.id, first.id])
    assert rows[r.id].parent_id == r.parent.id and rows[r.parent.id].parent_id == first.id
    assert {row.root_id for row in rows.values()} == {first.id}
    assert app.AsyncResult(r.id).parent.parent == first  # read back from the rows too


def test_a_failed_step_fails_the_chain_and_its_errback_fires_once(app, t):
    add, fail = t["tests.add"], t["tests.fail"]
    r = chain(add.s(1, 1), fail.s(), add.s(1)).on_error(t["tests.errback"].s())()
    with running_worker(app):
        with pytest.raises(CustomError):
            r.get(timeout=10)  # the last step never runs: its failed parent is raised
        errbacks = until(lambda: [c for c in r.parent.children if c != r])
        assert len(errbacks) == 1 and "CustomError" in errbacks[0].get(timeout=10)
    # the last step's row: FAILURE with the failed step's exception, as Celery marks it
    row = app.client().store.get(r.id)
    assert (row.state, row.exception_message, row.parent_id) == ("FAILURE", "2", r.parent.id)
    assert row.worker is None and row.name == "tests.add" and row.root_id == r.parent.parent.id
    with pytest.raises(CustomError, match="^2$"):
        app.AsyncResult(r.id).get(timeout=10)  # a handle without parents raises it too
    assert not r.parent.parent.children[1:] and r.children == []


def test_each_group_in_a_chain_gathers_into_the_step_after_it(app, tmp_path):
    with running_worker(app):
        failures.check_groups_gather(app, tmp_path / "runs")


@pytest.mark.parametrize("tail", failures.TAILS)
def test_a_failed_step_fails_the_rest_of_its_chain_at_once(app, tail):
    with running_worker(app):
        failures.check_failed_chain(app, tail)


def test_a_failed_step_in_a_member_chain_fails_the_group_at_once(app):
    with running_worker(app):
        failures.check_failed_member_chain(app)


def test_a_refused_step_fails_the_rest_of_its_chain(app, t):
    """A step no worker can run (an unknown task name) is refused and dead-lettered;
    the steps after it are marked failed with its NotRegistered, as for a failure."""
    r = (t["tests.add"].s(1, 1) | signature("tests.nowhere", app=app) | t["tests.add"].s(1))()
    with running_worker(app):
        with pytest.raises(NotRegistered):
            app.AsyncResult(r.id).get(timeout=10)
    assert app.client().store.get(r.id).parent_id == r.parent.id


@pytest.mark.parametrize("body", failures.BODIES)
def test_get_on_a_failed_chord_raises_the_header_task_exception(app, body):
    with running_worker(app):
        failures.check_failed_chord(app, body)


def test_group_result_api_and_restore(app, t):
    add, fail = t["tests.add"], t["tests.fail"]
    with running_worker(app):
        g = group(add.s(1, 1), fail.s("x"), add.s(2, 2))()
        assert isinstance(g, GroupResult) and len(g) == 3
        assert g.get(timeout=10, propagate=False)[::2] == [2, 4]
        with pytest.raises(CustomError):
            g.get(timeout=10)
        assert g.ready() and g.failed() and not g.successful() and g.completed_count() == 2
    rows = app.client().store.get_many(r.id for r in g.results)
    assert {row.group_id for row in rows.values()} == {g.id}
    restored = GroupResult.restore(g.id, app=app)
    assert restored == g and restored.completed_count() == 2
    assert GroupResult.restore("no-such-group", app=app) is None


def test_save_stores_a_hand_made_group(app, t):
    with running_worker(app):
        results = [t["tests.add"].delay(i, i) for i in range(3)]
        GroupResult("hand-made", results, app.client()).save()
        assert GroupResult.restore("hand-made", app=app).get(timeout=10) == [0, 2, 4]


def test_group_revoke_revokes_every_member(app, t):
    g = group(t["tests.add"].s(i, i) for i in range(3))()
    app.client().flush()
    g.revoke()
    assert [r.state for r in g.results] == ["REVOKED"] * 3


def test_chord_row_counts_and_completes_once(app, t):
    add, xsum = t["tests.add"], t["tests.xsum"]
    with running_worker(app):
        r = chord([add.s(i, i) for i in range(5)], xsum.s())()
        assert r.get(timeout=10) == 20
    header = r.parent
    row = app.client().store.get_groups([header.id])[header.id]
    assert (row.state, row.size, row.completed, row.failed) == ("COMPLETE", 5, 5, 0)
    assert row.body_id == r.id and row.member_ids == [m.id for m in header.results]
    assert app.client().store.get(r.id).parent_id == header.id
    assert isinstance(app.AsyncResult(r.id).parent, GroupResult)


def test_a_failed_header_task_fails_the_chord_and_calls_the_errback_once(app, t, tmp_path):
    marker = tmp_path / "body-ran"
    header = [t["tests.add"].s(1, 1), t["tests.fail"].s("header broke"), t["tests.add"].s(2, 2)]
    c = chord(header, t["tests.count_call"].s(str(marker)))
    c.link_error(t["tests.errback"].s())
    r = c()
    with running_worker(app):
        with pytest.raises(CustomError, match="^header broke$"):
            r.get(timeout=10)  # the failed header task's own exception, as in Celery
        errbacks = until(lambda: r.children)
        assert len(errbacks) == 1 and "ChordError" in errbacks[0].get(timeout=10)
    failed_id = r.parent.results[1].id
    assert isinstance(r.result, ChordError) and failed_id in str(r.result)
    assert re.search(r"tests\.fail\[.*\] raised .*CustomError: header broke", str(r.result))
    assert isinstance(r.get(timeout=1, propagate=False), ChordError)
    assert app.client().store.get(r.id).parent_id == r.parent.id
    row = app.client().store.get_groups([r.parent.id])[r.parent.id]
    assert row.state == "FAILED" and row.failed_task_id == failed_id
    assert not marker.exists()


def test_nested_workflows(app, t):
    add, mul, xsum, echo = t["tests.add"], t["tests.mul"], t["tests.xsum"], t["tests.echo"]
    with running_worker(app):
        assert (add.s(1, 1) | group(add.s(1), add.s(2)) | xsum.s() | mul.s(10))().get(
            timeout=10) == 70
        assert group(chain(add.s(1, 1), mul.s(3)), chain(add.s(2, 2), mul.s(3)))().get(
            timeout=10) == [6, 12]
        assert chord([chain(add.s(1, 1), mul.s(3)), add.s(2, 2)], xsum.s())().get(
            timeout=10) == 10
        assert chord([chord([add.s(1, 1), add.s(2, 2)], xsum.s()), add.s(10, 10)], xsum.s())().get(
            timeout=10) == 26
        assert chord([add.s(1, 1) | group(add.s(1), add.s(2)), add.s(0, 1)], echo.s())().get(
            timeout=10) == [[3, 4], 1]
        assert (add.s(1, 1) | group(add.s(1), add.s(2)))().get(timeout=10) == [3, 4]
        assert group(chord([add.s(1, 1)], xsum.s()), add.s(5, 5))().get(timeout=10) == [2, 10]


def test_a_failed_inner_chord_fails_the_outer_chord(app, t):
    add, fail, xsum = t["tests.add"], t["tests.fail"], t["tests.xsum"]
    with running_worker(app):
        r = chord([chord([add.s(1, 1), fail.s()], xsum.s()), add.s(1, 1)], xsum.s())()
        with pytest.raises(CustomError, match="^boom$"):
            r.get(timeout=10)  # the inner header task's exception, through both chords
        assert isinstance(r.result, ChordError) and "failed" in str(r.result)
        after = (chord([add.s(1, 1), fail.s()], xsum.s()) | add.s(1))()
        with pytest.raises(CustomError, match="^boom$"):
            after.get(timeout=10)
        with pytest.raises(CustomError, match="^boom$"):
            app.AsyncResult(after.id).get(timeout=10)  # its row says ChordError at once


def test_link_on_a_chord_gets_the_body_result(app, t):
    add, xsum = t["tests.add"], t["tests.xsum"]
    with running_worker(app):
        r = chord([add.s(1, 1), add.s(2, 2)], xsum.s()).apply_async(link=add.s(100))
        assert r.get(timeout=10) == 6
        assert until(lambda: r.children)[0].get(timeout=10) == 106


def test_an_empty_chord_runs_its_body_with_no_results(app, t):
    with running_worker(app):
        assert chord([], t["tests.echo"].s())().get(timeout=10) == []


def _stored_chord(app, t, size=2, notify=None):
    c = chord([t["tests.add"].s(i, i) for i in range(size)], t["tests.xsum"].s())
    c.freeze()
    plan = Planner(app.conf, lambda n: None, notify).plan(c)
    app.client().store.insert_groups(plan.groups)
    return c.header.id, [m.id for m in plan.messages]


def _group_row(store, gid):
    with store.engine.connect() as conn:
        return conn.execute(select(groups_table).where(groups_table.c.group_id == gid)).one()


def test_counting_is_idempotent_and_decides_once(app, t):
    """A redelivered outcome is counted once; two workers' counts add up; only one
    claim completes the chord."""
    store = app.client().store
    gid, (a, b) = _stored_chord(app, t)
    first = ChordKeeper(app.conf, app.tasks, shard="w1")
    second = ChordKeeper(app.conf, app.tasks, shard="w2")

    def success(task_id):
        return [StateChange(task_id=task_id, state="SUCCESS", result=1)]

    assert commit(first, store, success(a), [], [Done(gid, a, "SUCCESS")]).followups == []
    assert commit(first, store, success(a), [], [Done(gid, a, "SUCCESS")]).followups == []
    done = commit(second, store, success(b) * 2, [], [Done(gid, b, "SUCCESS")] * 2)
    assert len(done.followups) == 1 and done.sent == [gid]  # the body
    assert commit(second, store, success(b), [], [Done(gid, b, "SUCCESS")]).followups == []
    assert first.claim(store, [Done(gid, a, "SUCCESS")], done).followups == []
    late = [StateChange(task_id=b, state="FAILURE", exception_message="late duplicate")]
    assert commit(first, store, late, [], [Done(gid, b, "FAILURE")]).followups == []
    row = _group_row(store, gid)
    assert (row.completed, row.failed, row.state) == (2, 0, "COMPLETE")
    with store.engine.connect() as conn:
        shards = dict(conn.execute(select(counts_table.c.shard, counts_table.c.completed)
                                   .where(counts_table.c.group_id == gid)).all())
    assert shards == {"w1": 1, "w2": 1}


def test_a_header_task_revoked_before_any_worker_saw_it_fails_the_chord(app, t):
    store = app.client().store
    gid, (a, b) = _stored_chord(app, t, notify="client.sender")
    app.control.revoke(a)  # marks the row REVOKED at once, without counting
    keeper = ChordKeeper(app.conf, app.tasks)
    dropped = [StateChange(task_id=a, state="REVOKED", exception_message="revoked")]
    out = commit(keeper, store, dropped, [], [Done(gid, a, "REVOKED", "tests.add[a] was revoked")])
    assert out.sent == [gid] and len(out.finished) == 1  # the body's FAILURE row
    assert commit(keeper, store, dropped, [], [Done(gid, a, "REVOKED")]).sent == []
    row = _group_row(store, gid)
    assert (row.completed, row.failed, row.state, row.failed_task_id) == (1, 1, "FAILED", a)
    (sender, body_id), = out.finished
    assert sender == "client.sender"  # the body's notice goes to the chord's sender
    assert "was revoked" in store.get(body_id).exception_message


def test_result_tree_draws_the_workflow_from_its_rows(app, t):
    add, mul, xsum = t["tests.add"], t["tests.mul"], t["tests.xsum"]
    with running_worker(app):
        r = (add.s(2, 3) | chord([mul.s(2), mul.s(3)], xsum.s()) | add.s(1))()
        assert r.get(timeout=10) == 26
    header = r.parent.parent
    first = header.parent
    text = render(workflow_tree(app.client().store, first.id))
    lines = text.splitlines()
    assert lines[0] == f"{first.id} tests.add SUCCESS -> 5"
    assert lines[1] == f"└── {header.id} [chord COMPLETE, 2 tasks]"
    assert {lines[2][8:], lines[3][8:]} == {f"{m.id} tests.mul SUCCESS -> {v}"
                                            for m, v in zip(header.results, (10, 15), strict=True)}
    assert lines[4] == f"    └── body: {r.parent.id} tests.xsum SUCCESS -> 25"
    assert lines[5] == f"        └── {r.id} tests.add SUCCESS -> 26"
    assert render(workflow_tree(app.client().store, header.id)).splitlines()[0].startswith(
        header.id)
    out = subprocess.run([sys.executable, "-m", "hutch", "-b", "memory://", "--backend",
                          app.conf.result_backend, "result", first.id, "--tree"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == text


def test_a_body_not_confirmed_sent_is_sent_again_by_a_redelivered_header(app, t):
    """The worker that completed a chord died between its commit and the body's publish:
    the header delivery it had not acknowledged comes back, and its recount sends the
    body (same id) again; once the body is marked sent, a recount sends nothing."""
    store = app.client().store
    gid, (a, b) = _stored_chord(app, t)
    keeper = ChordKeeper(app.conf, app.tasks)
    done = [StateChange(task_id=i, state="SUCCESS", result=n) for n, i in enumerate((a, b))]
    first = commit(keeper, store, done, [], [Done(gid, a, "SUCCESS"), Done(gid, b, "SUCCESS")])
    assert first.sent == [gid] and len(first.followups) == 1  # ...and then the worker died
    again = commit(keeper, store, [], [], [Done(gid, b, "SUCCESS", recheck=True)])
    assert [w.message_id for _, w in again.followups] == [w.message_id for _, w in first.followups]
    # marked, so a worker drops it if the first copy was published and received after all
    assert [w.headers.get("republished") for _, w in again.followups] == [True]
    assert "republished" not in first.followups[0][1].headers
    keeper.mark_sent(store, again.sent)
    assert commit(keeper, store, [], [], [Done(gid, b, "SUCCESS", recheck=True)]).followups == []
    assert _group_row(store, gid).body_sent_at is not None
