"""``self.replace(sig)`` on memory:// + SQLite: every place a task can be replaced from
(alone, first/middle/last in a chain, in a group, in a chord header, as a chord body)
and every kind of replacement (task, chain, group, chord), the id chain, callbacks,
errbacks, the chord's count, the row while the replacement runs, and eager runs."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from apps.replace_tasks import make_app
from apps.tasks import CustomError
from hutch import chain, chord, group
from hutch.current import reset_request, set_request
from hutch.errors import ConfigurationError, NotRegistered, Replaced, TaskRevokedError
from hutch.messages import Request
from hutch.results.models import group_counts, tasks
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app("memory://replace-" + tmp_path.name, f"sqlite:///{tmp_path / 'r.sqlite'}",
                   worker_concurrency=2)
    yield app
    app.close()


@pytest.fixture
def t(app):
    return app.tasks


@pytest.fixture
def into(t):
    """``into(sig)``: the signature of a task that replaces itself with ``sig``."""
    return lambda sig, *args: t["replace.into"].s(*args, sig=sig.to_dict())


def rows(app, *ids):
    found = app.client().store.get_many(list(ids))
    return [found[i] for i in ids]


def test_a_task_replaced_by_a_task_gives_its_result_under_its_own_id(app, t, into):
    with running_worker(app):
        r = into(t["tests.add"].s(2, 3)).delay()
        assert r.get(timeout=30) == 5
        assert app.AsyncResult(r.id).get(timeout=30) == 5
    (row,) = rows(app, r.id)
    assert (row.state, row.name, row.args, row.retries) == ("SUCCESS", "tests.add", [2, 3], 0)
    assert (row.parent_id, row.root_id) == (None, r.id)
    assert app.client().store.children(r.id) == []  # nothing else ran under it


@pytest.mark.parametrize("kind, expected", [
    ("task", 12), ("chain", 36), ("group", [3, 4]), ("chord", 7)])
def test_the_middle_of_a_chain_replaced_by_each_kind_passes_its_result_on(app, t, into,
                                                                         kind, expected):
    add, mul, tsum = t["tests.add"], t["tests.mul"], t["replace.tsum"]
    replacement = {"task": add.s(10), "chain": add.s(10) | mul.s(3),
                   "group": group(add.s(1), add.s(2)),
                   "chord": chord([add.s(1), add.s(2)], tsum.s())}[kind]
    r = chain(add.s(1, 1), into(replacement), t["tests.echo"].s())()
    with running_worker(app):
        assert r.get(timeout=30) == expected
        assert r.parent.get(timeout=30) == expected  # the replaced step's own id
    assert r.parent.parent.get() == 2


def test_the_first_and_the_last_step_of_a_chain_can_be_replaced(app, t, into):
    add, mul = t["tests.add"], t["tests.mul"]
    first = chain(into(add.s(1, 1) | mul.s(5)), add.s(1))()
    last = chain(add.s(1, 1), into(mul.s(5) | add.s(1)))()
    with running_worker(app):
        assert (first.get(timeout=30), last.get(timeout=30)) == (11, 11)
        assert first.parent.get(timeout=30) == 10


def test_the_replacement_takes_the_replaced_tasks_place_in_the_id_chain(app, t, into):
    add, mul = t["tests.add"], t["tests.mul"]
    r = chain(add.s(1, 1), into(add.s(10) | mul.s(2)), add.s(1))()
    first, replaced = r.parent.parent, r.parent
    with running_worker(app):
        assert r.get(timeout=30) == 25
    store = app.client().store
    (step,) = store.children(first.id)  # the replacement's first task, where `into` was
    last, middle, new_first = rows(app, r.id, replaced.id, step)
    assert (new_first.name, new_first.parent_id) == ("tests.add", first.id)
    assert (middle.name, middle.parent_id, middle.result) == ("tests.mul", step, 24)
    assert last.parent_id == replaced.id  # the chain goes on from the replaced id
    assert {row.root_id for row in (last, middle, new_first)} == {first.id}
    assert app.AsyncResult(r.id).parent.parent.parent == first  # no cycle back to it


def test_a_replaced_task_in_a_group_is_counted_with_the_replacements_result(app, t, into):
    add = t["tests.add"]
    r = group(into(add.s(1, 1) | add.s(1)), into(group(add.s(1, 1), add.s(2, 2))),
              add.s(3, 3))()
    with running_worker(app):
        assert r.get(timeout=30) == [3, [2, 4], 6]
    assert {row.group_id for row in rows(app, *[c.id for c in r.results])} == {r.id}


@pytest.mark.parametrize("kind", ["task", "chain", "group", "chord"])
def test_a_chord_header_member_replaced_is_counted_once_with_the_replacements_result(
        app, t, into, kind):
    add, tsum = t["tests.add"], t["replace.tsum"]
    replacement = {"task": add.s(1, 1), "chain": add.s(1, 1) | add.s(1),
                   "group": group(add.s(1, 1), add.s(2, 2)),
                   "chord": chord([add.s(1, 1), add.s(2, 2)], tsum.s())}[kind]
    expected = {"task": 2, "chain": 3, "group": [2, 4], "chord": 6}[kind]
    r = chord([into(replacement), add.s(3, 3)], t["tests.echo"].s())()
    with running_worker(app):
        assert r.get(timeout=30) == [expected, 6]
    header = r.parent.id
    with app.client().store.engine.connect() as conn:
        counted = conn.execute(select(func.sum(group_counts.c.completed))
                               .where(group_counts.c.group_id == header)).scalar()
    assert counted == 2  # the replaced task never counted; its replacement once


def test_the_first_step_of_a_chain_in_a_chord_header_replaced_counts_once(app, t, into):
    add = t["tests.add"]
    r = chord([chain(into(add.s(1, 1) | add.s(1)), add.s(1)), add.s(5, 5)],
              t["tests.echo"].s())()
    with running_worker(app):
        assert r.get(timeout=30) == [4, 10]


@pytest.mark.parametrize("pool", ["asyncio", "solo"])
def test_other_pools_replace_too(app, t, into, pool):
    add = t["tests.add"]
    r = chain(add.s(1, 1), into(add.s(1) | add.s(1)), add.s(1))()
    coroutine = t["replace.async_into"].s(1, sig=add.s(2).to_dict()) | add.s(1)
    with running_worker(app, pool=pool, concurrency=1 if pool == "solo" else 2):
        assert r.get(timeout=30) == 5
        if pool == "asyncio":
            assert coroutine().get(timeout=30) == 4


def test_a_chord_body_replaced_by_a_chain_gives_the_chords_result(app, t, into):
    add, mul, tsum = t["tests.add"], t["tests.mul"], t["replace.tsum"]
    r = chord([add.s(1, 1), add.s(2, 2)], into(tsum.s() | mul.s(2)))()
    g = chord([add.s(1, 1)], into(group(tsum.s(), t["tests.echo"].s())))()
    with running_worker(app):
        assert r.get(timeout=30) == 12
        assert g.get(timeout=30) == [2, [2]]
    (body,) = rows(app, r.id)
    assert (body.name, body.root_id) == ("tests.mul", r.parent.id)  # the header group


def test_a_replaced_task_that_replaces_itself_again_keeps_its_id(app, t):
    with running_worker(app):
        r = t["replace.again"].delay(3)
        assert r.get(timeout=30) == "done"
    (row,) = rows(app, r.id)
    assert (row.state, row.args) == ("SUCCESS", [0])


def test_callbacks_move_to_the_replacement_and_run_once_with_its_result(app, t, into):
    add = t["tests.add"]
    r = into(add.s(1, 1) | add.s(1)).apply_async(link=t["tests.echo"].s())
    with running_worker(app):
        assert r.get(timeout=30) == 3
        (callback,) = eventually(lambda: r.children, timeout=30)
        assert callback.get(timeout=30) == 3


def test_errbacks_move_to_the_replacement_and_fire_once_on_its_failure(app, t, into):
    add = t["tests.add"]
    r = into(add.s(1, 1) | t["tests.fail"].s() | add.s(1)).apply_async(
        link_error=t["tests.errback"].s())
    with running_worker(app):
        with pytest.raises(CustomError, match="^2$"):
            r.get(timeout=30)  # the replaced id: the rest of the chain never ran
        (errback,) = eventually(lambda: named(app, "tests.errback"), timeout=30)
        assert "CustomError(2)" in app.AsyncResult(errback).get(timeout=30)
    assert named(app, "tests.errback") == [errback]  # once, from the step that failed
    (row,) = rows(app, r.id)
    assert (row.state, row.name, row.root_id) == ("FAILURE", "tests.add", r.id)


@pytest.mark.parametrize("place", ["chain", "chord header"])
def test_a_failing_replacement_fails_what_the_replaced_task_was_part_of(app, t, into, place):
    add, fail = t["tests.add"], t["tests.fail"]
    if place == "chain":  # the replacement's first task gets the previous step's 2
        r = chain(add.s(1, 1), into(add.s(0) | fail.s() | add.s(1)), add.s(100))()
    else:
        r = chord([into(add.s(1, 1) | fail.s() | add.s(1)), add.s(3, 3)],
                  t["tests.echo"].s())()
    with running_worker(app):
        with pytest.raises(CustomError, match="^2$"):
            r.get(timeout=30)
    assert app.client().store.get(r.id).state == "FAILURE"  # never run, marked failed


def named(app, name):
    """The ids of the rows of task ``name``."""
    with app.client().store.engine.connect() as conn:
        return list(conn.execute(select(tasks.c.task_id).where(tasks.c.name == name)).scalars())


def test_the_replaced_row_is_pending_while_the_replacement_runs(app, t, into, tmp_path):
    gate = tmp_path / "gate"
    r = into(t["replace.gated"].si(str(gate), 1) | t["tests.add"].s(1)).delay()
    with running_worker(app):
        row = eventually(lambda: waiting_row(app, r.id), timeout=30)
        assert (row.name, row.worker is not None, row.started_at is not None) == (
            "replace.into", True, True)  # the replaced run's, until the replacement's
        assert not r.ready()
        gate.touch()
        assert r.get(timeout=30) == 2
    (row,) = rows(app, r.id)
    assert (row.state, row.name, row.retries) == ("SUCCESS", "tests.add", 0)


def waiting_row(app, task_id):
    """The row of a replaced task waiting for its replacement, or None before that."""
    row = app.client().store.get(task_id)
    return row if row is not None and row.state == "PENDING" and row.retries else None


def test_revoking_the_replaced_id_while_it_waits_keeps_its_replacement_from_running(
        app, t, into, tmp_path):
    gate = tmp_path / "gate"
    r = into(t["replace.gated"].si(str(gate), 1) | t["tests.add"].s(1)).delay()
    with running_worker(app):
        eventually(lambda: waiting_row(app, r.id), timeout=30)
        r.revoke()
        gate.touch()
        (gated,) = eventually(lambda: named(app, "replace.gated"), timeout=30)
        assert app.AsyncResult(gated).get(timeout=30) == 1
        eventually(lambda: app.client().store.get(r.id).state == "REVOKED", timeout=30)
        with pytest.raises(TaskRevokedError):
            r.get(timeout=30)
    row = app.client().store.get(r.id)  # the replacement's last task never ran
    assert (row.state, row.name, row.result) == ("REVOKED", "replace.into", None)


def test_a_task_that_retries_on_any_exception_is_replaced_not_retried(app, t):
    with running_worker(app):
        r = t["replace.into_autoretry"].delay(t["tests.add"].s(2, 2).to_dict())
        assert r.get(timeout=30) == 4
    assert rows(app, r.id)[0].retries == 0


@pytest.mark.parametrize("sig, error", [
    (chain(), "empty chain"), (group(), "empty group")])
def test_an_empty_replacement_fails_the_task_with_the_reason(app, into, sig, error):
    with running_worker(app):
        with pytest.raises(ConfigurationError, match=error):
            into(sig).delay().get(timeout=30)


def test_a_replacement_that_cannot_be_sent_fails_the_task_with_the_reason(app, t, into):
    with running_worker(app):
        r = into(t["tests.add"].s(1, 1).set(countdown="soon")).delay()
        with pytest.raises(ConfigurationError, match="countdown"):
            r.get(timeout=30)


def test_a_replacement_already_in_a_chord_is_refused(app, t):
    sig = t["tests.add"].s(1, 1).set(chord={"group_id": "x", "counts": True})
    task = t["replace.into"]
    with pytest.raises(ConfigurationError, match="part of a chord"):
        task.apply(kwargs={"sig": sig.to_dict()}, throw=True)


def test_replace_raises_the_control_flow_error_in_a_worker(app, t):
    token = set_request(Request(task="replace.into", id="x1", parent_id="p", root_id="r"))
    try:
        with pytest.raises(Replaced) as caught:
            t["replace.into"].replace(t["tests.add"].s(1, 1) | t["tests.add"].s(2))
    finally:
        reset_request(token)
    last = caught.value.sig.tasks[-1]
    assert last.options["task_id"] == "x1"
    token = set_request(Request(task="replace.into", id="x2"))
    try:
        with pytest.raises(Replaced) as caught:
            t["replace.into"].replace(t["tests.add"].s(1, 1).to_dict())  # a dict is taken too
        assert caught.value.sig.options["task_id"] == "x2"
        with pytest.raises(ConfigurationError, match="expected a signature"):
            t["replace.into"].replace("tests.add")
    finally:
        reset_request(token)


def test_run_eagerly_a_replacement_gives_its_result(app, t):
    add, mul = t["tests.add"], t["tests.mul"]
    task = t["replace.into"]
    assert task.apply(kwargs={"sig": add.s(1, 1).to_dict()}).get() == 2
    assert task.apply((3,), {"sig": (add.s(1) | mul.s(10)).to_dict()}).get() == 40
    assert task(sig=add.s(2, 2).to_dict()) == 4  # a direct call
    assert task.apply(kwargs={"sig": group(add.s(1, 1), mul.s(2, 3)).to_dict()}).get() == [2, 6]
    assert task.apply(kwargs={"sig": chord([add.s(1, 1), add.s(2, 2)],
                                           t["tests.xsum"].s()).to_dict()}).get() == 6
    with pytest.raises(NotRegistered):
        task.apply(kwargs={"sig": {"task": "nowhere.registered", "args": [],
                                   "kwargs": {}, "options": {}}}, throw=True)


def test_task_always_eager_runs_the_replacement_here(tmp_path):
    app = make_app("memory://eager-" + tmp_path.name, f"sqlite:///{tmp_path / 'e.sqlite'}",
                   task_always_eager=True)
    try:
        add = app.tasks["tests.add"]
        r = app.tasks["replace.into"].delay(sig=(add.s(1, 1) | add.s(1)).to_dict())
        assert r.get() == 3
    finally:
        app.close()
