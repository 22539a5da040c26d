"""Celery's result API on memory:// + SQLite (issue #15): ResultSet, GroupResult as one,
then(), collect(), maybe_throw(), date_done and the row-backed fields, and signatures
and result handles as values a task returns or takes."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import threading
import uuid

import pytest

from apps.result_tasks import make_app
from apps.tasks import CustomError
from hutch import (
    AsyncClient,
    AsyncResult,
    GroupResult,
    ResultSet,
    Signature,
    chain,
    chord,
    group,
    signature,
)
from hutch.client.handles import iterdeps
from hutch.errors import IncompleteStream, TaskRevokedError, TimeoutError
from hutch.serialization import dumps, loads, to_primitive
from support.waiting import eventually
from support.workers import running_worker

CELERY_KEYS = ["task", "args", "kwargs", "options", "subtask_type", "immutable"]


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   worker_concurrency=2)
    yield app
    app.close()


@pytest.fixture
def t(app):
    return app.tasks


# -- ResultSet ----------------------------------------------------------------------
def test_result_set_membership(app, t):
    a, b = t["tests.add"].delay(1, 1), t["tests.add"].delay(2, 2)
    rs = ResultSet([a], app=app)
    rs.add(b)
    rs.add(b)  # kept once
    assert list(rs) == [a, b] and len(rs) == 2 and rs[1] == b and rs.results == [a, b]
    rs.remove(a.id)  # by id too
    assert rs.results == [b]
    with pytest.raises(KeyError):
        rs.remove(a)
    rs.discard(a)  # no error
    rs.update([a, b])
    assert rs.results == [b, a]
    rs.clear()
    assert len(rs) == 0 and rs.ready() and rs.join() == []


def test_result_set_waits_counts_and_joins_in_order(app, t):
    rs = ResultSet([t["tests.add"].delay(i, i) for i in range(4)])
    assert rs.client is app.client()  # the members' client
    assert rs.waiting() and not rs.ready() and rs.completed_count() == 0
    with running_worker(app):
        assert rs.join(timeout=10) == [0, 2, 4, 6]
    assert rs.ready() and rs.successful() and not rs.failed() and not rs.waiting()
    assert rs.completed_count() == 4 and rs.get() == [0, 2, 4, 6]
    seen = []
    assert rs.join(callback=lambda i, v: seen.append((i, v))) == []
    assert seen == [(r.id, v) for r, v in zip(rs, [0, 2, 4, 6], strict=True)]


def test_result_set_join_native_reports_each_as_it_finishes(app, t):
    gate = t["tests.add"].delay(1, 1)
    rs = ResultSet([gate, t["tests.add"].delay(2, 2)], app=app)
    seen: dict[str, int] = {}
    with running_worker(app):
        assert rs.join_native(timeout=10) == [2, 4]
        assert rs.join_native(timeout=10, callback=seen.__setitem__) == []
    assert seen == {gate.id: 2, rs[1].id: 4} and rs.supports_native_join


def test_result_set_failure_propagates_or_is_returned(app, t):
    ok, bad = t["tests.add"].delay(1, 2), t["tests.fail"].delay(7)
    rs = ResultSet([ok, bad], app=app)
    with running_worker(app):
        with pytest.raises(CustomError):
            rs.join(timeout=10)
    values = rs.join(propagate=False)
    assert values[0] == 3 and isinstance(values[1], CustomError)
    assert rs.failed() and not rs.successful() and rs.completed_count() == 1
    with pytest.raises(CustomError):
        rs.maybe_throw()
    seen = []
    rs.maybe_throw(callback=lambda i, v: seen.append(i), propagate=False)
    assert seen == [ok.id, bad.id]


def test_result_set_revoke_and_nested_sets(app, t):
    inner = group(t["tests.add"].s(i, 1) for i in range(2))()
    single = t["tests.add"].delay(5, 5)
    rs = ResultSet([single, inner], app=app)
    rs.revoke()
    with running_worker(app):
        with pytest.raises(TaskRevokedError):
            rs.join(timeout=10)
        assert eventually(rs.ready, 10)
    assert [r.state for r in [single, *inner]] == ["REVOKED"] * 3


def test_a_result_set_of_eager_results_needs_no_store(app, t):
    rs = ResultSet([t["tests.add"].apply((1, 2)), t["tests.fail"].apply((3,))])
    assert rs.ready() and rs.failed() and rs.completed_count() == 1
    assert rs.join(propagate=False)[0] == 3
    with pytest.raises(CustomError):
        rs.join()


def test_group_result_is_a_result_set(app, t):
    g = group(t["tests.add"].s(i, i) for i in range(3))()
    assert isinstance(g, ResultSet) and isinstance(g, GroupResult)
    with running_worker(app):
        assert g.join(timeout=10) == [0, 2, 4] == g.join_native(timeout=10)
    assert g.completed_count() == 3
    assert GroupResult.restore(g.id, app=app) == g and g != ResultSet(g.results)
    assert ResultSet([g]).client is g.client and ResultSet([g]).join() == [[0, 2, 4]]


# -- then, collect, maybe_throw -----------------------------------------------------
def test_then_calls_back_with_the_handle_once_ready(app, t):
    r = t["tests.add"].delay(2, 3)
    seen = []
    future = r.then(lambda res: seen.append(threading.current_thread().name) or res.get())
    assert not future.done()  # not ready: a waiter thread runs the callback
    with running_worker(app):
        assert future.result(timeout=10) == 5
    assert seen == ["hutch-then"]
    at_once = r.then(lambda res: threading.current_thread().name)
    assert at_once.done() and at_once.result() == threading.current_thread().name


def test_then_errors_go_to_on_error_and_the_future(app, t):
    with running_worker(app):
        r = t["tests.add"].delay(1, 1)
        r.get(timeout=10)
    errors = []
    future = r.then(lambda res: 1 / 0, on_error=errors.append)
    assert isinstance(errors[0], ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        future.result()


def test_then_on_a_result_set(app, t):
    rs = ResultSet([t["tests.add"].delay(i, 1) for i in range(3)], app=app)
    future = rs.then(lambda s: s.completed_count())
    with running_worker(app):
        assert future.result(timeout=10) == 3


def test_collect_walks_the_result_and_its_children(app, t):
    parent = t["results.spawn_many"].delay(3)
    with running_worker(app):
        assert parent.get(timeout=10) == 3
        eventually(lambda: len(parent.children) == 3 and all(c.ready() for c in parent.children),
                   30)
        collected = list(parent.collect(timeout=10))
    assert collected[0] == (parent, 3)
    assert sorted(v for _, v in collected[1:]) == [100, 101, 102]


def test_collect_stops_at_a_result_not_ready_unless_intermediate(app, t):
    r = t["tests.add"].delay(1, 1)
    with pytest.raises(TimeoutError):  # collect() gets each value: nothing runs here
        next(r.collect(timeout=0.01))
    rs = ResultSet([r], app=app)
    with pytest.raises(IncompleteStream):
        list(iterdeps(rs))
    assert list(iterdeps(rs, intermediate=True)) == [rs]


def test_maybe_throw_reads_without_waiting(app, t):
    pending = t["tests.add"].delay(1, 1)
    assert pending.maybe_throw() is None  # PENDING: nothing to throw, no wait
    bad = t["tests.fail"].delay(4)
    with running_worker(app):
        assert pending.get(timeout=10) == 2
        with pytest.raises(CustomError):
            bad.get(timeout=10)
    with pytest.raises(CustomError):
        bad.maybe_throw()
    assert isinstance(bad.maybe_throw(propagate=False), CustomError)
    seen = []
    assert pending.maybe_reraise(callback=lambda i, v: seen.append((i, v))) == 2
    assert seen == [(pending.id, 2)]
    eager = t["tests.fail"].apply((1,))
    with pytest.raises(CustomError):
        eager.maybe_throw()


# -- the row-backed fields ------------------------------------------------------------
def test_date_done_and_the_extended_fields_come_from_the_row(app, t):
    r = t["tests.add"].apply_async((2, 3), queue="celery")
    assert r.date_done is None and r.worker is None
    before = dt.datetime.now(dt.timezone.utc)
    with running_worker(app) as worker:
        assert r.get(timeout=10) == 5
    assert r.name == "tests.add" and r.args == [2, 3] and r.kwargs == {}
    assert r.queue == "celery" and r.retries == 0 and r.worker == worker.name
    assert r.date_done.tzinfo is not None and r.date_done >= before - dt.timedelta(seconds=1)
    unknown = app.AsyncResult(str(uuid.uuid4()))
    assert (unknown.name, unknown.args, unknown.worker, unknown.retries,
            unknown.date_done) == (None, None, None, None, None)


def test_retries_counts_the_attempts(app, t):
    r = t["tests.retry_once"].delay(0.05)
    with running_worker(app):
        assert r.get(timeout=10) == 1
    assert r.retries == 1


# -- signatures and handles as values -------------------------------------------------
def test_a_signature_has_an_id_once_frozen(app, t):
    add = t["tests.add"]
    sig = add.s(1, 1)
    assert sig.id is None
    assert sig.freeze() == sig.id
    c = add.s(1, 1) | add.s(2)
    assert c.id is None and c.freeze() == c.id == c.tasks[-1].id
    ch = chord([add.s(1, 1)], t["tests.echo"].s())
    assert ch.freeze() == ch.id == ch.body.id
    g = group(add.s(1, 1))
    assert g.freeze() == g.id
    with running_worker(app):
        assert sig.apply_async().id == sig.id
        assert c.apply_async().id == c.id


def test_a_task_returns_a_signature_as_a_celery_dict(app, t):
    r = t["results.make_sig"].delay(5)
    with running_worker(app):
        data = r.get(timeout=10)
        assert set(data) == set(CELERY_KEYS) and data["task"] == "tests.add"
        assert (data["args"], data["kwargs"], data["subtask_type"], data["immutable"]) == (
            [5, 1], {}, None, False)
        again = signature(data, app=app)
        assert isinstance(again, Signature) and again.id == data["options"]["task_id"]
        assert again.delay().get(timeout=10) == 6


def test_a_task_returns_a_list_of_signatures(app, t):
    r = t["results.make_sigs"].delay(2)
    with running_worker(app):
        sigs = [signature(d, app=app) for d in r.get(timeout=10)]
        assert [type(s) for s in sigs] == [Signature, Signature, chain, group]
        assert sigs[1].immutable and [s["subtask_type"] for s in r.result] == [
            None, None, "chain", "group"]
        assert [s.delay().get(timeout=10) for s in sigs] == [3, 4, 9, [0, 2]]


def test_handles_travel_as_ids(app, t):
    with running_worker(app):
        child = t["results.send_child"].delay(4)
        child_id = child.get(timeout=10)
        assert isinstance(child_id, str) and app.AsyncResult(child_id).get(timeout=10) == 8
        group_id = t["results.send_group"].delay(3).get(timeout=10)
        assert GroupResult.restore(group_id, app=app).get(timeout=10) == [0, 2, 4]
        described = t["results.describe"].delay(app.AsyncResult(child_id)).get(timeout=10)
        assert described == ["str", child_id]
        sig = t["tests.add"].s(1, 2)
        assert t["results.describe"].delay(sig).get(timeout=10) == ["dict", sig.__json__()]


def test_serialization_sends_values_by_their_json_form(app, t):
    sig, handle = t["tests.add"].s(1, (2, 3)), AsyncResult("abc", app.client())
    rs = ResultSet([handle, GroupResult("g1", [], client=app.client())])
    assert to_primitive([handle, rs]) == ["abc", ["abc", "g1"]]
    body, ctype, enc = dumps({"s": sig}, "msgpack")
    assert loads(body, ctype, enc)["s"]["args"] == [1, (2, 3)]


# -- the asyncio handles ---------------------------------------------------------------
def test_async_handles_read_the_same_fields_and_wait_the_same_way(app, t):
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            r = await client.submit("tests.add", 2, 5)
            seen = []
            later = r.then(lambda res: seen.append(res) or "called")
            assert await later == "called" and seen == [r]
            details = await r.details()
            assert (details.state, details.name, details.args, details.kwargs,
                    details.queue, details.retries) == ("SUCCESS", "tests.add", [2, 5], {},
                                                        "celery", 0)
            assert details.worker and await r.date_done() == details.date_done
            assert await r.successful() and not await r.failed()
            assert await r.maybe_throw() == 7
            bad = await client.submit("tests.fail", 3)
            errors = []
            with pytest.raises(ZeroDivisionError):
                await bad.then(lambda res: 1 / 0, on_error=errors.append)
            assert isinstance(errors[0], ZeroDivisionError)
            with pytest.raises(CustomError):
                await bad.maybe_throw()
            g = await client.apply_workflow(group(t["tests.add"].s(i, i) for i in range(3)))
            assert await g.join(timeout=10) == [0, 2, 4] and await g.completed_count() == 3
            assert await g.then(lambda grp: grp.id) == g.id
            spawn = await client.submit("results.spawn_many", 2)
            await spawn.get(timeout=10)
            store = app.client().store
            await asyncio.to_thread(eventually, lambda: len(store.children(spawn.id)) == 2, 30)
            return [v async for _, v in spawn.collect(timeout=10)]

    with running_worker(app):
        collected = asyncio.run(scenario())
    assert collected[0] == 2 and sorted(collected[1:]) == [100, 101]


def test_pickle_sends_handles_as_ids_too_and_copies_stay_handles(app, t):
    handle = t["tests.add"].delay(1, 1)
    rs = ResultSet([handle, GroupResult("g1", [handle], client=app.client())])
    body, ctype, enc = dumps([handle, rs], "pickle")
    assert loads(body, ctype, enc) == [handle.id, [handle.id, "g1"]]
    assert copy.copy(handle) == handle and copy.deepcopy(rs).results == rs.results
    assert copy.deepcopy(handle).client is handle.client
    copied = copy.copy(rs)
    copied.clear()
    assert len(rs) == 2


def test_an_eager_group_has_the_result_set_api(app, t):
    app.conf.task_always_eager = True
    g = group(t["tests.add"].s(i, i) for i in range(3)).delay()
    seen = []
    assert g.join(callback=lambda i, v: seen.append(v)) == [] and seen == [0, 2, 4]
    assert g.join_native() == [0, 2, 4] and g.completed_count() == 3
    rs = ResultSet([g, t["tests.fail"].apply((1,))])
    assert rs.ready() and rs.failed() and rs.then(lambda s: len(s)).result() == 2
    with pytest.raises(CustomError):
        rs.maybe_throw()
