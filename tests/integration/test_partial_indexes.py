"""Migration 0014: the indexes of mostly-NULL columns (worker and the lineage ids) hold
only the rows that have a value, on SQLite and PostgreSQL, and ``worker`` is byte-wise
on PostgreSQL; the queries that use them still do (a worker node's filter now too),
and they find the same rows; an index a DBA made partial beforehand is left alone;
down again, they are whole."""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hutch.ops.tasks import TaskFilters, list_tasks
from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.results.records import PENDING, SUCCESS, StateChange
from hutch.results.store import ResultStore

PARTIAL = {"ix_hutch_tasks_worker": "worker", "ix_hutch_tasks_parent_id": "parent_id",
           "ix_hutch_tasks_root_id": "root_id", "ix_hutch_tasks_group_id": "group_id",
           "ix_hutch_tasks_schedule_name": "schedule_name"}
PLAIN = 3000
"""Tasks submitted on their own: no parent, root, group or schedule; a third PENDING."""


def predicates(url: str) -> dict[str, str | None]:
    """Each of hutch_tasks' indexes by name, with its predicate (None: whole)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                rows = conn.execute(sa.text(
                    "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = 'hutch_tasks'::regclass"))
            else:
                rows = conn.execute(sa.text(
                    "SELECT name, CASE WHEN sql LIKE '%WHERE%' THEN substr(sql, instr(sql, "
                    "'WHERE') + 6) END FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name = 'hutch_tasks'"))
            return {name: predicate for name, predicate in rows}
    finally:
        engine.dispose()


def worker_collation(url: str) -> str | None:
    """PostgreSQL: the collation ``hutch_tasks.worker`` names (None: the default)."""
    if not url.startswith("postgresql"):
        return "sqlite"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT collation_name FROM information_schema.columns WHERE "
                "table_name = 'hutch_tasks' AND column_name = 'worker'")).scalar()
    finally:
        engine.dispose()


def test_0014_makes_the_five_indexes_partial_and_goes_back(empty_database_url: str) -> None:
    url = empty_database_url
    migrate.upgrade(url)
    found = predicates(url)
    for name, column in PARTIAL.items():
        assert column in (found[name] or "") and "NOT NULL" in found[name].upper(), found
    assert found["ix_hutch_tasks_state"] is None  # the others stay whole
    assert found["ix_hutch_tasks_finished_at_task_id"] is None
    assert worker_collation(url) in ("C", "sqlite")
    migrate.downgrade(url, "0013")
    back = predicates(url)
    assert set(back) == set(found)
    assert all(back[name] is None for name in PARTIAL), back
    assert worker_collation(url) in (None, "sqlite")  # the database's default again
    migrate.upgrade(url)
    assert predicates(url) == found and worker_collation(url) in ("C", "sqlite")


def test_what_a_dba_did_beforehand_is_left_alone(empty_database_url: str) -> None:
    """docs/dba.md: an index built CONCURRENTLY under another name and swapped in is kept;
    on PostgreSQL, ``worker`` already in "C" with its partial index built is not altered
    again (an ALTER would rebuild that index: a new file for it)."""
    url = empty_database_url
    migrate.upgrade(url, "0013")
    engine = make_engine(url)
    postgres = engine.dialect.name == "postgresql"
    file_of = sa.text("SELECT pg_relation_filenode('ix_hutch_tasks_worker')")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_hutch_tasks_group_id"))
            conn.execute(sa.text("CREATE INDEX ix_hutch_tasks_group_id ON hutch_tasks "
                                 "(group_id, created_at) WHERE group_id IS NOT NULL"))
            if postgres:
                conn.execute(sa.text("DROP INDEX ix_hutch_tasks_worker"))
                conn.execute(sa.text('ALTER TABLE hutch_tasks ALTER COLUMN worker TYPE '
                                     'varchar(255) COLLATE "C"'))
                conn.execute(sa.text("CREATE INDEX ix_hutch_tasks_worker ON hutch_tasks "
                                     "(worker, created_at, task_id) WHERE worker IS NOT NULL"))
                before = conn.execute(file_of).scalar()
        migrate.upgrade(url)
        with engine.connect() as conn:
            kept = [ix["column_names"] for ix in sa.inspect(conn).get_indexes("hutch_tasks")
                    if ix["name"] == "ix_hutch_tasks_group_id"]
            if postgres:
                assert conn.execute(file_of).scalar() == before
    finally:
        engine.dispose()
    assert kept == [["group_id", "created_at"]]  # not dropped and built again
    assert worker_collation(url) in ("C", "sqlite")


@pytest.fixture
def store(store_url: str) -> Iterator[ResultStore]:
    """Many plain tasks beside a few with each value, statistics up to date, and every
    statement the store runs recorded (text and parameters) for EXPLAIN."""
    store = ResultStore(store_url)
    store.write([StateChange(f"plain{n}", PENDING if n % 3 == 0 else SUCCESS, name="t.plain",
                             queue="celery", worker=None if n % 3 == 0 else f"w{n % 4}@h:{n % 7}")
                 for n in range(PLAIN)])
    store.write([StateChange("root", SUCCESS, name="t.root", worker="alpha@h:1"),
                 StateChange("kid1", SUCCESS, name="t.kid", parent_id="root", root_id="root",
                             group_id="g1", worker="alpha@h:2"),
                 StateChange("kid2", SUCCESS, name="t.kid", parent_id="root", root_id="root",
                             group_id="g1", worker="alpha@h:2"),
                 StateChange("beat1", SUCCESS, name="t.beat", schedule_name="nightly",
                             worker="beta@h:3")])
    with store.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE hutch_tasks" if store.dialect == "postgresql"
                             else "ANALYZE"))
    store.ran = []  # type: ignore[attr-defined]

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT"):
            store.ran.append((statement, parameters))  # type: ignore[attr-defined]

    for engine in {store.engine, store.statement_engine}:  # reads outside transactions too
        sa.event.listen(engine, "before_cursor_execute", record)
    yield store
    store.close()


def plans(store: ResultStore) -> str:
    """The plans of the SELECTs recorded since the last call, as one text."""
    ran, store.ran = store.ran, []  # type: ignore[attr-defined]
    explain = "EXPLAIN" if store.dialect == "postgresql" else "EXPLAIN QUERY PLAN"
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        text = []
        for statement, parameters in ran:
            cursor.execute(f"{explain} {statement}", parameters)
            text += [" ".join(str(part) for part in row) for row in cursor.fetchall()]
        return "\n".join(text)
    finally:
        raw.close()


@pytest.mark.parametrize("filters, index, found", [
    (TaskFilters(parent_id="root"), "ix_hutch_tasks_parent_id", {"kid1", "kid2"}),
    (TaskFilters(root_id="root"), "ix_hutch_tasks_root_id", {"kid1", "kid2"}),
    (TaskFilters(group_id="g1"), "ix_hutch_tasks_group_id", {"kid1", "kid2"}),
    (TaskFilters(schedule_name="nightly"), "ix_hutch_tasks_schedule_name", {"beat1"}),
])
def test_the_task_list_filters_still_read_the_partial_indexes(store, filters, index, found):
    assert {task.task_id for task in list_tasks(store, filters).items} == found
    assert index in plans(store)


def test_children_and_group_members_still_read_the_partial_indexes(store):
    assert store.children("root") == ["kid1", "kid2"]
    assert "ix_hutch_tasks_parent_id" in plans(store)
    assert store.group_tasks("g1") == ["kid1", "kid2"]
    assert "ix_hutch_tasks_group_id" in plans(store)


def test_a_worker_filter_reads_its_index(store):
    """A process (``node:pid``) is one comparison; a node is ``= name OR LIKE 'name:%'``,
    which PostgreSQL reads from the index because ``worker`` is byte-wise there (SQLite's
    LIKE ignores case, so it reads the rows in order of creation: fine at its sizes)."""
    assert [t.task_id for t in list_tasks(store, TaskFilters(worker="beta@h:3")).items] == [
        "beat1"]
    assert "ix_hutch_tasks_worker" in plans(store)
    assert {t.task_id for t in list_tasks(store, TaskFilters(worker="alpha@h")).items} == {
        "root", "kid1", "kid2"}
    node_plan = plans(store)
    assert ("ix_hutch_tasks_worker" in node_plan) == (store.dialect == "postgresql"), node_plan
    node = list_tasks(store, TaskFilters(worker="w1@h"), limit=500)
    assert len(node.items) == 500 and node.next_cursor is None  # n % 4 == 1, not PENDING
    assert {t.worker.rsplit(":", 1)[0] for t in node.items} == {"w1@h"}
