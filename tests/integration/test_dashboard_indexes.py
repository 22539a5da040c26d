"""The task list's indexes (migration 0010) and the queries shaped to use them, on
SQLite and PostgreSQL: every sort pages through NULLs and ties exactly like one
query, and a text search finds old rows past its first window of recent ones."""

import datetime as dt

import pytest
import sqlalchemy as sa

from hutch.ops import tasks as ops
from hutch.ops.tasks import TaskFilters, list_tasks, state_counts
from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.results.records import StateChange
from hutch.results.store import ResultStore

DASHBOARD_INDEXES = {"ix_hutch_tasks_created_at", "ix_hutch_tasks_received_at",
                     "ix_hutch_tasks_started_at", "ix_hutch_tasks_state_created_at",
                     "ix_hutch_tasks_queue", "ix_hutch_tasks_worker",
                     "ix_hutch_tasks_name_created_at", "ix_hutch_tasks_finished_at_task_id"}
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def indexes(url: str) -> dict[str, list[str]]:
    """hutch_tasks' indexes by name, each with its key columns; on PostgreSQL also its
    definition, under ``sql:<name>``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = {ix["name"]: ix["column_names"]
                     for ix in sa.inspect(conn).get_indexes("hutch_tasks")}
            if engine.dialect.name == "postgresql":
                found |= {f"sql:{name}": [sql] for name, sql in conn.execute(sa.text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'hutch_tasks'"))}
            return found
    finally:
        engine.dispose()


def test_migration_0010_adds_the_dashboard_indexes_and_goes_back(empty_database_url):
    url = empty_database_url
    migrate.upgrade(url, "0010")
    found = indexes(url)
    assert DASHBOARD_INDEXES <= set(found)
    assert found["ix_hutch_tasks_name_created_at"] == ["name", "created_at", "task_id"]
    assert found["ix_hutch_tasks_finished_at_task_id"] == ["finished_at", "task_id"]
    assert not {"ix_hutch_tasks_name", "ix_hutch_tasks_finished_at"} & set(found)
    if url.startswith("postgresql"):
        search, = found["sql:ix_hutch_tasks_search"]
        assert "USING gin" in search and "gin_trgm_ops" in search
        assert "INCLUDE (state)" in found["sql:ix_hutch_tasks_name_created_at"][0]
    else:
        assert "ix_hutch_tasks_search" not in found
    migrate.downgrade(url, "0009")
    back = indexes(url)
    assert not DASHBOARD_INDEXES & set(back) and "ix_hutch_tasks_search" not in back
    assert back["ix_hutch_tasks_name"] == ["name"]
    assert back["ix_hutch_tasks_finished_at"] == ["finished_at"]
    migrate.upgrade(url)
    assert set(indexes(url)) == set(found)


def row(n: int, **fields) -> StateChange:
    """Task ``n``: created at minute n//2 (pairs tie), received and finished unless
    told otherwise, named by n % 3 (one in three unnamed)."""
    created = T0 + dt.timedelta(minutes=n // 2)
    fields.setdefault("received_at", None if n % 4 == 0 else created + dt.timedelta(seconds=5))
    fields.setdefault("finished_at", None if n % 5 == 0 else created + dt.timedelta(seconds=9))
    fields.setdefault("name", None if n % 3 == 0 else f"tests.t{n % 3}")
    return StateChange(task_id=f"t{n:02d}", state=fields.pop("state", "SUCCESS"),
                       created_at=created, **fields)


@pytest.fixture
def store(store_url):
    store = ResultStore(store_url)
    store.write([row(n, args=[n, "needle" if n in (1, 2, 14) else "hay"],
                     state="FAILURE" if n % 2 else "SUCCESS") for n in range(1, 17)])
    yield store
    store.close()


def walk(store: ResultStore, sort: str, limit: int, filters: TaskFilters | None = None
         ) -> list[str]:
    seen, cursor = [], None
    while True:
        page = list_tasks(store, filters or TaskFilters(), after=cursor, limit=limit, sort=sort)
        seen += [task.task_id for task in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def expected(store: ResultStore, sort: str) -> list[str]:
    """The order the API promises, worked out in Python: the key (created time after
    a name or state), task id breaking ties, rows without the key's value last."""
    rows = list_tasks(store, TaskFilters(), limit=ops.MAX_LIMIT).items
    field = {"created": "created_at", "received": "received_at", "finished": "finished_at",
             "started": "started_at", "name": "name", "state": "state"}[sort.lstrip("-")]
    extra = () if field.endswith("_at") else ("created_at",)
    valued = sorted((r for r in rows if getattr(r, field) is not None),
                    key=lambda r: (getattr(r, field), *(getattr(r, e) for e in extra), r.task_id),
                    reverse=sort.startswith("-"))
    unset = sorted((r for r in rows if getattr(r, field) is None),
                   key=lambda r: (*(getattr(r, e) for e in extra), r.task_id),
                   reverse=sort.startswith("-"))
    return [r.task_id for r in valued + unset]


@pytest.mark.parametrize("sort", ["created", "-created", "received", "-received", "finished",
                                  "-finished", "name", "-name", "state", "-state"])
def test_every_sort_pages_in_key_order_nulls_last(store, sort):
    assert walk(store, sort, 3) == expected(store, sort)
    assert len(set(walk(store, sort, 1))) == 16


def test_a_name_or_state_sort_orders_its_tasks_by_creation(store):
    named = [t.task_id for t in list_tasks(store, TaskFilters(), sort="name", limit=4).items]
    assert named == ["t01", "t04", "t07", "t10"]  # tests.t1, by creation
    failed = [t.task_id for t in list_tasks(store, TaskFilters(), sort="-state", limit=3).items]
    assert failed == ["t16", "t14", "t12"]  # SUCCESS last created first


@pytest.mark.parametrize("window", [2, 5000])
def test_a_search_finds_old_rows_past_its_recent_window(store, monkeypatch, window):
    monkeypatch.setattr(ops, "SEARCH_WINDOW", window)
    needle = TaskFilters(search="NEEDLE")
    assert walk(store, "-created", 1, needle) == ["t14", "t02", "t01"]
    assert walk(store, "created", 2, needle) == ["t01", "t02", "t14"]
    assert walk(store, "-name", 2, needle) == ["t14", "t02", "t01"]
    assert walk(store, "-created", 2, TaskFilters(states=("SUCCESS",), search="needle")) == [
        "t14", "t02"]
    assert walk(store, "-created", 5, TaskFilters(search="t03")) == ["t03"]
    assert state_counts(store, needle)["SUCCESS"] == 2
