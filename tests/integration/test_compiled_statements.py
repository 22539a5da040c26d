"""The store's per-task statements compiled once (hutch.results.compiled), on PostgreSQL.

Run against a real server: the compiled text must be what SQLAlchemy itself sends
once connected, and running it must store and return exactly what the statement does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hutch.results.compiled import Precompiled, compile_once
from hutch.results.models import tasks
from hutch.results.records import RECEIVED, SUCCESS, Applied, Claims, StateChange
from hutch.results.store import ResultStore, batch_upsert, carried_columns

pytestmark = pytest.mark.postgres

UTC = dt.timezone.utc


@pytest.fixture
def store(fresh_postgres_url: str) -> Iterator[ResultStore]:
    with ResultStore(fresh_postgres_url) as store:
        yield store


def test_a_tasks_claim_and_outcome_run_as_compiled_text(store: ResultStore) -> None:
    """The two writes every task costs a worker skip SQLAlchemy's statement cache: a
    returned column given a type that needs processing would silently undo that."""
    assert isinstance(store._quick_claim, Precompiled)
    assert isinstance(store._carry_upsert, Precompiled)
    assert all(isinstance(s, Precompiled) for s in store._upserts.values())


def test_the_compiled_text_is_what_sqlalchemy_sends_once_connected(store: ResultStore) -> None:
    """Compiled when the store is made, before any connection: the dialect learns the
    server's version on connect, and the text must not depend on it."""
    sent: list[str] = []
    sa.event.listen(store.statement_engine, "before_cursor_execute",
                    lambda conn, cursor, sql, *rest: sent.append(sql))
    store.write([StateChange(task_id="a", state=SUCCESS, result=1)], carry=Applied())
    statement = batch_upsert("postgresql", force=False, returning=False).returning(
        *carried_columns("postgresql"))
    with store.statement_engine.connect() as conn:
        assert sent[-1] == statement.compile(dialect=conn.dialect).string


def test_compiled_text_stores_and_returns_what_the_statement_does(
        store: ResultStore, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same changes through the compiled store and through the SQLAlchemy statements
    leave the same rows, claim the same ids and carry the same outcomes."""
    with monkeypatch.context() as patch:
        patch.setattr(ResultStore, "_hot", lambda self, statement: statement)
        plain = ResultStore(fresh_postgres_url)  # the same database, statements uncompiled
    with plain:
        assert not isinstance(plain._carry_upsert, Precompiled)
        now = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
        outcomes = {}
        for prefix, each in (("c", store), ("p", plain)):
            claims = Claims(frozenset({f"{prefix}1", f"{prefix}2"}), durable=False)
            each.write([StateChange(task_id=f"{prefix}2", state=SUCCESS, result=0)])
            each.write([StateChange(task_id=f"{prefix}{i}", state=RECEIVED, name="t", received_at=now)
                        for i in (1, 2)], claims=claims)
            carry = Applied()
            each.write([StateChange(task_id=f"{prefix}1", state=SUCCESS, finished_at=now,
                                    result={"k": [1, "é", None]}),
                        StateChange(task_id=f"{prefix}3", state=SUCCESS, result_encoded=b"\x00\xff",
                                    result_content_type="application/x-test")], carry=carry)
            outcomes[prefix] = (sorted(claims.found), carry.carried)
        assert outcomes["c"] == (["c2"], {"c1": outcomes["p"][1]["p1"],
                                          "c3": outcomes["p"][1]["p3"]})
        assert outcomes["p"][0] == ["p2"]
        assert outcomes["c"][1]["c1"].result == {"k": [1, "é", None]}
        columns = [c for c in tasks.c if c.name not in ("task_id", "updated_at", "created_at")]
        with store.engine.connect() as conn:
            rows = {r.task_id: r for r in conn.execute(sa.select(tasks.c.task_id, *columns))}
        for i in (1, 2, 3):
            assert rows[f"c{i}"][1:] == rows[f"p{i}"][1:]


def test_statements_whose_values_need_processing_stay_statements(store: ResultStore) -> None:
    dialect = store.engine.dialect
    dated = sa.select(tasks.c.task_id, tasks.c.created_at)  # UTCDateTime: a result processor
    valued = sa.select(tasks.c.task_id).where(tasks.c.state == SUCCESS)  # a bound value
    listed = sa.select(tasks.c.task_id).where(  # its text is finished at execution
        tasks.c.task_id.in_(sa.bindparam("ids", expanding=True)))
    assert compile_once(dated, dialect) is dated
    assert compile_once(valued, dialect) is valued
    assert compile_once(listed, dialect) is listed
    assert isinstance(compile_once(sa.select(tasks.c.task_id), dialect), Precompiled)
