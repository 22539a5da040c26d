"""A claim whose commit reached the database but whose answer was lost (the server
crashed or the connection broke in between) is written again once the store is back.
The row then holds the claim's own RECEIVED change: the delivery must run, not be
taken for a copy another delivery holds (worker/claims.py, ``is_own``). Found by
tests/faults/test_postgres_crash.py, where such a task stayed RECEIVED for ever."""

import datetime as dt
import uuid

import pytest

from hutch.errors import BackendError
from hutch.messages import TaskMessage
from hutch.results.records import RECEIVED, STARTED, Seen, StateChange
from hutch.worker.claims import claim_of, is_own
from support.deliveries import FakeDelivery, executor_world


@pytest.fixture
def world(tmp_path, store_url):
    with executor_world(tmp_path, store_url) as world:
        yield world


@pytest.fixture
def answer_lost_once(world, monkeypatch):
    """The first claim write commits, then fails as a lost answer would."""
    _, store, _, _ = world
    write, lost = store.write, []

    def committed_then_failed(changes, **kwargs):
        result = write(changes, **kwargs)
        if kwargs.get("claims") is not None and not lost:
            lost.append([change.task_id for change in changes])
            raise BackendError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(store, "write", committed_then_failed)
    return lost


ARRIVED = dt.datetime(2026, 12, 7, 7, 30, 0, 123456, tzinfo=dt.timezone.utc)


def _message():
    return TaskMessage(task="tests.add", id=str(uuid.uuid4()), args=(1, 2))


@pytest.mark.parametrize("idle", [False, True], ids=["claim_writer", "pool_thread"])
def test_a_claim_whose_commit_answer_was_lost_still_runs(world, answer_lost_once, idle):
    _, store, _, executor = world
    message = _message()
    wire = FakeDelivery(message.encode())
    delivery = executor.received(wire, idle=idle)
    job = executor.prepare(delivery)
    assert answer_lost_once == [[message.id]]  # the first write did commit, then "failed"
    assert job is not None, "the task would never run: its own claim was taken for a copy's"
    assert claim_of(delivery).seen is None and wire.settled is None
    assert executor.recorder.flush(10) and store.get(message.id).state == STARTED


def test_a_copy_is_still_refused_after_a_lost_answer(world, answer_lost_once):
    """The own-commit rule lets only the delivery that wrote the row through."""
    _, store, _, executor = world
    message = _message()
    first = executor.received(FakeDelivery(message.encode()))
    assert executor.prepare(first) is not None
    copy = FakeDelivery(message.encode())
    assert executor.prepare(executor.received(copy)) is None
    assert copy.settled == "ack"  # "already received by another delivery"
    assert store.get(message.id).state in (RECEIVED, STARTED)


@pytest.mark.parametrize("differs", [
    {"worker": "elsewhere:1"}, {"retries": 1}, {"state": STARTED},
    {"received_at": ARRIVED + dt.timedelta(microseconds=1)}])
def test_a_row_differing_in_anything_but_the_claim_is_not_its_own(differs):
    change = StateChange(task_id="t", state=RECEIVED, worker="here:1", received_at=ARRIVED)
    assert is_own(Seen(RECEIVED, 0, "here:1", ARRIVED), change)
    row = {"state": RECEIVED, "retries": 0, "worker": "here:1", "received_at": ARRIVED}
    assert not is_own(Seen(**{**row, **differs}), change)
