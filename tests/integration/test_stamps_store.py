"""``hutch_tasks.stamps`` and ``hutch_revoked_stamps`` (migration 0012) on SQLite and
PostgreSQL: the column is written by the PENDING, RECEIVED and STARTED changes, kept by
later ones, NULL for an unstamped task; stamp revocations are kept and refreshed; the
migration goes up over existing rows and back down."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.results.records import PENDING, RECEIVED, STARTED, SUCCESS, StateChange
from hutch.results.store import ResultStore

UTC = dt.timezone.utc


@pytest.fixture
def store(store_url: str) -> Iterator[ResultStore]:
    with ResultStore(store_url) as opened:
        yield opened


def test_the_stamps_column_is_written_and_kept(store):
    stamps = {"tenant": "acme", "batch": [7, 8], "flag": True, "none": None}
    store.write([StateChange(task_id="s", state=PENDING, name="t", stamps=stamps),
                 StateChange(task_id="plain", state=PENDING, name="t")])
    store.write([StateChange(task_id="s", state=RECEIVED, stamps=stamps)])
    store.write([StateChange(task_id="s", state=STARTED)])
    store.write([StateChange(task_id="s", state=SUCCESS, result=1),
                 StateChange(task_id="plain", state=SUCCESS, result=2)])
    assert store.get("s").stamps == stamps
    assert store.get("plain").stamps is None


def test_stamp_revocations_are_kept_refreshed_and_expire(store):
    store.revoke_stamps({("tenant", '"acme"'), ("batch", "7")}, retention=3600)
    store.revoke_stamps({("tenant", '"acme"')}, retention=3600, terminate=True,
                        signal="SIGKILL")
    store.revoke_stamps({("old", '"x"')}, retention=-1)  # honoured until a second ago
    assert store.revoked_stamps() == {("tenant", '"acme"'), ("batch", "7")}


def test_migration_0012_adds_the_column_over_existing_rows_and_goes_back(empty_database_url):
    url = empty_database_url
    migrate.upgrade(url, "0011")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO hutch_tasks (task_id, state, retries) "
                                 "VALUES ('old', 'SUCCESS', 0)"))
        migrate.upgrade(url, "0012")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("hutch_tasks")}
            assert "stamps" in columns and sa.inspect(conn).has_table("hutch_revoked_stamps")
            assert conn.execute(sa.text("SELECT stamps FROM hutch_tasks")).scalar() is None
        migrate.downgrade(url, "0011")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("hutch_tasks")}
            assert "stamps" not in columns
            assert not sa.inspect(conn).has_table("hutch_revoked_stamps")
            assert conn.execute(sa.text("SELECT task_id FROM hutch_tasks")).scalar() == "old"
        migrate.upgrade(url)
        with engine.connect() as conn:
            assert sa.inspect(conn).has_table("hutch_revoked_stamps")
    finally:
        engine.dispose()
