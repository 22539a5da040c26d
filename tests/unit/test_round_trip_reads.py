"""get() on a task this client sent while its waiter listened skips the read before
waiting (issue #16): the task cannot be finished before its notice. Everything else
(a notice already in, a notice lost, a handle from an id) reads first, as before.
A notice that carries the task's SUCCESS (a small result, as stored) saves the read
after it too; a larger result, a failure or an older worker's notice is read."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from apps.result_tasks import make_app
from hutch import Client, ResultSet
from hutch.client import handles
from hutch.client.waiter import ANNOUNCED_MAX, CompletionWaiter
from hutch.errors import TimeoutError
from hutch.messages import (
    CARRY_MAX,
    NOTICE_CARRY_MAX,
    Carried,
    Notice,
    decode_notice,
    encode_notice,
    read_notice,
)
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   worker_concurrency=2)
    yield app
    app.close()


class Spy:
    """Counts the store's reads and the waits on a get()'s wake-up event."""

    def __init__(self, client, monkeypatch) -> None:
        self.reads = self.waits = 0
        get_many, watch_many = client.store.get_many, client.waiter.watch_many

        def counted_get_many(ids):
            self.reads += 1
            return get_many(ids)

        def counted_watch_many(ids, own=False):
            event = watch_many(ids, own)
            wait = event.wait

            def counted_wait(timeout=None):
                self.waits += 1
                return wait(timeout)

            event.wait = counted_wait
            return event

        monkeypatch.setattr(client.store, "get_many", counted_get_many)
        monkeypatch.setattr(client.waiter, "watch_many", counted_watch_many)

    def reset(self) -> None:
        self.reads = self.waits = 0


def _subscribed(app):
    client = app.client()
    assert app.tasks["tests.add"].delay(0, 0).get(timeout=30) == 0  # the waiter subscribes
    return client


def test_a_task_sent_while_subscribed_is_never_read_when_its_notice_carries_it(
        app, monkeypatch):
    with running_worker(app):
        client = _subscribed(app)
        spy = Spy(client, monkeypatch)
        for i in range(5):
            spy.reset()
            r = app.tasks["tests.add"].delay(i, 1)
            assert r.get(timeout=30) == i + 1
            assert spy.reads == 0 and spy.waits >= 1  # the notice carried the result
        spy.reset()
        value = {"b": [1, 2.5, None], "a": "text"}
        assert app.tasks["tests.echo"].delay(value).get(timeout=30) == value
        assert spy.reads == 0


def test_a_large_result_or_a_failure_is_read_once_after_its_notice(app, monkeypatch):
    with running_worker(app):
        client = _subscribed(app)
        spy = Spy(client, monkeypatch)
        large = "x" * (CARRY_MAX + 1)
        assert app.tasks["tests.echo"].delay(large).get(timeout=30) == large
        assert spy.reads == 1 and spy.waits >= 1
        spy.reset()
        with pytest.raises(Exception, match="no luck"):
            app.tasks["tests.fail"].delay("no luck").get(timeout=30)
        assert spy.reads == 1


def test_a_notice_from_an_older_worker_is_read_once(app, monkeypatch):
    """A rolling upgrade: a worker that sends ids only still wakes get(), which reads."""
    client = app.client()
    on_notice = client.waiter._on_notice
    client.waiter._on_notice = lambda body: on_notice(encode_notice(decode_notice(body)))
    with running_worker(app):
        _subscribed(app)
        spy = Spy(client, monkeypatch)
        assert app.tasks["tests.add"].delay(2, 2).get(timeout=30) == 4
        assert spy.reads == 1 and spy.waits >= 1


def test_a_notice_already_in_is_read_at_once(app, monkeypatch):
    with running_worker(app):
        client = _subscribed(app)
        r = app.tasks["tests.add"].delay(2, 3)
        eventually(lambda: client.waiter.announced_since(r.id, r._sent_mark), timeout=30)
        spy = Spy(client, monkeypatch)
        assert r.get(timeout=30) == 5
        assert spy.reads == 1 and spy.waits == 0


def test_a_lost_notice_is_bounded_by_the_fallback_read(app, monkeypatch):
    monkeypatch.setattr(handles, "FALLBACK_RECHECK", 0.05)
    client = app.client()
    client.waiter._on_notice = lambda body: None  # every notice lost
    client.waiter.watch_many([], own=True)  # subscribes
    with running_worker(app):
        r = app.tasks["tests.add"].delay(4, 4)
        assert r._sent_mark is not None
        assert r.get(timeout=30) == 8
        assert not client.waiter.announced_since(r.id, r._sent_mark)  # found by reading


def test_handles_from_ids_and_chosen_ids_read_first(app, monkeypatch):
    with running_worker(app):
        client = _subscribed(app)
        done = app.tasks["tests.add"].delay(1, 2)
        assert done.get(timeout=30) == 3
        spy = Spy(client, monkeypatch)
        assert app.AsyncResult(done.id).get(timeout=30) == 3  # a foreign id: no mark
        assert spy.reads == 1 and spy.waits == 0
        # a caller's own task id may be one that finished before: no mark either
        again = app.tasks["tests.add"].apply_async((1, 2), task_id=done.id)
        assert again._sent_mark is None
        spy.reset()
        assert again.get(timeout=30) == 3 and spy.reads == 1 and spy.waits == 0


def test_no_mark_before_subscribing_and_timeouts_still_read(app, monkeypatch):
    client = app.client()
    r = app.tasks["tests.add"].delay(1, 1)
    assert r._sent_mark is None  # nobody listened when it was sent
    client.waiter.watch_many([], own=True)
    pending = app.tasks["tests.add"].delay(1, 1)  # no worker: stays PENDING
    spy = Spy(client, monkeypatch)
    with pytest.raises(TimeoutError, match="not ready"):
        pending.get(timeout=0)
    assert spy.reads == 1  # read once before giving up


def test_waiter_marks_tell_what_was_announced():
    class Broker:
        def subscribe_notices(self, on_notice, keys):
            self.deliver = on_notice
            return self

        def close(self) -> None:
            pass

    broker = Broker()
    waiter = CompletionWaiter(broker, "client.x")  # type: ignore[arg-type]
    assert waiter.mark() is None
    waiter.watch_many([], own=True)
    mark = waiter.mark()
    assert not waiter.announced_since("a", mark)
    broker.deliver(encode_notice(["a"]))
    assert waiter.announced_since("a", mark) and not waiter.announced_since("b", mark)
    later = waiter.mark()
    broker.deliver(encode_notice([f"x{i}" for i in range(ANNOUNCED_MAX)]))
    assert waiter.announced_since("b", mark)  # "a" was forgotten: cannot tell any more
    assert not waiter.announced_since("b", later)
    waiter.close()
    waiter.watch_many([], own=True)  # a new subscription: notices in between were not heard
    assert waiter.announced_since("b", later)


def test_a_notice_racing_the_check_wakes_the_waiter(app):
    """The event is watched before the memory is asked, so a notice landing in between
    wakes get() (it never waits on a notice already gone)."""
    client = app.client()
    client.waiter.watch_many([], own=True)
    r = app.tasks["tests.add"].delay(1, 1)
    asked = client.waiter.announced_since
    fired = threading.Event()

    def announce_then_ask(task_id, mark):
        client.broker.publish_notice(encode_notice([task_id]), client.notice_key)
        eventually(lambda: asked(task_id, mark), timeout=30)
        fired.set()
        return False  # as if the notice came just after the check

    client.waiter.announced_since = announce_then_ask
    with running_worker(app):
        assert r.get(timeout=30) == 2 and fired.is_set()


def test_notices_carry_outcomes_that_older_readers_skip():
    carried = {"a": Carried(result={"x": [1, None]}),
               "b": Carried(encoded=b"\x80\x04.", content_type="application/x-python-serialize")}
    body = encode_notice(["a", "b", "c"], carried)
    assert json.loads(body)[:3] == ["a", "b", "c"]  # what an older reader takes
    assert decode_notice(body) == ["a", "b", "c"]
    notice = read_notice(body)
    assert notice.ids == ["a", "b", "c"]
    assert [notice.carried(i) for i in notice.ids] == [carried["a"], carried["b"], None]
    assert read_notice(encode_notice(["a"])).carried("a") is None  # an older worker's
    odd = read_notice(b'["a","b","c",{"carried":{"a":7,"b":{"encoded":"%","content_type":'
                      b'"x"},"c":{"encoded":"AA=="}}}]')
    assert [odd.carried(i) for i in odd.ids] == [None, None, None]  # not understood
    assert read_notice(b"{}") == Notice([]) and read_notice(b"[") == Notice([])


def test_a_notice_carries_results_up_to_its_budget():
    many = {f"t{i}": Carried(result="z" * 1000) for i in range(200)}
    body = encode_notice(list(many), many)
    notice = read_notice(body)
    kept = [i for i in notice.ids if notice.carried(i) is not None]
    assert notice.ids == list(many) and 0 < len(kept) < len(many)
    assert len(body) - len(encode_notice(list(many))) <= NOTICE_CARRY_MAX + 10 * len(kept)
    bad = {"a": Carried(result=float("nan")), "b": Carried(result=1),
           "c": Carried(result="y" * (CARRY_MAX + 1))}
    notice = read_notice(encode_notice(["a", "b", "c"], bad))  # measured one by one
    assert [notice.carried(i) for i in notice.ids] == [None, Carried(result=1), None]


def test_a_set_waited_on_through_another_client_listens_to_every_notice(app):
    """Handles a client submitted wait on its own notices; a ResultSet of them waited on
    through a second client must not, since their notices go to the first one's key."""
    sender, waiter_client = app.client(), Client(tasks=app.tasks, conf=app.conf)
    try:
        with running_worker(app):
            results = [sender.submit("tests.add", i, i) for i in range(3)]
            assert all(r.sent_here for r in results)
            assert ResultSet(results, client=waiter_client).join(timeout=30) == [0, 2, 4]
            assert waiter_client.waiter._wide._handle is not None
            assert ResultSet(results).join(timeout=30) == [0, 2, 4]  # the sender's own
            assert sender.waiter._wide._handle is None
    finally:
        waiter_client.close()
