"""task.apply(), EagerResult, task_always_eager and task_eager_propagates (hutch.client.eager):
tasks run in the calling thread, nothing is published and no row is written."""

import pytest

from apps.tasks import CustomError
from hutch import AsyncResult, EagerResult, GroupResult, chain, chord, group, signature
from hutch.client.eager import EagerGroupResult
from hutch.config import Settings
from hutch.errors import ConfigurationError, MaxRetriesExceededError, NotRegistered


def _nothing_sent_or_stored(app, task_id):
    """The client never opened a broker connection, and the database has no row."""
    client = app.client()
    assert client._broker is None and client._pending is None
    assert client.store.get(task_id) is None


def test_apply_returns_an_eager_result_with_the_value(memory_app):
    r = memory_app.tasks["tests.add"].apply((2, 3))
    assert isinstance(r, EagerResult) and isinstance(r, AsyncResult)
    assert r.get() == r.wait() == r.result == r.info == 5
    assert (r.state, r.status, r.name) == ("SUCCESS", "SUCCESS", "tests.add")
    assert r.ready() and r.successful() and not r.failed()
    assert r.traceback is None and r.parent is None and r.children == []
    assert r.date_done is not None
    _nothing_sent_or_stored(memory_app, r.id)


def test_kwargs_and_a_chosen_task_id(memory_app):
    r = memory_app.tasks["tests.add"].apply(kwargs={"x": 1, "y": 2}, task_id="eager-1")
    assert (r.id, r.get()) == ("eager-1", 3)


def test_an_exception_is_stored_by_default(memory_app):
    r = memory_app.tasks["tests.fail"].apply(("broken",))
    assert r.failed() and not r.successful() and r.ready()
    assert r.state == "FAILURE"
    assert isinstance(r.result, CustomError) and str(r.result) == "broken"
    assert "CustomError: broken" in r.traceback
    assert r.get(propagate=False) is r.result
    with pytest.raises(CustomError, match="broken"):
        r.get()
    _nothing_sent_or_stored(memory_app, r.id)


def test_throw_or_task_eager_propagates_raise_at_once(memory_app):
    fail = memory_app.tasks["tests.fail"]
    with pytest.raises(CustomError, match="thrown"):
        fail.apply(("thrown",), throw=True)
    memory_app.conf.task_eager_propagates = True
    with pytest.raises(CustomError, match="propagated"):
        fail.apply(("propagated",))
    assert fail.apply(("kept",), throw=False).failed()


def test_a_bound_task_sees_an_eager_request_with_its_id(memory_app):
    @memory_app.task(name="tests.eager_request", bind=True)
    def eager_request(self, x):
        r = self.request
        return {"id": r.id, "is_eager": r.is_eager, "retries": r.retries,
                "args": list(r.args), "queue": r.queue}

    got = eager_request.apply((7,), task_id="the-id", queue="reports").get()
    assert got == {"id": "the-id", "is_eager": True, "retries": 0, "args": [7],
                   "queue": "reports"}


def test_retry_runs_again_at_once_up_to_max_retries(memory_app):
    r = memory_app.tasks["tests.flaky"].apply((2,))
    assert (r.get(), r.retries) == (2, 2)
    # a countdown of an hour is not waited for
    assert memory_app.tasks["tests.retry_once"].apply((3600,)).get() == 1


def test_retries_that_run_out_fail_as_a_worker_would(memory_app):
    gave_up = memory_app.tasks["tests.always_retry"].apply()
    assert gave_up.failed() and isinstance(gave_up.result, MaxRetriesExceededError)
    assert gave_up.retries == 1
    auto = memory_app.tasks["tests.autoretry"].apply()
    assert isinstance(auto.result, CustomError) and auto.retries == 1
    with pytest.raises(MaxRetriesExceededError):
        memory_app.tasks["tests.always_retry"].apply(throw=True)


def test_a_call_that_does_not_fit_the_function_is_a_type_error(memory_app):
    with pytest.raises(TypeError, match=r"tests\.add\(1\)"):
        memory_app.tasks["tests.add"].apply((1,))
    with pytest.raises(TypeError, match="z"):
        memory_app.tasks["tests.add"].apply((1, 2), {"z": 3})


def test_an_async_task_is_run_to_its_value(memory_app):
    assert memory_app.tasks["tests.asleep"].apply((0,)).get() == 0


@pytest.fixture
def seen(memory_app):
    """``(calls, note)``: tests.note(*args) appends its arguments to ``calls``."""
    calls = []

    @memory_app.task(name="tests.note")
    def note(*args):
        calls.append(args)
        return list(args)

    return calls, note


def test_apply_runs_link_and_link_error_callbacks_here(memory_app, seen):
    calls, note = seen
    add, fail = memory_app.tasks["tests.add"], memory_app.tasks["tests.fail"]
    r = add.apply((1, 2), link=[note.s("value"), note.si("fixed")], link_error=note.s("err"))
    assert r.get() == 3 and calls == [(3, "value"), ("fixed",)]
    calls.clear()
    failed = fail.apply(("x",), link=note.s(), link_error=note.s("err"))
    assert failed.failed() and calls == [(failed.id, "err")]
    calls.clear()
    with pytest.raises(CustomError):  # raised at once: the errbacks still ran before
        fail.apply(("y",), link_error=note.s(), throw=True)
    assert len(calls) == 1
    _nothing_sent_or_stored(memory_app, r.id)


def test_revoke_marks_the_result_and_get_raises(memory_app):
    r = memory_app.tasks["tests.add"].apply((1, 1))
    r.revoke()
    assert r.state == "REVOKED"
    with pytest.raises(Exception, match="revoked"):
        r.get()


def test_always_eager_runs_delay_here_and_sends_nothing(memory_app):
    memory_app.conf.task_always_eager = True
    add = memory_app.tasks["tests.add"]
    for r, value in ((add.delay(2, 2), 4), (add.apply_async((1, 2), countdown=60), 3),
                     (add.s(5, 5).delay(), 10),
                     (memory_app.client().submit("tests.add", 3, 3), 6),
                     (memory_app.send_task("tests.add", (4, 4)), 8)):
        assert isinstance(r, EagerResult) and r.get() == value
        _nothing_sent_or_stored(memory_app, r.id)


def test_always_eager_keeps_or_propagates_failures(memory_app):
    memory_app.conf.task_always_eager = True
    fail = memory_app.tasks["tests.fail"]
    assert isinstance(fail.delay("kept").result, CustomError)
    memory_app.conf.task_eager_propagates = True
    with pytest.raises(CustomError, match="raised"):
        fail.delay("raised")
    with pytest.raises(TypeError):
        memory_app.tasks["tests.add"].delay(1, 2, 3)


def test_always_eager_refuses_a_task_it_has_no_code_for(memory_app):
    memory_app.conf.task_always_eager = True
    with pytest.raises(NotRegistered, match="tests.nosuchtask"):
        memory_app.client().submit("tests.nosuchtask", 1)
    with pytest.raises(NotRegistered, match="tests.nosuchtask"):
        group(memory_app.tasks["tests.add"].s(1, 1), signature("tests.nosuchtask")).delay()
    assert memory_app.client()._broker is None


def test_always_eager_runs_a_group_into_a_group_result(memory_app):
    memory_app.conf.task_always_eager = True
    add = memory_app.tasks["tests.add"]
    g = group(add.s(i, i) for i in range(4)).apply_async(task_id="the-group")
    assert isinstance(g, EagerGroupResult) and isinstance(g, GroupResult)
    assert g.id == "the-group" and len(g) == 4
    assert g.get() == g.join() == [0, 2, 4, 6]
    assert all(isinstance(r, EagerResult) for r in g.results)
    assert g.ready() and g.successful() and not g.failed() and g.completed_count() == 4
    assert group(add.s(1), add.s(2)).delay(10).get() == [11, 12]  # args go to every member
    assert memory_app.tasks["tests.mul"].chunks([(1, 2), (3, 4), (5, 6)], 2).delay().get() \
        == [[2, 12], [30]]
    for r in g.results:
        _nothing_sent_or_stored(memory_app, r.id)


def test_an_eager_group_keeps_or_raises_a_members_failure(memory_app):
    memory_app.conf.task_always_eager = True
    add, fail = memory_app.tasks["tests.add"], memory_app.tasks["tests.fail"]
    g = group(add.s(1, 1), fail.s("member")).delay()
    assert g.failed() and not g.successful() and g.ready() and g.completed_count() == 1
    with pytest.raises(CustomError, match="member"):
        g.get()
    values = g.get(propagate=False)
    assert values[0] == 2 and isinstance(values[1], CustomError)
    g.revoke()
    assert [r.state for r in g.results] == ["REVOKED", "REVOKED"]


def test_always_eager_runs_a_chord_body_with_the_header_values(memory_app):
    memory_app.conf.task_always_eager = True
    add, xsum = memory_app.tasks["tests.add"], memory_app.tasks["tests.xsum"]
    r = chord([add.s(1, 1), add.s(2, 2)], xsum.s()).apply_async(task_id="body")
    assert isinstance(r, EagerResult) and (r.id, r.get()) == ("body", 6)
    assert isinstance(r.parent, EagerGroupResult) and r.parent.get() == [2, 4]
    assert (group(add.s(1, 1), add.s(2, 2)) | xsum.s()).delay().get() == 6


def test_a_failed_header_fails_the_chord_and_calls_its_errbacks(memory_app, seen):
    calls, note = seen
    memory_app.conf.task_always_eager = True
    add, fail, xsum = (memory_app.tasks[n] for n in ("tests.add", "tests.fail", "tests.xsum"))
    body = xsum.s()
    body.link_error(note.s("chord failed"))
    r = chord([add.s(1, 1), fail.s("header")], body).delay()
    assert r.failed() and isinstance(r.result, CustomError)
    with pytest.raises(CustomError, match="header"):
        r.get()
    assert calls == [(r.id, "chord failed")]
    memory_app.conf.task_eager_propagates = True
    with pytest.raises(CustomError, match="header"):
        chord([fail.s("header")], xsum.s()).delay()


def test_always_eager_runs_chains_holding_groups_and_chords(memory_app):
    memory_app.conf.task_always_eager = True
    add, mul, xsum = (memory_app.tasks[n] for n in ("tests.add", "tests.mul", "tests.xsum"))
    # a task, then a group fed its value, gathered by a chord body, then one more step
    r = chain(add.s(1, 1), group(mul.s(10), mul.s(100)), xsum.s(), add.s(5)).delay()
    assert r.get() == 225
    assert r.parent.get() == 220 and r.parent.parent.get() == [20, 200]
    assert r.parent.parent.parent.get() == 2  # as the handles of the same chain sent
    # a chain ending in a group gives its group result
    g = chain(add.s(2, 2), group(add.s(1), add.s(2))).delay()
    assert isinstance(g, EagerGroupResult) and g.get() == [5, 6] and g.parent.get() == 4
    # a chord whose body is a chain
    c = chord([add.s(1, 1), add.s(1, 1)], xsum.s() | mul.s(3)).delay()
    assert c.get() == 12


def test_workflow_callbacks_run_where_a_worker_would_run_them(memory_app, seen):
    calls, note = seen
    memory_app.conf.task_always_eager = True
    add, fail = memory_app.tasks["tests.add"], memory_app.tasks["tests.fail"]
    # a chain's callback runs once, with the last value; its errback on the failed step
    chain(add.s(1, 1), add.s(1)).apply_async(link=note.s("done"))
    assert calls == [(3, "done")]
    calls.clear()
    with pytest.raises(CustomError):
        chain(add.s(1, 1), fail.si("two"), add.s(1)).apply_async(link_error=note.s("err"))
    assert len(calls) == 1 and calls[0][1] == "err"
    calls.clear()
    # a group's callback runs for each member; a callback may be a workflow itself
    group(add.s(1, 1), add.s(2, 2)).apply_async(link=note.s("member"))
    assert calls == [(2, "member"), (4, "member")]
    calls.clear()
    add.apply_async((1, 1), link=group(note.s("a"), note.s("b")))
    assert calls == [(2, "a"), (2, "b")]


def test_always_eager_runs_a_chain_step_by_step(memory_app):
    memory_app.conf.task_always_eager = True
    add, mul = memory_app.tasks["tests.add"], memory_app.tasks["tests.mul"]
    r = (add.s(1, 2) | mul.s(10) | add.si(0, 5) | add.s(1)).apply_async()
    assert isinstance(r, EagerResult) and r.get() == 6
    assert [r.parent.get(), r.parent.parent.get(), r.parent.parent.parent.get()] == [5, 30, 3]
    assert chain(add.s(), mul.s(2)).delay(2, 3).get() == 10
    _nothing_sent_or_stored(memory_app, r.id)


def test_always_eager_chain_raises_a_failed_step(memory_app):
    memory_app.conf.task_always_eager = True
    fail, add = memory_app.tasks["tests.fail"], memory_app.tasks["tests.add"]
    with pytest.raises(CustomError, match="midway"):
        chain(fail.s("midway"), add.s(1)).apply_async()


def test_the_settings_default_off_and_come_from_the_environment(monkeypatch):
    conf = Settings.build()
    assert conf.task_always_eager is False and conf.task_eager_propagates is False
    monkeypatch.setenv("HUTCH_TASK_ALWAYS_EAGER", "true")
    monkeypatch.setenv("HUTCH_TASK_EAGER_PROPAGATES", "1")
    conf = Settings.build()
    assert conf.task_always_eager is True and conf.task_eager_propagates is True
    with pytest.raises(ConfigurationError, match="task_always_eager"):
        Settings.build(task_always_eager="sometimes")
