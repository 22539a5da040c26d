"""hutch_audit (hutch.ops.audit) on SQLite and the real PostgreSQL: entries written by
the dashboard's actions read back newest first, filtered by target and action; and
migration 0009 adds and removes the table."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from hutch.ops.audit import FAILED, OK, Actor, AuditEntry, AuditLog, entry
from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.results.store import ResultStore


def test_entries_come_back_newest_first_and_filtered(store_url):
    store = ResultStore(store_url)
    try:
        log = AuditLog(store)
        ada = Actor("ada", "admin", "10.0.0.5")
        assert log.record(entry(ada, "task.revoke", "id-1", ok=True, detail={"terminate": True}))
        log.record(entry(Actor("bob", "admin"), "queue.purge", "default", ok=False,
                         detail={"error": "no such queue"}))
        log.record(entry(ada, "task.retry", "id-1", ok=True))
        everything = log.entries()
        assert [e.action for e in everything] == ["task.retry", "queue.purge", "task.revoke"]
        revoke = everything[2]
        assert (revoke.actor, revoke.role, revoke.target, revoke.outcome, revoke.detail,
                revoke.client) == ("ada", "admin", "id-1", OK, {"terminate": True}, "10.0.0.5")
        assert revoke.at.tzinfo is not None
        assert revoke.at <= dt.datetime.now(dt.timezone.utc)
        assert [e.action for e in log.entries(target="id-1")] == ["task.retry", "task.revoke"]
        purge, = log.entries(action="queue.purge")
        assert purge.outcome == FAILED and purge.detail == {"error": "no such queue"}
        assert len(log.entries(limit=1)) == 1
    finally:
        store.close()


def test_an_overlong_target_is_cut_to_its_column_not_refused(store_url):
    store = ResultStore(store_url)
    try:
        log = AuditLog(store)
        log.record(AuditEntry(at=dt.datetime.now(dt.timezone.utc), actor="a" * 300,
                              role="admin", action="schedule.update", target="t" * 400,
                              outcome=OK))
        kept, = log.entries()
        assert (len(kept.actor), len(kept.target)) == (255, 255)
    finally:
        store.close()


def test_a_write_the_database_refuses_is_logged_and_the_action_stands(store_url, caplog):
    store = ResultStore(store_url)
    try:
        store.transaction("drop the audit table",
                          lambda conn: conn.execute(sa.text("DROP TABLE hutch_audit")))
        written = AuditLog(store).record(entry(Actor("ada", "admin"), "task.revoke", "id-1",
                                               ok=True))
        assert written is False
        assert "action not written to hutch_audit" in caplog.text and "ada" in caplog.text
    finally:
        store.close()


def test_migration_0009_adds_the_audit_table_and_goes_back(empty_database_url):
    url = empty_database_url
    migrate.upgrade(url, "0009")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            names = {ix["name"] for ix in sa.inspect(conn).get_indexes("hutch_audit")}
        assert names == {"ix_hutch_audit_at", "ix_hutch_audit_target"}
        migrate.downgrade(url, "0008")
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("hutch_audit")
            assert sa.inspect(conn).has_table("hutch_web_tokens")
    finally:
        engine.dispose()
