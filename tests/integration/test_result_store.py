"""One contract for the result store, run against SQLite and PostgreSQL alike.

Every test gets its own database (see ``tests/support/databases.py``); nothing
here is mocked.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import random
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hutch.client.handles import decode_result, rebuild_exception
from hutch.errors import BackendError
from hutch.messages import CARRY_MAX, Carried
from hutch.results import migrate, owners
from hutch.results.models import make_engine, metadata
from hutch.results.records import (
    FAILURE,
    PENDING,
    RECEIVED,
    RETRY,
    REVOKED,
    STARTED,
    STATE_RANK,
    SUCCESS,
    Applied,
    Claims,
    Seen,
    StateChange,
)
from hutch.results.store import ResultStore
from hutch.results.workers import WorkerBeat, WorkerStore
from support.waiting import eventually

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def store(store_url: str) -> Iterator[ResultStore]:
    with ResultStore(store_url, auto_upgrade=True) as store:
        yield store


# -- round trip -----------------------------------------------------------------


def test_every_column_round_trips(store: ResultStore) -> None:
    change = StateChange(
        task_id="t-1", state=FAILURE, name="tasks.add", args=[1, [2, 3]],
        kwargs={"x": {"y": None}}, queue="priority.high", worker="celery@host-1",
        retries=2, parent_id="p-1", root_id="r-1", group_id="g-1",
        result={"partial": True}, result_encoded=b"\x00\xffraw",
        result_content_type="application/x-msgpack", exception_type="builtins.ValueError",
        exception_message="bad value", exception_args=["bad", {"__hutch__": "tuple", "v": [1]}],
        traceback="Traceback (most recent call last):\n  ...",
        eta=at(1), expires=at(3600), schedule_name="add-every-30-seconds",
        created_at=at(0), received_at=at(2), started_at=at(3), finished_at=at(4),
    )
    store.write([change])

    record = store.get("t-1")
    assert record is not None
    for name, value in vars(change).items():
        assert getattr(record, name) == value, name
    assert record.ready


def test_missing_task_is_none(store: ResultStore) -> None:
    assert store.get("nope") is None
    assert store.get_many(["nope"]) == {}


def test_none_fields_keep_stored_values(store: ResultStore) -> None:
    store.write([StateChange("t", PENDING, name="tasks.add", args=[1, 2], queue="q")])
    store.write([StateChange("t", STARTED, worker="w1", started_at=at(1))])

    record = store.get("t")
    assert (record.state, record.name, record.args, record.queue) == (STARTED, "tasks.add", [1, 2], "q")
    assert (record.worker, record.started_at) == ("w1", at(1))


def test_created_at_is_set_on_insert_only(store: ResultStore) -> None:
    store.write([StateChange("t", PENDING, created_at=at(0))])
    store.write([StateChange("t", STARTED, created_at=at(60))])
    assert store.get("t").created_at == at(0)

    store.write([StateChange("u", STARTED)])
    assert store.get("u").created_at.tzinfo is not None


# -- precedence -----------------------------------------------------------------


def test_late_started_does_not_overwrite_success(store: ResultStore) -> None:
    store.write([StateChange("t", SUCCESS, result=8, worker="w1", finished_at=at(2))])
    store.write([StateChange("t", STARTED, worker="w2", started_at=at(1))])

    record = store.get("t")
    assert (record.state, record.result, record.worker, record.started_at) == (SUCCESS, 8, "w1", None)


def test_ready_state_is_final_even_for_a_later_attempt(store: ResultStore) -> None:
    store.write([StateChange("t", REVOKED, exception_message="expired")])
    store.write([StateChange("t", STARTED, retries=1), StateChange("u", SUCCESS)])
    store.write([StateChange("u", FAILURE, retries=3)])

    assert store.get("t").state == REVOKED
    assert store.get("u").state == SUCCESS


def test_a_later_attempt_supersedes_an_earlier_rank(store: ResultStore) -> None:
    store.write([StateChange("t", RETRY, retries=1, exception_type="builtins.OSError")])
    store.write([StateChange("t", STARTED, retries=2, worker="w2")])

    record = store.get("t")
    assert (record.state, record.retries, record.worker) == (STARTED, 2, "w2")
    assert record.exception_type == "builtins.OSError"  # the last error stays visible until done


def test_an_earlier_attempt_does_not_supersede(store: ResultStore) -> None:
    store.write([StateChange("t", RECEIVED, retries=2)])
    store.write([StateChange("t", RETRY, retries=1, exception_type="builtins.OSError")])

    record = store.get("t")
    assert (record.state, record.retries, record.exception_type) == (RECEIVED, 2, None)


def test_same_attempt_lower_rank_is_ignored(store: ResultStore) -> None:
    store.write([StateChange("t", STARTED, worker="w1")])
    store.write([StateChange("t", RECEIVED, worker="w2")])
    store.write([StateChange("t", STARTED, worker="w3")])  # equal rank: not greater

    assert (store.get("t").state, store.get("t").worker) == (STARTED, "w1")


def test_pending_is_overwritten_by_anything(store: ResultStore) -> None:
    store.write([StateChange("t", PENDING, retries=5, name="tasks.add")])
    store.write([StateChange("t", RECEIVED, retries=0)])
    assert (store.get("t").state, store.get("t").retries) == (RECEIVED, 0)

    store.write([StateChange("u", PENDING, name="old")])
    store.write([StateChange("u", PENDING, name="new")])
    assert store.get("u").name == "new"


def test_a_late_pending_does_not_undo_a_replaced_tasks_pending(store: ResultStore) -> None:
    """A replaced task's worker writes PENDING with one more retry; the client's PENDING
    row of the original send, written late (its writer lingers), must not reset it."""
    store.write([StateChange("t", PENDING, retries=1, name="replace.into", worker="w1")])
    store.write([StateChange("t", PENDING, retries=0, name="replace.into")])
    assert (store.get("t").state, store.get("t").retries, store.get("t").worker) == (
        PENDING, 1, "w1")
    store.write([StateChange("t", RECEIVED, retries=0, name="tests.add")])  # the replacement
    assert (store.get("t").state, store.get("t").name) == (RECEIVED, "tests.add")


def test_success_after_retry_clears_the_old_error(store: ResultStore) -> None:
    store.write([StateChange("t", RETRY, exception_type="builtins.OSError",
                             exception_message="flaky", traceback="tb", result={"x": 1})])
    store.write([StateChange("t", SUCCESS, retries=1, result=42)])

    record = store.get("t")
    assert (record.state, record.result) == (SUCCESS, 42)
    assert (record.exception_type, record.exception_message, record.traceback) == (None, None, None)


def test_failure_clears_a_stale_result(store: ResultStore) -> None:
    store.write([StateChange("t", STARTED, result="progress")])
    store.write([StateChange("t", FAILURE, exception_type="builtins.KeyError")])

    record = store.get("t")
    assert (record.result, record.exception_type) == (None, "builtins.KeyError")


def test_force_resets_a_finished_task(store: ResultStore) -> None:
    store.write([StateChange("t", FAILURE, retries=3, name="tasks.add",
                             exception_type="builtins.KeyError", traceback="tb")])
    store.write([StateChange("t", PENDING)], force=True)

    record = store.get("t")
    assert (record.state, record.retries, record.name) == (PENDING, 0, "tasks.add")
    assert (record.exception_type, record.traceback) == (None, None)

    store.write([StateChange("t", SUCCESS, result=1)])
    assert store.get("t").state == SUCCESS


def test_unknown_state_is_refused(store: ResultStore) -> None:
    with pytest.raises(ValueError, match="unknown state"):
        store.write([StateChange("t", "DONE")])


# -- batches --------------------------------------------------------------------


def test_duplicates_in_one_batch_are_merged_in_order(store: ResultStore) -> None:
    store.write([
        StateChange("t", RECEIVED, name="tasks.add", received_at=at(1)),
        StateChange("u", RECEIVED),
        StateChange("t", STARTED, worker="w1", started_at=at(2)),
        StateChange("t", SUCCESS, result=4, finished_at=at(3)),
    ])

    record = store.get("t")
    assert (record.state, record.name, record.worker, record.result) == (SUCCESS, "tasks.add", "w1", 4)
    assert (record.received_at, record.started_at, record.finished_at) == (at(1), at(2), at(3))
    assert store.get("u").state == RECEIVED


def test_a_batch_obeys_precedence_like_single_writes(store: ResultStore) -> None:
    batch = [StateChange("t", SUCCESS, result=1), StateChange("t", STARTED, worker="late")]
    store.write(batch)

    record = store.get("t")
    assert (record.state, record.worker) == (SUCCESS, None)
    assert batch[0].worker is None  # the caller's objects are not modified


def test_two_thousand_rows_in_one_write(store: ResultStore) -> None:
    ids = [f"bulk-{n:04d}" for n in range(2000)]
    store.write([StateChange(i, STARTED, name="tasks.bulk", args=[n], worker="w")
                 for n, i in enumerate(ids)])
    store.write([StateChange(i, SUCCESS, result=n) for n, i in enumerate(ids)])

    assert store.count(SUCCESS) == 2000
    records = store.get_many(ids)
    assert len(records) == 2000
    assert records["bulk-1999"].result == 1999 and records["bulk-1999"].args == [1999]


def test_empty_write_is_a_no_op(store: ResultStore) -> None:
    store.write([])
    assert store.count() == 0


def test_concurrent_writers_never_regress(store: ResultStore) -> None:
    """Four threads write the same tasks' lifecycles in clashing orders."""
    ids = [f"c-{n}" for n in range(50)]
    lifecycle = [(RECEIVED, 0), (STARTED, 0), (RETRY, 0), (RECEIVED, 1), (STARTED, 1), (SUCCESS, 1)]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(10):
                batch = [StateChange(i, state, retries=r, worker=f"w{seed}")
                         for i in rng.sample(ids, len(ids))
                         for state, r in [rng.choice(lifecycle)]]
                store.write(batch)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    store.write([StateChange(i, STARTED, retries=1) for i in ids[:25]])
    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors

    for i, record in store.get_many(ids).items():
        floor = (1, STATE_RANK[STARTED]) if i in ids[:25] else (0, 0)
        assert (record.retries, STATE_RANK[record.state]) >= floor
    store.write([StateChange(i, SUCCESS, retries=1) for i in ids])
    store.write([StateChange(i, STARTED, retries=0) for i in ids])
    assert store.count(SUCCESS) == len(ids)


# -- values ---------------------------------------------------------------------


def test_json_values_nested_and_unicode(store: ResultStore) -> None:
    value = {"名前": "ünïcødé ✓", "nested": [1, 2.5, None, True, {"deep": ["x"] * 3}], "": 0,
             "__hutch__": "datetime", "v": "2024-01-01T00:00:00+00:00"}
    store.write([StateChange("t", SUCCESS, args=["é", [[]]], kwargs={"k": "🐇"}, result=value)])

    record = store.get("t")
    assert (record.args, record.kwargs, record.result) == (["é", [[]]], {"k": "🐇"}, value)


@pytest.mark.parametrize("result", [0, "", [], {}, False, "text", 1.5])
def test_falsy_and_scalar_json_results(store: ResultStore, result: object) -> None:
    store.write([StateChange("t", SUCCESS, result=result)])
    assert store.get("t").result == result


def test_none_result_is_null(store: ResultStore) -> None:
    store.write([StateChange("t", SUCCESS, result=None)])
    assert store.get("t").result is None


def test_a_finished_state_clears_the_outcome_columns_it_leaves_unset(store: ResultStore) -> None:
    """On PostgreSQL an unset column is absent from the batch's JSON document (read as
    NULL): a SUCCESS after a RETRY still clears the retry's exception, and its None
    result is NULL, not the retry's."""
    store.write([StateChange("t", RETRY, retries=0, exception_type="builtins.OSError",
                             exception_message="flaky", exception_args=["flaky"],
                             traceback="Traceback ...", result={"partial": 1})])
    store.write([StateChange("t", SUCCESS, retries=1, worker="w1", finished_at=at(5))])
    record = store.get("t")
    assert (record.state, record.retries, record.worker) == (SUCCESS, 1, "w1")
    assert (record.result, record.exception_type, record.exception_message,
            record.exception_args, record.traceback) == (None, None, None, None, None)


def test_result_encoded_bytes(store: ResultStore) -> None:
    blob = bytes(range(256)) * 40
    store.write([StateChange("t", SUCCESS, result_encoded=blob,
                             result_content_type="application/x-python-serialize")])

    record = store.get("t")
    assert (record.result, record.result_encoded) == (None, blob)
    assert isinstance(record.result_encoded, bytes)
    assert record.result_content_type == "application/x-python-serialize"


def test_datetimes_come_back_aware_utc(store: ResultStore) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    store.write([StateChange("t", STARTED, eta=dt.datetime(2024, 3, 1, 20, 0, tzinfo=shanghai),
                             started_at=dt.datetime(2024, 3, 1, 12, 0))])  # naive: taken as UTC

    record = store.get("t")
    assert record.eta == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert record.eta.utcoffset() == dt.timedelta(0)
    assert record.started_at == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset() == dt.timedelta(0)


def test_unstorable_values_do_not_wedge_the_batch(store: ResultStore) -> None:
    """PostgreSQL refuses NULs and over-long names; no backend JSON-encodes a set (so
    SQLite refuses this batch too, and it is cleaned the same way there)."""
    store.write([
        StateChange("nul-json", SUCCESS, result={"text": "a\x00b"}),
        StateChange("nul-text", FAILURE, exception_message="bad\x00byte", traceback="tb\x00"),
        StateChange("long", STARTED, name="n" * 300, exception_type="E" * 300),
        StateChange("not-json", STARTED, args=[{1, 2}]),
        StateChange("fine", SUCCESS, result="a\u00e9"),
    ])

    records = store.get_many(["nul-json", "nul-text", "long", "not-json", "fine"])
    assert records["nul-json"].result == {"text": "a\ufffdb"}
    assert records["nul-text"].exception_message == "bad\ufffdbyte"
    assert records["long"].name == "n" * 255 and records["long"].exception_type == "E" * 255
    assert records["not-json"].args == ["{1, 2}"]
    assert records["fine"].result == "a\u00e9"


# -- relations, forget, count ---------------------------------------------------


def test_children_oldest_first(store: ResultStore) -> None:
    store.write([
        StateChange("c2", PENDING, parent_id="p", created_at=at(2)),
        StateChange("c1", PENDING, parent_id="p", created_at=at(1)),
        StateChange("c3", PENDING, parent_id="p", created_at=at(3)),
        StateChange("x", PENDING, parent_id="other"),
        StateChange("p", SUCCESS),
    ])
    assert store.children("p") == ["c1", "c2", "c3"]
    assert store.children("c1") == []


def test_forget_deletes_the_row(store: ResultStore) -> None:
    store.write([StateChange("t", SUCCESS, result=1), StateChange("u", SUCCESS)])
    store.forget("t")
    store.forget("never-existed")

    assert store.get("t") is None
    assert store.get("u") is not None


def test_count_by_state(store: ResultStore) -> None:
    store.write([StateChange(f"s{n}", SUCCESS) for n in range(3)]
                + [StateChange("f", FAILURE), StateChange("p", PENDING)])

    assert store.count() == 5
    assert (store.count(SUCCESS), store.count(FAILURE), store.count(RETRY)) == (3, 1, 0)


# -- connections and errors -----------------------------------------------------


def test_sqlite_memory_is_shared_across_threads() -> None:
    with ResultStore("sqlite:///:memory:") as store:
        threads = [threading.Thread(target=store.write, args=([StateChange(f"t{n}", SUCCESS)],))
                   for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.count() == 8


def test_sqlite_uses_wal_and_a_busy_timeout(sqlite_url: str) -> None:
    with ResultStore(f"db+{sqlite_url}") as store:
        store.write([StateChange("t", PENDING)])
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


@pytest.mark.postgres
def test_postgres_without_schema_asks_for_upgrade(empty_postgres_url: str) -> None:
    with ResultStore(empty_postgres_url) as store:
        with pytest.raises(BackendError, match=r"run `hutch db upgrade`"):
            store.get("t")


@pytest.mark.postgres
def test_postgres_at_an_older_revision_asks_for_upgrade(empty_postgres_url: str) -> None:
    migrate.upgrade(empty_postgres_url, "0005")
    with ResultStore(empty_postgres_url) as store:
        with pytest.raises(BackendError, match=r"schema is at 0005, .*run `hutch db upgrade`"):
            store.write([StateChange("t", PENDING)])


def test_unreachable_database_is_a_backend_error_with_masked_password() -> None:
    with ResultStore("postgresql://hutch:s3cret@127.0.0.1:1/nowhere") as store:
        with pytest.raises(BackendError) as caught:
            store.write([StateChange("t", PENDING)])
    message = str(caught.value)
    assert "s3cret" not in message and "hutch:***@" in message
    assert "\n" not in message


@pytest.mark.postgres
def test_write_survives_postgres_dropping_connections(fresh_postgres_url: str,
                                                       postgres_server) -> None:
    """What a PostgreSQL restart does to a worker's pooled connections."""
    database = sa.engine.make_url(fresh_postgres_url).database
    with ResultStore(fresh_postgres_url) as store:
        store.write([StateChange("t", RECEIVED)])
        with postgres_server.engine.connect() as admin:
            killed = admin.execute(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar()
        assert killed >= 1
        store.write([StateChange("t", SUCCESS, result=1)])
        assert store.get("t").state == SUCCESS


# -- schema and migrations ------------------------------------------------------


@pytest.mark.postgres
def test_postgres_json_columns_are_jsonb(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            types = dict(conn.execute(sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'hutch_tasks'")).all())
    finally:
        engine.dispose()
    assert {types[c] for c in ("args", "kwargs", "result")} == {"jsonb"}
    assert types["result_encoded"] == "bytea"
    assert types["finished_at"] == "timestamp with time zone"


def test_migrations_match_the_models(store_url: str) -> None:
    migrate.upgrade(store_url)
    engine = make_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": migrate.VERSION_TABLE})
            diffs = compare_metadata(context, metadata)
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("hutch_tasks")}
            worker_indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("hutch_workers")}
    finally:
        engine.dispose()
    assert diffs == []
    assert "hutch_workers" in metadata.tables  # compared above like every hutch table
    assert {"ix_hutch_tasks_state", "ix_hutch_tasks_name_created_at",
            "ix_hutch_tasks_finished_at_task_id",
            "ix_hutch_tasks_parent_id", "ix_hutch_tasks_root_id", "ix_hutch_tasks_group_id",
            "ix_hutch_tasks_schedule_name"} <= indexes
    assert worker_indexes == {"ix_hutch_workers_last_heartbeat_at"}


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    assert migrate.current(url) is None

    migrate.upgrade(url)
    assert migrate.current(url) == migrate.heads()[0]
    assert _has_table(url, "hutch_tasks")

    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert not _has_table(url, "hutch_tasks")

    migrate.upgrade(url)
    assert migrate.current(url) in migrate.heads()
    with ResultStore(url) as store:
        store.write([StateChange("t", SUCCESS, result=1)])
        assert store.get("t").result == 1


def test_sqlite_is_migrated_on_first_use(sqlite_url: str) -> None:
    assert migrate.current(sqlite_url) is None
    with ResultStore(sqlite_url) as store:
        assert store.count() == 0
    assert migrate.current(sqlite_url) in migrate.heads()


def test_stores_opening_a_new_sqlite_file_together_all_start(tmp_path) -> None:
    """A worker and a client's background writer may open (and migrate) a new file at
    the same moment; SQLite refused the WAL switch to one of them about once in 40."""
    for attempt in range(40):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.sqlite'}"
        assert _first_used_together([url] * 3) == []
        assert migrate.current(url) in migrate.heads()


def test_stores_of_several_new_databases_in_one_process_each_get_their_schema(
        tmp_path) -> None:
    """alembic hands its scripts the migration under way through module-level proxies:
    threads migrating different databases at once ran each other's steps (a table
    "already exists" in one, another left half made) until migrate.ALEMBIC_TURNS took
    turns. Without it every round failed."""
    for attempt in range(3):
        urls = [f"sqlite:///{tmp_path / f'several-{attempt}-{i}.sqlite'}" for i in range(3)]
        assert _first_used_together(urls) == []
        assert [migrate.current(url) for url in urls] == [migrate.HEAD_REVISION] * 3


def _first_used_together(urls: list[str]) -> list[BaseException]:
    """The errors of a store per url, each used for the first time at one moment in a
    thread of its own."""
    stores = [ResultStore(url) for url in urls]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def first_use(store: ResultStore) -> None:
        barrier.wait()
        try:
            store.count()
        except BackendError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in stores:
        store.close()
    return errors


def test_ensure_schema_is_idempotent(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        migrate.ensure_schema(engine)
        migrate.ensure_schema(engine)
    finally:
        engine.dispose()
    assert migrate.current(empty_database_url) in migrate.heads()


def test_migration_errors_are_one_line_backend_errors(sqlite_url: str) -> None:
    with pytest.raises(BackendError, match="no-such-revision") as caught:
        migrate.upgrade(sqlite_url, "no-such-revision")
    assert "\n" not in str(caught.value)

    with pytest.raises(BackendError) as caught:
        migrate.current("postgresql://hutch:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_migration_0006_adds_exception_args_and_goes_back(empty_database_url: str) -> None:
    """A failure recorded before 0006 keeps its row (no arguments: get() rebuilds it from
    the message); down again, the column goes and the rows stay."""
    url = empty_database_url
    migrate.upgrade(url, "0005")
    engine = make_engine(url)

    def columns() -> set[str]:
        with engine.connect() as conn:
            return {c["name"] for c in sa.inspect(conn).get_columns("hutch_tasks")}

    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO hutch_tasks (task_id, state, exception_type, exception_message) "
                "VALUES ('old', 'FAILURE', 'builtins.ValueError', 'bad')"))
        assert "exception_args" not in columns()
        migrate.upgrade(url, "0006")
        assert migrate.current(url) == "0006"
        migrate.upgrade(url)  # a store needs the newest schema
        with ResultStore(url) as store:
            old = store.get("old")
            assert old.exception_args is None
            assert rebuild_exception(old).args == ("bad",)
            store.write([StateChange("new", FAILURE, exception_type="builtins.ValueError",
                                     exception_message="('a', 'b')", exception_args=["a", "b"])])
            assert rebuild_exception(store.get("new")).args == ("a", "b")
        migrate.downgrade(url, "0005")
        assert "exception_args" not in columns() and "exception_message" in columns()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM hutch_tasks")).scalar() == 2
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("hutch_tasks")}
        assert "ix_hutch_tasks_state" in indexes
    finally:
        engine.dispose()


def test_migration_0007_creates_hutch_workers_and_goes_back(empty_database_url: str) -> None:
    """0007 adds the workers' table beside existing rows; down again, only it goes."""
    url = empty_database_url
    migrate.upgrade(url, "0006")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO hutch_tasks (task_id, state) VALUES ('kept', 'SUCCESS')"))
    finally:
        engine.dispose()
    assert not _has_table(url, "hutch_workers")
    migrate.upgrade(url, "0007")
    assert migrate.current(url) == "0007" and _has_table(url, "hutch_workers")
    migrate.upgrade(url)  # a store writes only to a schema at head (later revisions add tables)
    with ResultStore(url) as store:
        workers = WorkerStore(store)
        workers.beat(WorkerBeat(
            hostname="w@h", pid=1, version="0", pool="threads", concurrency=1, processes=1,
            queues=["celery"], prefetch=64, state="online", heartbeat_interval=5.0,
            started_at=T0, processed=2**40))
        assert [(w.hostname, w.processed) for w in workers.workers()] == [("w@h", 2**40)]
        assert store.get("kept").state == SUCCESS
    migrate.downgrade(url, "0006")
    assert not _has_table(url, "hutch_workers") and _has_table(url, "hutch_tasks")


def test_heartbeats_leave_no_cyclic_garbage(store: ResultStore) -> None:
    """A prefork supervisor beats and does little else: garbage cycles it leaves pile up
    in the oldest generation until a full collection, an hour or more later (before,
    each beat built a fresh upsert whose ``excluded`` alias made about 200 of them)."""
    workers = WorkerStore(store)
    beat = WorkerBeat(hostname="w@h", pid=1, version="0", pool="prefork", concurrency=2,
                      processes=2, queues=["celery"], prefetch=8, state="online",
                      heartbeat_interval=2.0, started_at=T0)
    workers.beat(beat)
    gc.collect()
    gc.disable()
    try:
        for processed in range(50):
            workers.beat(replace(beat, processed=processed))
        garbage = gc.collect()
    finally:
        gc.enable()
    assert garbage == 0
    assert [(w.hostname, w.processed) for w in workers.workers()] == [("w@h", 49)]


def _has_table(url: str, name: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table(name)
    finally:
        engine.dispose()


def test_upgrade_sql_prints_ddl_without_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    migrate.upgrade("postgresql://hutch:s3cret@127.0.0.1:1/nowhere", sql=True)
    ddl = capsys.readouterr().out
    assert "CREATE TABLE hutch_tasks" in ddl and "JSONB" in ddl
    assert "CREATE INDEX ix_hutch_tasks_state ON hutch_tasks (state)" in ddl


def test_an_exception_writes_all_its_columns_together(store: ResultStore) -> None:
    """The arguments of one attempt's error never stand beside another attempt's message."""
    store.write([StateChange("t", RETRY, exception_type="builtins.ValueError",
                             exception_message="('a', 'b')", exception_args=["a", "b"],
                             traceback="tb0")])
    assert store.get("t").exception_args == ["a", "b"]
    store.write([StateChange("t", STARTED, retries=1, started_at=at(1))])
    assert store.get("t").exception_args == ["a", "b"]  # the last error stays visible
    store.write([StateChange("t", RETRY, retries=1, exception_type="builtins.ValueError",
                             exception_message="<object>", traceback="tb1")])
    record = store.get("t")
    assert (record.exception_message, record.exception_args, record.traceback) == (
        "<object>", None, "tb1")


def test_a_later_run_of_a_started_attempt_takes_its_times(store: ResultStore) -> None:
    """A redelivery that runs again after its worker died: the row shows the run that
    may finish, and a claim (RECEIVED) still finds the row STARTED."""
    store.write([StateChange("t", RECEIVED, worker="w-1", received_at=at(0)),
                 StateChange("t", STARTED, worker="w-1", started_at=at(1))])
    claims = Claims(frozenset({"t"}))
    store.write([StateChange("t", RECEIVED, worker="w-2", received_at=at(10))], claims=claims)
    assert claims.found == {"t": Seen(STARTED, 0, "w-1", at(0))}  # the worker: hutch.worker.owners
    store.write([StateChange("t", STARTED, worker="w-2", received_at=at(10), started_at=at(11))])
    record = store.get("t")
    assert (record.worker, record.received_at, record.started_at) == ("w-2", at(10), at(11))
    # a late write of the older run changes nothing
    store.write([StateChange("t", STARTED, worker="w-1", received_at=at(0), started_at=at(1))])
    record = store.get("t")
    assert (record.worker, record.received_at, record.started_at) == ("w-2", at(10), at(11))
    store.write([StateChange("t", SUCCESS, finished_at=at(12))])
    store.write([StateChange("t", STARTED, worker="w-3", started_at=at(20))])
    assert (store.get("t").state, store.get("t").started_at) == (SUCCESS, at(11))


# -- claims: a RECEIVED write that says what it found (hutch.worker.claims) ----------


@pytest.mark.parametrize("durable", [True, False], ids=["synchronous", "quick"])
def test_claims_report_the_rows_that_kept_them_out(store: ResultStore, durable: bool) -> None:
    """The same with a quick claim (worker_claim_synchronous_commit off)."""
    store.write([StateChange(task_id="pending", state=PENDING, name="t"),
                 StateChange(task_id="done", state=SUCCESS, result=7, finished_at=at(1)),
                 StateChange(task_id="failed", state=FAILURE, retries=1),
                 StateChange(task_id="running", state=STARTED, worker="w-1"),
                 StateChange(task_id="retrying", state=RETRY, retries=0)])
    claimed = ["new", "pending", "done", "failed", "running", "retrying"]
    claims = Claims(frozenset(claimed), durable=durable)
    store.write([StateChange(task_id=i, state=RECEIVED, worker="w-2", received_at=at(2),
                             retries=1 if i == "retrying" else 0, name="t")
                 for i in claimed], claims=claims)
    assert claims.found == {"done": Seen(SUCCESS, 0), "failed": Seen(FAILURE, 1),
                            "running": Seen(STARTED, 0, "w-1")}
    rows = store.get_many(claimed)
    assert {i: r.state for i, r in rows.items()} == {
        "new": RECEIVED, "pending": RECEIVED, "done": SUCCESS, "failed": FAILURE,
        "running": STARTED, "retrying": RECEIVED}
    assert rows["done"].result == 7 and rows["running"].worker == "w-1"  # untouched
    assert rows["pending"].worker == "w-2" and rows["pending"].received_at == at(2)


@pytest.mark.postgres
def test_a_quick_claim_turns_synchronous_commit_off_for_its_own_statement(
        fresh_postgres_url: str) -> None:
    """PostgreSQL (synchronous_commit is its own): the quick claim's statement sets it
    for its own transaction only; the pooled connection (which the recorder's outcomes
    use next) keeps the server's setting, and a durable claim does not touch it."""
    with ResultStore(fresh_postgres_url) as store:
        _claim_quickly(store)


def _claim_quickly(store: ResultStore) -> None:
    sent: list[str] = []
    sa.event.listen(store.statement_engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_: sent.append(statement))
    store.write([StateChange(task_id="slow", state=RECEIVED)], claims=Claims(frozenset({"slow"})))
    assert not any("set_config" in statement for statement in sent)
    quick = Claims(frozenset({"quick", "slow"}), durable=False)
    store.write([StateChange(task_id="quick", state=RECEIVED),
                 StateChange(task_id="slow", state=RECEIVED)], claims=quick)
    assert "set_config('synchronous_commit', 'off', true)" in sent[-2]  # then the read-back
    assert quick.found == {"slow": Seen(RECEIVED, 0)} and store.get("quick").state == RECEIVED
    with store.statement_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_claims_of_one_batch_with_unstorable_values_are_still_reported(store) -> None:
    store.write([StateChange(task_id="done", state=SUCCESS)])
    claims = Claims(frozenset({"done", "odd"}))
    store.write([StateChange(task_id="done", state=RECEIVED),
                 StateChange(task_id="odd", state=RECEIVED, name="x" * 400 + "\x00")],
                claims=claims)
    assert claims.found == {"done": Seen(SUCCESS, 0)}
    odd = store.get("odd")  # PostgreSQL refused the NUL and the length: cleaned, written again
    assert odd.state == RECEIVED and odd.name.startswith("x" * 255)


# -- the outcomes a completion notice carries (hutch.messages.Carried) ----------------


def test_a_batch_reports_the_small_successes_it_applied_as_stored(store) -> None:
    """What the notice carries is what a read returns: only a SUCCESS that applied (not
    one the precedence rule kept out), small enough, in the stored form."""
    store.write([StateChange(task_id="revoked", state=REVOKED, exception_message="revoked"),
                 StateChange(task_id="running", state=STARTED, worker="w-1")])
    carry = Applied()
    store.write([StateChange(task_id="json", state=SUCCESS, result={"b": 1, "a": [1.5, "x"]}),
                 StateChange(task_id="none", state=SUCCESS),
                 StateChange(task_id="bytes", state=SUCCESS, result_encoded=b"\x80\x04K\x01.",
                             result_content_type="application/x-python-serialize"),
                 StateChange(task_id="large", state=SUCCESS, result="x" * CARRY_MAX),
                 StateChange(task_id="large-bytes", state=SUCCESS,
                             result_encoded=b"x" * (CARRY_MAX + 1), result_content_type="c"),
                 StateChange(task_id="revoked", state=SUCCESS, result=1),
                 StateChange(task_id="failed", state=FAILURE, exception_type="E"),
                 StateChange(task_id="running", state=SUCCESS, result=2),
                 StateChange(task_id="pending", state=PENDING)], carry=carry)
    assert carry.carried == {
        "json": Carried(result=store.get("json").result),
        "none": Carried(),
        "bytes": Carried(encoded=b"\x80\x04K\x01.",
                         content_type="application/x-python-serialize"),
        "running": Carried(result=2)}
    assert store.get("json").result == {"b": 1, "a": [1.5, "x"]}
    # a value the database refused is carried as it was stored the second time
    store.write([StateChange(task_id="nul", state=SUCCESS, result="a\x00b")], carry=carry)
    assert carry.carried == {"nul": Carried(result=store.get("nul").result)}
    # written again (a redelivery's outcome): it does not apply, nothing is carried
    store.write([StateChange(task_id="json", state=SUCCESS, result=3)], carry=carry)
    assert carry.carried == {}


@pytest.mark.parametrize("durable", [True, False], ids=["synchronous", "quick"])
def test_concurrent_claims_of_one_id_let_exactly_one_through(store: ResultStore,
                                                             durable: bool) -> None:
    """Two workers receive copies of the same new task at the same moment (with quick
    claims too: only a crash tells them apart)."""
    ids = [f"race-{i}" for i in range(40)]
    results: list[Claims] = []
    barrier = threading.Barrier(4)

    def claim(worker: str) -> None:
        claims = Claims(frozenset(ids), durable=durable)
        barrier.wait()
        store.write([StateChange(task_id=i, state=RECEIVED, worker=worker) for i in ids],
                    claims=claims)
        results.append(claims)

    threads = [threading.Thread(target=claim, args=(f"w-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    for task_id in ids:
        winners = [c for c in results if task_id not in c.found]
        assert len(winners) == 1, task_id
        assert all((c.found[task_id].state, c.found[task_id].retries) == (RECEIVED, 0)
                   for c in results if c is not winners[0])


def test_non_finite_floats_are_stored_and_come_back(store: ResultStore) -> None:
    """PostgreSQL's jsonb refuses NaN and Infinity: a worker retrying such a write would
    stop recording for good. The result is kept whole as encoded JSON, arguments show
    the values as strings."""
    nan, inf = float("nan"), float("inf")
    store.write([StateChange(task_id="nan", state=SUCCESS, args=[nan, 1.5],
                             kwargs={"limit": -inf}, result={"mean": nan, "max": inf})])
    row = store.get("nan")
    assert row.state == SUCCESS
    value = decode_result(row, ("json",))
    assert math.isnan(value["mean"]) and value["max"] == inf
    assert row.args[1] == 1.5 and str(row.args[0]) in ("NaN", "nan")
    assert row.kwargs["limit"] in ("-Infinity", -inf)


def test_a_value_no_cleaning_makes_storable_is_kept_as_text(store: ResultStore) -> None:
    """A lone surrogate: PostgreSQL's jsonb refuses it however it is escaped."""
    store.write([StateChange(task_id="odd", state=SUCCESS, args=["\ud800", 1], result=2)])
    row = store.get("odd")
    assert row.state == SUCCESS
    assert row.args == ["\ud800", 1] or ("ud800" in row.args and "1" in row.args)


# -- whether a worker process is still connected (hutch.results.owners) ---------------


def test_a_worker_process_is_seen_connected_by_the_name_its_connections_carry(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owners, "_label", None)
    with ResultStore(store_url, auto_upgrade=True) as theirs, \
            ResultStore(store_url, auto_upgrade=True) as ours:
        owners.label_connections("celery@here:4242")  # as a worker process does at start
        theirs.get_many(["x"])  # opens a connection, named after the worker
        monkeypatch.setattr(owners, "_label", None)  # ours: another process
        ours.close()
        if theirs.dialect == "sqlite":
            assert ours.connected("celery@here:4242") is None  # cannot tell: run as before
            return
        assert ours.connected("celery@here:4242") is True
        assert ours.connected("celery@here:4243") is False
        theirs.close()  # its connections closed: as when its process dies
        assert eventually(lambda: ours.connected("celery@here:4242") is False, 10)  # the
        # server lists a closed session until its backend has gone, a moment later


def test_a_long_worker_name_is_cut_as_postgresql_keeps_it() -> None:
    name = "celery@" + "h" * 80 + ":1"
    assert owners.label_of(name) == ("hutch " + name)[:owners.LABEL_MAX]
