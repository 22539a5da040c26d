"""task.apply(), EagerResult, task_always_eager and task_eager_propagates (hutch.client.eager):
tasks run in the calling thread, nothing is published and no row is written."""

import pytest

from apps.tasks import CustomError
from hutch import AsyncResult, EagerResult, chain, chord, group
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


def test_callbacks_are_refused_not_dropped(memory_app):
    add = memory_app.tasks["tests.add"]
    with pytest.raises(ConfigurationError, match="link"):
        add.apply((1, 2), link=add.s(3))


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


def test_always_eager_refuses_what_it_cannot_run_here(memory_app):
    memory_app.conf.task_always_eager = True
    add = memory_app.tasks["tests.add"]
    with pytest.raises(NotRegistered, match="tests.nosuchtask"):
        memory_app.client().submit("tests.nosuchtask", 1)
    for workflow in (group(add.s(1, 1), add.s(2, 2)), chord([add.s(1, 1)], add.s(2)),
                     chain(add.s(1, 1), group(add.s(1), add.s(2)))):
        with pytest.raises(ConfigurationError, match="task_always_eager"):
            workflow.apply_async()
    assert memory_app.client()._broker is None


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
