"""``hutch_task_attempts`` (migration 0011): each RETRY a batch records keeps its attempt,
on SQLite and PostgreSQL alike; the result cleanup and ``forget`` take them with the task."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hutch.beat.cleanup import Cleanup
from hutch.beat.store import BeatStore
from hutch.config import Settings
from hutch.ops.tasks import Attempt, attempts_of
from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.results.records import RECEIVED, RETRY, STARTED, SUCCESS, StateChange
from hutch.results.store import ResultStore

UTC = dt.timezone.utc


def at(seconds: float) -> dt.datetime:
    """``seconds`` into the test's made-up day."""
    return dt.datetime(2024, 3, 1, 12, tzinfo=UTC) + dt.timedelta(seconds=seconds)


@pytest.fixture
def store(store_url: str) -> Iterator[ResultStore]:
    """A store on each backend (the PostgreSQL database comes migrated)."""
    with ResultStore(store_url) as opened:
        yield opened


def started(attempt: int, when: float, task_id: str = "t") -> StateChange:
    return StateChange(task_id=task_id, state=STARTED, retries=attempt, worker=f"w{attempt}",
                       received_at=at(when), started_at=at(when))


def retry(attempt: int, when: float, message: str = "boom", task_id: str = "t") -> StateChange:
    return StateChange(task_id=task_id, state=RETRY, retries=attempt, worker=f"w{attempt}",
                       exception_type="ValueError", exception_message=message,
                       finished_at=at(when), eta=at(when + 10))


def test_each_retry_keeps_its_attempt_with_the_start_stored_before(store):
    store.write([started(0, 1)])
    store.write([retry(0, 2, "first")])
    store.write([started(1, 12)])
    store.write([retry(1, 13, "second")])
    store.write([started(2, 23), StateChange(task_id="t", state=SUCCESS, retries=2,
                                             result=5, finished_at=at(24))])
    assert attempts_of(store, "t") == [
        Attempt(0, "w0", at(1), at(2), at(12), "ValueError", "first"),
        Attempt(1, "w1", at(12), at(13), at(23), "ValueError", "second")]
    assert store.get("t").state == SUCCESS and store.get("t").started_at == at(23)
    assert attempts_of(store, "other") == []


def test_a_redelivered_retry_writes_nothing_twice(store):
    store.write([started(0, 1), retry(0, 2, "first")])
    store.write([retry(0, 5, "again")])  # its message redelivered, run again
    store.write([retry(0, 6, "and again"), retry(0, 7, "within one batch")])
    assert attempts_of(store, "t") == [
        Attempt(0, "w0", at(1), at(2), at(12), "ValueError", "first")]


def test_a_retry_folded_with_the_next_attempts_start_keeps_its_row(store):
    store.write([StateChange(task_id="t", state=RECEIVED, received_at=at(0)), started(0, 1),
                 retry(0, 2), StateChange(task_id="t", state=RECEIVED, retries=1,
                                          received_at=at(11)), started(1, 12)])
    assert store.get("t").state == STARTED and store.get("t").retries == 1
    assert attempts_of(store, "t") == [
        Attempt(0, "w0", at(1), at(2), at(12), "ValueError", "boom")]


def test_a_retry_with_no_start_known_and_long_values(store):
    long_type = "E" * 300
    store.write([StateChange(task_id="t", state=RETRY, retries=0, worker="w\x00",
                             exception_type=long_type, exception_message="nul\x00")])
    attempt, = attempts_of(store, "t")
    assert attempt.started_at is None and attempt.eta is None
    assert attempt.retried_at is not None and attempt.retried_at.tzinfo is not None
    assert attempt.exception_type == "E" * 255
    assert attempt.worker == "w\ufffd" and attempt.exception_message == "nul\ufffd"


def test_forget_and_the_result_cleanup_delete_the_attempts(store):
    old = dt.datetime.now(UTC) - dt.timedelta(days=2)
    for name in ("kept", "expired", "forgotten"):
        store.write([retry(0, 2, task_id=name)])
    store.write([StateChange(task_id="expired", state=SUCCESS, retries=1, finished_at=old)])
    store.forget("forgotten")
    assert attempts_of(store, "forgotten") == []
    beat = BeatStore(store)
    conf = Settings(result_expires=86400.0)
    assert Cleanup(beat, conf).run(dt.datetime.now(UTC)) == (2, False)  # the task, its attempt
    assert attempts_of(store, "expired") == []
    assert [a.attempt for a in attempts_of(store, "kept")] == [0]


def test_migration_0011_adds_the_attempts_table_and_goes_back(empty_database_url):
    url = empty_database_url
    migrate.upgrade(url, "0011")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            key = sa.inspect(conn).get_pk_constraint("hutch_task_attempts")
        assert key["constrained_columns"] == ["task_id", "attempt"]
        migrate.downgrade(url, "0010")
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("hutch_task_attempts")
            assert sa.inspect(conn).has_table("hutch_audit")
        migrate.upgrade(url)
        with engine.connect() as conn:
            assert sa.inspect(conn).has_table("hutch_task_attempts")
    finally:
        engine.dispose()
