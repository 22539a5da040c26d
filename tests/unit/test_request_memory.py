"""Reject, Ignore, ``self.retry()``'s keywords and ``self.request``'s Celery fields, run by a
worker on memory:// + SQLite (tests/integration/test_request_rabbitmq.py: RabbitMQ +
PostgreSQL with prefork)."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid

import pytest

from apps.request_tasks import make_app
from hutch import IGNORED, REJECTED, Ignore, Reject, Retry, chain, chord, exceptions
from hutch.current import reset_request, set_request
from hutch.errors import ConfigurationError
from hutch.messages import DEAD_REASON_HEADER, Request, TaskMessage
from hutch.ops.deadletters import list_dead, replay
from hutch.results.records import ALL_STATES, READY_STATES, STARTED, STATE_RANK, StateChange
from hutch.results.store import supersedes
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   worker_concurrency=2, worker_max_lost_attempts=3,
                   task_queues={"urgent": {"max_priority": 9}})
    yield app
    app.close()


def row(app, task_id):
    return app.client().store.get(task_id)


def dead(app, queue="celery"):
    return app.client().broker.dead_letters(queue)


# -- Reject ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tests.request.reject", "tests.request.reject_early"])
def test_reject_dead_letters_the_message_with_its_reason_and_the_row_says_rejected(app, name):
    """With acks_late as with early ack: the copy in the dead-letter queue carries the
    reason, and get() raises the Reject."""
    with running_worker(app):
        r = app.tasks[name].delay("bad input")
        with pytest.raises(Reject, match="bad input"):
            r.get(timeout=10)
        letters = eventually(lambda: dead(app))
    assert [w.message_id for w in letters] == [r.id]
    assert letters[0].headers[DEAD_REASON_HEADER] == "hutch.errors.Reject: bad input"
    record = row(app, r.id)
    assert (record.state, record.exception_type, record.exception_message) == \
        (REJECTED, "hutch.errors.Reject", "bad input")
    assert app.client().broker.queue_stats("celery").ready == 0


def test_a_rejected_message_is_listed_and_replayed_like_any_dead_letter(app):
    with running_worker(app):
        rejected = app.tasks["tests.request.reject"].delay("to replay")
        with pytest.raises(Reject):
            rejected.get(timeout=10)
        [letter] = eventually(lambda: list_dead(app.client(), "celery"))
        assert letter.task_id == rejected.id and "hutch.errors.Reject: to replay" in letter.reason
        assert replay(app.client(), "celery") == [rejected.id]
        assert eventually(lambda: row(app, rejected.id).state == REJECTED and
                          row(app, rejected.id).worker is not None and
                          len(dead(app)) == 1)


def test_a_reject_without_a_reason_says_so_in_the_dead_letter(app):
    with running_worker(app):
        r = app.tasks["tests.request.reject"].delay()
        with pytest.raises(Reject):
            r.get(timeout=10)
        letters = eventually(lambda: dead(app))
    assert letters[0].headers[DEAD_REASON_HEADER] == "hutch.errors.Reject: rejected by the task"
    assert row(app, r.id).state == REJECTED


def test_reject_with_requeue_runs_the_message_again(app, tmp_path):
    with running_worker(app):
        r = app.tasks["tests.request.reject_once"].delay(str(tmp_path / "marker"))
        assert r.get(timeout=10) == "ran again"
    assert row(app, r.id).state == "SUCCESS" and dead(app) == []


@pytest.mark.parametrize("name", ["tests.request.reject", "tests.request.reject_early"])
def test_a_task_that_always_requeues_is_dead_lettered_at_the_lost_attempts_limit(app, name):
    with running_worker(app):
        r = app.tasks[name].delay("busy", requeue=True)
        with pytest.raises(Reject, match="requeued 3 times"):
            r.get(timeout=10)
        letters = eventually(lambda: dead(app))
    assert len(letters) == 1 and "worker_max_lost_attempts=3" in letters[0].headers[
        DEAD_REASON_HEADER]
    assert "last reason: busy" in row(app, r.id).exception_message


def test_a_rejected_chain_step_fails_the_steps_after_it(app):
    t = app.tasks
    r = chain(t["tests.add"].s(1, 1), t["tests.request.reject"].si("no"), t["tests.add"].s(1))()
    with running_worker(app):
        with pytest.raises(Reject):
            r.get(timeout=10)
    assert row(app, r.parent.id).state == REJECTED
    assert row(app, r.id).state == "FAILURE"


# -- Ignore ---------------------------------------------------------------------------

def test_ignore_acknowledges_sends_no_callback_and_the_row_says_ignored(app):
    t = app.tasks
    with running_worker(app):
        r = t["tests.request.ignore"].apply_async(link=t["tests.add"].s(1))
        with pytest.raises(Ignore):
            r.get(timeout=10)
        marker = t["tests.add"].delay(0, 0)
        assert marker.get(timeout=10) == 0
    record = row(app, r.id)
    assert (record.state, record.exception_type) == (IGNORED, "hutch.errors.Ignore")
    assert r.children == [] and dead(app) == []
    assert app.client().broker.queue_stats("celery").ready == 0


def test_new_states_are_final_and_keep_their_place():
    assert {REJECTED, IGNORED} <= READY_STATES and {REJECTED, IGNORED} <= set(ALL_STATES)
    assert STATE_RANK[REJECTED] == STATE_RANK[IGNORED] == STATE_RANK["FAILURE"]
    late = StateChange(task_id="x", state=STARTED, retries=5)
    assert not supersedes(late, REJECTED, 0) and not supersedes(late, IGNORED, 0)


# -- self.retry() keywords ------------------------------------------------------------

def test_retry_changes_args_kwargs_queue_expires_and_priority(app):
    before = dt.datetime.now(dt.timezone.utc)
    options = {"args": [7], "kwargs": {"retry": {}, "k": 1}, "queue": "urgent",
               "expires": 60, "priority": 5}
    with running_worker(app, queues=["celery", "urgent"]):
        r = app.tasks["tests.request.retry_with"].delay(1, retry=options)
        got = r.get(timeout=10)
    assert got["args"] == [7] and got["kwargs"] == {"retry": {}, "k": 1}
    assert (got["retries"], got["queue"], got["priority"]) == (1, "urgent", 5)
    expires = dt.datetime.fromisoformat(got["expires"])
    assert before + dt.timedelta(seconds=59) < expires < before + dt.timedelta(seconds=70)
    record = row(app, r.id)
    assert (record.queue, record.retries) == ("urgent", 1)


def test_retry_keeps_what_it_is_not_given(app):
    with running_worker(app):
        got = app.tasks["tests.request.retry_with"].apply_async(
            (1, 2), {"retry": {}}, expires=300).get(timeout=10)
    assert got["args"] == [1, 2] and got["queue"] == "celery" and got["expires"]


def test_retry_with_an_expiry_passed_revokes_the_next_attempt(app):
    with running_worker(app):
        r = app.tasks["tests.request.retry_with"].delay(retry={"expires": -1})
        assert eventually(lambda: (row(app, r.id) or StateChange("x", "PENDING")).state
                          == "REVOKED")
    assert row(app, r.id).exception_message == "expired"


def test_retry_throw_false_returns_the_retry_and_the_worker_retries_after_the_run(app):
    with running_worker(app):
        r = app.tasks["tests.request.retry_later"].delay()
        assert r.get(timeout=10) == "second attempt"
    assert row(app, r.id).retries == 1


@pytest.mark.parametrize(("options", "field"), [
    ({"args": "x"}, "args"), ({"kwargs": [1]}, "kwargs"), ({"queue": 3}, "queue"),
    ({"expires": "soon"}, "expires"), ({"priority": 5}, "priority"),
    ({"priority": 50, "queue": "urgent"}, "priority"), ({"routing_key": "x"}, "routing_key"),
])
def test_a_bad_retry_keyword_fails_the_call_naming_it(app, options, field):
    """Outside a worker too (the check is in the task's own process, at the call)."""
    token = set_request(Request(id="r", task="tests.request.retry_with"))
    try:
        with pytest.raises(ConfigurationError, match=field):
            app.tasks["tests.request.retry_with"].retry(**options)
    finally:
        reset_request(token)


def test_retry_keywords_apply_eagerly_too(app):
    result = app.tasks["tests.request.retry_with"].apply(
        (1,), {"retry": {"args": [2], "kwargs": {"retry": {}}}})
    assert result.get()["args"] == [2] and result.get()["is_eager"] is True
    assert app.tasks["tests.request.retry_later"].apply().get() == "second attempt"
    with pytest.raises(Retry):  # outside any run, retry(throw=False) has no run to follow
        app.tasks["tests.request.retry_later"].retry(throw=False)


# -- self.request ---------------------------------------------------------------------

def test_the_request_shows_celerys_fields_inside_a_worker(app):
    t = app.tasks
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=200)
    with running_worker(app) as worker:
        r = t["tests.request.seen"].apply_async(
            (1, "a"), {"k": 2}, eta=eta, expires=300, time_limit=30, soft_time_limit=20,
            link=t["tests.add"].s(1), link_error=t["tests.errback"].s())
        got = r.get(timeout=10)
    assert (got["id"], got["args"], got["kwargs"], got["retries"]) == (r.id, [1, "a"], {"k": 2}, 0)
    assert got["eta"] == eta.isoformat() and got["expires"] and got["is_eager"] is False
    assert got["hostname"] == worker.name
    assert got["delivery_info"] == {"exchange": "", "routing_key": "celery", "priority": None,
                                    "redelivered": False}
    assert got["properties"]["content_type"] == "application/json"
    assert (got["correlation_id"], got["reply_to"]) == (r.id, None)
    assert got["timelimit"] == [30, 20] and got["ignore_result"] is False
    assert [c["task"] for c in got["callbacks"]] == ["tests.add"]
    assert [c["task"] for c in got["errbacks"]] == ["tests.errback"]
    assert got["origin"] and got["group"] is None and got["chord"] is None
    assert got["root_id"] is None and got["parent_id"] is None


def test_the_request_of_a_workflow_member_names_its_group_chord_and_parents(app):
    t = app.tasks
    with running_worker(app):
        r = chain(t["tests.add"].s(1, 1), t["tests.request.seen"].s())()
        got = r.get(timeout=10)
        header = chord([t["tests.request.seen"].si(2)], t["tests.echo"].s())().get(timeout=10)
    assert (got["parent_id"], got["root_id"]) == (r.parent.id, r.parent.id)
    [member] = header
    assert member["group"] and member["chord"]["group_id"] == member["group"]


def test_an_eager_request_has_sensible_values(app):
    got = app.tasks["tests.request.seen"].apply((1,), priority=3, queue="urgent").get()
    assert got["is_eager"] is True and got["hostname"]
    assert got["delivery_info"] == {"exchange": None, "routing_key": "urgent", "priority": 3,
                                    "redelivered": False, "is_eager": True}
    assert got["correlation_id"] == got["id"] and got["callbacks"] is None
    direct = app.tasks["tests.request.seen"](5)  # a plain call
    assert direct["is_eager"] is True and direct["args"] == [5]


def test_request_of_copies_the_message_and_keeps_the_delivery():
    class Delivery:
        exchange, routing_key, queue, redelivered = "p.celery", "celery", "celery", True
        wire = TaskMessage(task="t", id="i").encode()

    request = Request.of(TaskMessage(task="t", id="i", priority=4), "w1", Delivery())
    assert request.delivery_info == {"exchange": "p.celery", "routing_key": "celery",
                                     "priority": 4, "redelivered": True}
    assert request.properties["content_encoding"] == "utf-8"
    assert Request.of(TaskMessage(task="t", id="i"), "w1").delivery is None


def test_reject_and_ignore_are_importable_where_celery_users_look():
    assert (exceptions.Reject, exceptions.Ignore) == (Reject, Ignore)
    exc = Reject("why", requeue=True)
    assert (exc.reason, exc.requeue, str(exc)) == ("why", True, "why")
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.reason, copy.requeue) == ("why", True)


def test_reject_and_ignore_in_an_eager_apply_are_kept_in_the_result(app):
    rejected = app.tasks["tests.request.reject"].apply(("no",))
    assert rejected.state == REJECTED and isinstance(rejected.result, Reject)
    with pytest.raises(Reject):
        rejected.get()
    ignored = app.tasks["tests.request.ignore"].apply(throw=True)  # never raised here
    assert ignored.state == IGNORED
