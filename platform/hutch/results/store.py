"""The result store: every task state change goes through :meth:`ResultStore.write`.

Workers batch state changes and commit each batch in one transaction, so
``write`` is the hot path: one ``INSERT ... ON CONFLICT DO UPDATE`` for the
whole batch (on PostgreSQL reading the rows from one JSON document), with the
precedence rule evaluated by the database itself. That
makes writes from many workers safe without locks or read-modify-write: a late
or duplicated change (a redelivered message, a slow worker) can never move a
task backwards.

Precedence (see :data:`hutch.results.records.STATE_RANK`): a change applies to a
stored row when the row is ``PENDING`` (unless the change is a PENDING with fewer
retries: a client's late row after a ``self.replace()``), or when the row is not
ready and the change's ``(retries, rank(state))`` is greater than the row's. Fields left
``None`` in a change keep the stored value, except the outcome columns
(result and exception) of a ready change, which replace the outcome of earlier
attempts: a task that succeeded on its second try shows no traceback; and the
exception columns of a change carrying an exception (a RETRY), written together.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    Executable,
    Insert,
    String,
    Table,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from ..config import Settings, mask_url
from ..errors import BackendError, UnstorableValue
from ..messages import CARRY_MAX, Carried
from ..serialization import SERIALIZERS
from . import owners
from .compiled import Precompiled, compile_once
from .groups import (
    Counts,
    GroupRecord,
    add_written,
    counting_upsert,
    insert_groups,
    mark_sent,
    read_groups,
    save_group,
)
from .migrate import ensure_schema, first_line, schema_problem
from .models import (
    UTCDateTime,
    is_sqlite_memory,
    make_engine,
    revoked,
    revoked_stamps,
    rows_by_ids,
    task_attempts,
    tasks,
)
from .records import (
    PENDING,
    READY_STATES,
    RETRY,
    REVOKED,
    STARTED,
    STATE_RANK,
    SUCCESS,
    Applied,
    Claims,
    Seen,
    StateChange,
    TaskRecord,
)

T = TypeVar("T")

EXCEPTION_COLUMNS = ("exception_type", "exception_message", "exception_args", "traceback")
"""Written together, exactly as given, by a change that carries an exception (a RETRY
too), so one attempt's arguments never stand beside another attempt's message."""
OUTCOME_COLUMNS = ("result", "result_encoded", "result_content_type", *EXCEPTION_COLUMNS)
"""Written exactly as given by a ready (or forced) change; otherwise kept when None."""

ALWAYS_WRITTEN = ("state", "retries", "updated_at")
INSERT_ONLY = ("task_id", "created_at")
COALESCED = tuple(c.name for c in tasks.columns
                  if c.name not in OUTCOME_COLUMNS + ALWAYS_WRITTEN + INSERT_ONLY)

JSON_COLUMNS = frozenset({"args", "kwargs", "result", "exception_args", "stamps"})
JSON_CONTENT_TYPE = SERIALIZERS["json"].content_type
DATETIME_COLUMNS = tuple(c.name for c in tasks.columns if isinstance(c.type, UTCDateTime))
UTC = dt.timezone.utc
TEXT_LENGTHS = {c.name: c.type.length for c in tasks.columns
                if isinstance(c.type, String) and c.type.length}

CHANGE_FIELDS = tuple(f.name for f in dataclasses.fields(StateChange))
RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))

RETRY_PAUSE = 0.5
"""Seconds before the one retry after a lost connection (e.g. PostgreSQL restarting)."""



class ResultStore:
    """Reads and writes ``hutch_tasks`` in a SQLite or PostgreSQL database.

    Thread-safe; one instance per process is enough. SQLite is migrated on first
    use (``auto_upgrade`` defaults to True there) so the embedded default needs no
    setup; PostgreSQL is migrated by the operator with ``hutch db upgrade``.
    """

    def __init__(self, url: str, *, auto_upgrade: bool | None = None,
                 reconnect_pause: float = RETRY_PAUSE) -> None:
        """``reconnect_pause``: seconds before the one retry of an action whose
        connection was lost (0: at once, for callers that retry on their own)."""
        self.url = url
        self.reconnect_pause = reconnect_pause
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        # One-statement work runs outside a transaction block on PostgreSQL. An engine
        # of its own keeps its connections in autocommit: switching a pooled connection
        # there and back at each checkout cost about a fifth of a one-row write's CPU.
        self._bare: Engine | None = make_engine(url, autocommit=True) \
            if self.dialect == "postgresql" else None
        self.auto_upgrade = self.dialect == "sqlite" if auto_upgrade is None else auto_upgrade
        # One shared connection serves an in-memory SQLite database: take turns on it.
        self._turns: AbstractContextManager[Any] = (
            threading.RLock() if is_sqlite_memory(url) else nullcontext())
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        upserts = {(force, returning): batch_upsert(self.dialect, force=force,
                                                    returning=returning)
                   for force in (False, True) for returning in (False, True)}
        self._counting = counting_upsert(upserts[(False, False)]) \
            if self.dialect == "postgresql" else None
        self._upserts = {key: self._hot(upsert) for key, upsert in upserts.items()}
        self._quick_claim = self._hot(batch_upsert(self.dialect, force=False, returning=True,
                                                   durable=False))
        self._carry_upsert = self._hot(upserts[(False, False)].returning(
            *carried_columns(self.dialect)))
        self._revoke_upsert = revocation_upsert(self.dialect)
        self._stamp_upsert = revocation_upsert(self.dialect, revoked_stamps)
        self._insert_only = _insert(self.dialect)(tasks).on_conflict_do_nothing(
            index_elements=[tasks.c.task_id])
        self._attempt_insert = attempt_insert(self.dialect)

    def _hot(self, statement: Insert) -> Precompiled | Insert:
        """A statement run for every task, compiled once on PostgreSQL (see
        hutch.results.compiled); SQLite runs its upserts per row (executemany)."""
        if self.dialect != "postgresql":
            return statement
        return compile_once(statement, self.engine.dialect)

    # -- writing -----------------------------------------------------------

    def write(self, changes: Sequence[StateChange], *, force: bool = False,
              within: Callable[[Connection], T] | None = None,
              counts: Counts | None = None, claims: Claims | None = None,
              carry: Applied | None = None) -> T | None:
        """Apply a batch of state changes in one transaction.

        ``force=True`` skips precedence and writes state, retries and outcome
        exactly as given (dead-letter replay resets a finished task this way).
        ``counts`` (not with ``force``, ``claims`` or ``carry``): chord header
        outcomes the batch's write counts (see :class:`Counts`), on PostgreSQL in
        the upsert's own statement. ``within(conn)`` runs in the same transaction
        after that (chord failures and new groups, worker/chords.py); its return
        value is returned.
        ``claims`` names RECEIVED changes of the batch that must say what they found
        (see :class:`Claims`): the upsert returns the ids it applied to, and only the
        others are read back, so a batch of first deliveries costs no extra statement.
        ``carry`` (not with ``claims``) is filled with the small SUCCESS rows the
        upsert applied to, as stored, for the completion notice to carry (the
        upsert returns them: no extra statement).
        A value the database refuses (a NUL character on PostgreSQL, a name longer
        than its column, something JSON cannot encode) is made storable and the
        batch written again. Raises :class:`BackendError` when the database
        fails (after one retry if the connection was lost).
        """
        if not changes and within is None:
            return None
        now = dt.datetime.now(dt.timezone.utc)
        rows = [_row(change, now) for change in merge_batch(changes, force=force)]
        # Before folding: a RETRY followed in this batch by the next attempt's STARTED.
        retried = [change for change in changes if change.state == RETRY]
        attempts = attempt_rows(changes, retried, now) if retried else []

        def work(batch: list[dict[str, Any]]) -> Callable[[Connection], T | None]:
            def run(conn: Connection) -> T | None:
                if attempts:  # before the upsert: it reads the attempt's stored start
                    conn.execute(self._attempt_insert, attempts)
                if counts is not None:
                    self._counted(conn, batch, counts)
                elif batch and claims is not None and claims.ids:
                    claims.found = self._claimed(conn, batch, claims)
                elif batch and carry is not None and not force:
                    carry.carried = self._carried(conn, batch)
                elif batch:
                    self._upsert_rows(conn, batch, force=force)
                return within(conn) if within is not None else None
            return run

        # SQLite: take the write lock before reading (the chord count tests the rows)
        immediate = within is not None or counts is not None
        # One statement on PostgreSQL (the upsert, or the upsert and the chord count; a
        # claim's rare read-back after it sees what a transaction's would): autocommit,
        # one round trip, not three.
        single = within is None and not attempts
        try:
            return self._run("write", work(rows), write_first=immediate, autocommit=single)
        except UnstorableValue:
            # One bad value must not wedge the batch (the worker would retry it forever):
            # store the batch again with every value made storable, and if the database
            # still refuses one, with every JSON value as its text.
            try:
                return self._run("write", work([storable(row) for row in rows]),
                                 write_first=immediate, autocommit=single)
            except UnstorableValue:
                return self._run("write", work([storable(as_text(row)) for row in rows]),
                                 write_first=immediate, autocommit=single)

    def _counted(self, conn: Connection, batch: list[dict[str, Any]], counts: Counts) -> None:
        """Write the batch and count the chord header outcomes it wrote."""
        if self._counting is not None:
            if batch:
                parameters = {**_as_document(batch), **counts.parameters()}
                counts.written = set(_execute(conn, self._counting, parameters).scalars())
            return
        ids = {e.task_id for e in counts.events}
        watched = [row for row in batch if row["task_id"] in ids]
        counts.written = self._will_apply(conn, watched) if watched else set()
        if batch:
            self._upsert_rows(conn, batch)
        add_written(conn, counts)

    def _claimed(self, conn: Connection, batch: list[dict[str, Any]],
                 claims: Claims) -> dict[str, Seen]:
        """Write the batch; the stored rows of the claimed ids it did not apply to."""
        if claims.durable or self.dialect != "postgresql":
            applied = set(self._upsert_rows(conn, batch, returning=True).scalars())
        else:
            applied = set(_execute(conn, self._quick_claim, _as_document(batch)).scalars())
        kept = sorted(claims.ids - applied)
        if not kept:
            return {}
        query = select(tasks.c.task_id, tasks.c.state, tasks.c.retries, tasks.c.worker,
                       tasks.c.received_at)
        return {row.task_id: Seen(row.state, row.retries, row.worker, row.received_at)
                for row in conn.execute(query.where(tasks.c.task_id.in_(kept)))}

    def _carried(self, conn: Connection, batch: list[dict[str, Any]]) -> dict[str, Carried]:
        """Write the batch; the small SUCCESS rows it applied to, as stored."""
        found = _execute(conn, self._carry_upsert, self._batch_parameters(batch))
        return {row.task_id: Carried(row.result, row.result_encoded, row.result_content_type)
                for row in found if row.carried}

    def _upsert_rows(self, conn: Connection, rows: list[dict[str, Any]], *,
                     force: bool = False, returning: bool = False) -> CursorResult[Any]:
        """The batch write (see :func:`batch_upsert`): one statement reading a JSON
        document on PostgreSQL, the upsert per row elsewhere."""
        return _execute(conn, self._upserts[(force, returning)], self._batch_parameters(rows))

    def _batch_parameters(self, rows: list[dict[str, Any]]) -> Any:
        """What the batch upsert takes: one JSON document on PostgreSQL, the rows
        elsewhere (see :func:`batch_upsert`)."""
        return _as_document(rows) if self.dialect == "postgresql" else rows

    def _will_apply(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """SQLite: ids of ``rows`` the upsert will apply, tested with the same rule on
        the stored rows before it runs (this transaction holds the writer lock)."""
        ids = [row["task_id"] for row in rows]
        query = select(tasks.c.task_id, tasks.c.state, tasks.c.retries, tasks.c.started_at)
        stored = {r.task_id: r for r in conn.execute(query.where(tasks.c.task_id.in_(ids)))}
        applied = set()
        for row in rows:
            old = stored.get(row["task_id"])
            change = StateChange(task_id=row["task_id"], state=row["state"],
                                 retries=row["retries"], started_at=row["started_at"])
            if old is None or supersedes(change, old.state, old.retries, old.started_at):
                applied.add(row["task_id"])
        return applied

    def write_in(self, conn: Connection, changes: Sequence[StateChange]) -> None:
        """Apply state changes inside a transaction that ``within`` was given."""
        now = dt.datetime.now(dt.timezone.utc)
        rows = [storable(_row(change, now)) for change in merge_batch(changes)]
        if rows:
            self._upsert_rows(conn, rows)

    # -- groups (hutch_groups) ---------------------------------------------

    def insert_groups(self, rows: Sequence[Any]) -> None:
        """Store new groups (workflows.plan.GroupRow) before their tasks are sent."""
        now = dt.datetime.now(dt.timezone.utc)
        if rows:
            self._run("store groups", lambda conn: insert_groups(conn, rows, now))

    def get_groups(self, group_ids: Iterable[str]) -> dict[str, GroupRecord]:
        """Stored groups among ``group_ids``, keyed by id."""
        ids = list(group_ids)
        return self._run("read groups", lambda conn: read_groups(conn, ids)) if ids else {}

    def connected(self, worker: str) -> bool | None:
        """Whether the worker process ``worker`` holds a connection to this database
        (hutch.results.owners); None where the database cannot tell (SQLite)."""
        if self.dialect != "postgresql":
            return None
        return self.read_now("look for a worker's connection",
                             lambda conn: owners.connected(conn, worker))

    def read_now(self, action: str, work: Callable[[Connection], T]) -> T:
        """Run a read outside any transaction block (PostgreSQL autocommit: one round
        trip), seeing everything committed before it starts."""
        self._check_schema()
        try:
            with self._turns, self.statement_engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise self._error(action, exc) from None

    def statement(self, action: str, work: Callable[[Connection], T]) -> T:
        """``work(connection)``, one statement (a write or a read), outside any
        transaction block on PostgreSQL (one round trip, on :attr:`statement_engine`),
        with the store's retry and one-line errors."""
        return self._run(action, work, autocommit=True)

    def transaction(self, action: str, work: Callable[[Connection], T], *,
                    write_first: bool = False) -> T:
        """``work(connection)`` in one transaction, with the store's retry and one-line
        errors, for the other tables in this database (chords, hutch.beat). A ``work``
        that reads before it writes passes ``write_first`` (SQLite then takes the write
        lock at BEGIN); one that starts with a write waits for the lock anyway."""
        return self._run(action, work, write_first=write_first)

    def mark_sent(self, group_ids: Sequence[str]) -> None:
        """Chord bodies (or errbacks) confirmed published (``hutch_groups.body_sent_at``)."""
        now = dt.datetime.now(dt.timezone.utc)
        self._run("mark chord bodies sent", lambda conn: mark_sent(conn, group_ids, now))

    def save_group(self, group_id: str, member_ids: Sequence[str]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        self._run("save group", lambda conn: save_group(conn, group_id, list(member_ids), now))

    def forget(self, task_id: str) -> None:
        """Delete a task's row and its attempts (``AsyncResult.forget()``)."""
        def work(conn: Connection) -> None:
            conn.execute(delete(tasks).where(tasks.c.task_id == task_id))
            conn.execute(delete(task_attempts).where(task_attempts.c.task_id == task_id))
        self._run("forget", work)

    # -- revocations -------------------------------------------------------

    def revoke(self, task_ids: Sequence[str], *, retention: float, terminate: bool = False,
               signal: str | None = None) -> list[str]:
        """Store revocations, and mark REVOKED the tasks no worker has picked up yet.

        Returns the ids marked here. A task already received or running keeps its
        row: the worker that holds it writes REVOKED when it drops (or terminates)
        it, so a row never says REVOKED for a task that went on to run. Each
        revocation is honoured for ``retention`` seconds past now or past the
        task's eta, whichever is later.
        """
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        now = dt.datetime.now(dt.timezone.utc)

        def work(conn: Connection) -> list[str]:
            etas = dict(conn.execute(select(tasks.c.task_id, tasks.c.eta)
                                     .where(tasks.c.task_id.in_(ids))).all())
            keep = dt.timedelta(seconds=retention)
            conn.execute(self._revoke_upsert, [
                {"task_id": i, "revoked_at": now, "terminate": terminate, "signal": signal,
                 "honour_until": max(now, etas.get(i) or now) + keep} for i in ids])
            return _mark_revoked(conn, ids, set(etas), now, self._insert_only)

        return self._run("revoke", work, write_first=True)

    def revoked_ids(self) -> set[str]:
        """Ids whose revocation is still to be honoured (what a starting worker loads)."""
        now = dt.datetime.now(dt.timezone.utc)
        query = select(revoked.c.task_id).where(revoked.c.honour_until > now)
        return self.statement("read revocations", lambda conn: set(conn.execute(query).scalars()))

    def revoke_stamps(self, keys: Collection[tuple[str, str]], *, retention: float,
                      terminate: bool = False, signal: str | None = None) -> None:
        """Store revocations by stamp: ``(name, value as canonical JSON)`` pairs
        (hutch.messages.stamp_key), honoured for ``retention`` seconds from now. Rows are
        left as they are: the worker that drops a stamped task marks it REVOKED."""
        if not keys:
            return
        now = dt.datetime.now(dt.timezone.utc)
        until = now + dt.timedelta(seconds=retention)
        rows = [{"name": name, "value": value, "revoked_at": now, "honour_until": until,
                 "terminate": terminate, "signal": signal} for name, value in sorted(keys)]
        self._run("revoke by stamps", lambda conn: conn.execute(self._stamp_upsert, rows),
                  write_first=True)

    def revoked_stamps(self) -> set[tuple[str, str]]:
        """The stamp revocations still to be honoured, as ``(name, value)`` pairs."""
        now = dt.datetime.now(dt.timezone.utc)
        query = select(revoked_stamps.c.name, revoked_stamps.c.value).where(
            revoked_stamps.c.honour_until > now)
        return self.statement("read revocations",
                              lambda conn: {(n, v) for n, v in conn.execute(query).all()})

    # -- reading -----------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's row, or ``None`` if no change was ever written for it."""
        return self.get_many([task_id]).get(task_id)

    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskRecord]:
        """Rows for the ids that exist, keyed by id (missing ids are left out)."""
        ids = list(task_ids)

        def read(conn: Connection) -> dict[str, TaskRecord]:
            return {row["task_id"]: _record(row)
                    for row in rows_by_ids(conn, tasks.c.task_id, ids)}

        # Each SELECT sees what was committed before it starts, in a transaction or not:
        # autocommit spares the BEGIN and COMMIT round trips (get() reads this way).
        return self._run("read", read, autocommit=True) if ids else {}

    def children(self, task_id: str) -> list[str]:
        """Ids of the tasks whose parent is ``task_id``, oldest first."""
        query = (select(tasks.c.task_id).where(tasks.c.parent_id == task_id)
                 .order_by(tasks.c.created_at, tasks.c.task_id))
        return self._run("read", lambda conn: list(conn.execute(query).scalars()))

    def group_tasks(self, group_id: str) -> list[str]:
        """Ids of the tasks whose ``group_id`` is ``group_id``, oldest first."""
        query = (select(tasks.c.task_id).where(tasks.c.group_id == group_id)
                 .order_by(tasks.c.created_at, tasks.c.task_id))
        return self._run("read", lambda conn: list(conn.execute(query).scalars()))

    def count(self, state: str | None = None) -> int:
        """How many rows there are, optionally only those in ``state``."""
        query = select(func.count()).select_from(tasks)
        if state is not None:
            query = query.where(tasks.c.state == state)
        return self.statement("count", lambda conn: int(conn.execute(query).scalar_one()))

    def ping(self) -> None:
        """One ``SELECT 1``: returns once the database answers, BackendError if not (a
        check that reads no table costs the same at ten rows and at ten million)."""
        self.statement("reach the database", lambda conn: conn.execute(select(1)).scalar())

    # -- lifetime ----------------------------------------------------------

    @property
    def statement_engine(self) -> Engine:
        """Where work of one statement runs: on PostgreSQL an engine of its own whose
        connections stay in autocommit, else :attr:`engine`."""
        return self._bare or self.engine

    def close(self) -> None:
        """Close every pooled connection. The store reconnects if used again."""
        self.engine.dispose()
        if self._bare is not None:
            self._bare.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({mask_url(self.url)!r})"

    # -- plumbing ----------------------------------------------------------

    def _run(self, action: str, work: Callable[[Connection], T], *,
             write_first: bool = False, autocommit: bool = False) -> T:
        """Run ``work`` in a transaction; retry once if the connection was lost.

        ``write_first``: ``work`` reads, then writes, so SQLite takes the write lock
        at BEGIN; a deferred transaction upgrading while another connection writes
        fails at once, whatever the busy timeout. ``autocommit``: ``work`` is one
        statement (or statements that need no common transaction), run outside any
        transaction block on PostgreSQL: psycopg sends BEGIN and COMMIT as round
        trips of their own. SQLite keeps its transaction.
        """
        self._check_schema()
        options: dict[str, Any] = {"sqlite_begin": "BEGIN IMMEDIATE"} if write_first else {}
        bare = self._bare if autocommit else None
        for attempt in (1, 2):
            try:
                if bare is not None:
                    with bare.connect() as conn:
                        return work(conn)
                with self._turns, self.engine.connect() as conn:
                    with conn.execution_options(**options).begin():
                        return work(conn)
            except SQLAlchemyError as exc:
                if attempt == 1 and _is_transient(exc):
                    time.sleep(self.reconnect_pause)
                    continue
                raise self._error(action, exc) from None
        raise AssertionError("unreachable")

    def _check_schema(self) -> None:
        """On first use: migrate (auto_upgrade) or make sure someone has."""
        if self._schema_ready:
            return
        with self._schema_lock, self._turns:
            if self._schema_ready:
                return
            if self.auto_upgrade:
                ensure_schema(self.engine)
            elif problem := self._schema_problem():
                raise BackendError(f"result backend {mask_url(self.url)}: {problem}; "
                                   "run `hutch db upgrade`")
            self._schema_ready = True

    def _schema_problem(self) -> str | None:
        try:
            with self.statement_engine.connect() as conn:  # reads only
                return schema_problem(conn)
        except SQLAlchemyError as exc:
            raise self._error("connect", exc) from None

    def _error(self, action: str, exc: SQLAlchemyError) -> BackendError:
        reason = first_line(exc)
        if "hutch_" in reason and ("does not exist" in reason or "no such table" in reason):
            reason += "; run `hutch db upgrade`"
        kind = UnstorableValue if _is_bad_value(exc) else BackendError
        return kind(f"result backend {mask_url(self.url)}: {action} failed: {reason}")


def _execute(conn: Connection, statement: Precompiled | Executable,
             rows: list[dict[str, Any]] | dict[str, Any]) -> CursorResult[Any]:
    try:
        if isinstance(statement, Precompiled):
            return statement.run(conn, rows)
        return conn.execute(statement, rows)
    except (TypeError, ValueError) as exc:  # raised by the driver's JSON dumper
        raise UnstorableValue(f"write failed: {exc}") from None


def _as_document(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The rows as the one JSON document :func:`batch_upsert` reads on PostgreSQL:
    datetimes in ISO 8601 with their offset (naive ones taken as UTC), bytes in
    bytea's hex form, JSON columns nested as they are. A None value is left out:
    ``jsonb_to_recordset`` reads a missing key as NULL, as it reads a JSON null, and a
    claim or an outcome sets 9 of the row's 27 columns (half the document to encode and
    for the server to parse)."""
    out = []
    for row in rows:
        item = {name: value for name, value in row.items() if value is not None}
        for name in DATETIME_COLUMNS:
            value = item.get(name)
            if value is not None:
                item[name] = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
        encoded = item.get("result_encoded")
        if encoded is not None:
            item["result_encoded"] = "\\x" + encoded.hex()
        out.append(item)
    try:
        return {"rows": json.dumps(out)}
    except (TypeError, ValueError) as exc:
        raise UnstorableValue(f"write failed: {exc}") from None


def storable(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with values every backend accepts: NULs replaced, strings cut to their
    column's length, JSON values made serializable (``repr`` of anything else) and
    finite (PostgreSQL's jsonb has no NaN or Infinity: a result holding one is kept
    whole as encoded JSON instead, arguments show them as strings)."""
    cleaned = dict(row)
    for name, value in row.items():
        if isinstance(value, str):
            cleaned[name] = value.replace("\x00", "\ufffd")[:TEXT_LENGTHS.get(name)]
        elif name in JSON_COLUMNS and value is not None:
            text = json.dumps(value, default=repr).replace("\\u0000", "\\ufffd")
            if name == "result" and _has_non_finite(value) and row.get("result_encoded") is None:
                cleaned.update(result=None, result_encoded=text.encode(),
                               result_content_type=JSON_CONTENT_TYPE)
                continue
            cleaned[name] = json.loads(text, parse_constant=str)
    return cleaned


def as_text(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with each JSON value replaced by its ``repr`` (a JSON string is always
    storable): the last resort for a value the database refuses however cleaned."""
    return {name: repr(value) if name in JSON_COLUMNS and value is not None else value
            for name, value in row.items()}


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(item) for item in value)
    return False


def _is_bad_value(exc: SQLAlchemyError) -> bool:
    # A StatementError that is no DBAPIError failed in a bind processor (e.g. json.dumps).
    return isinstance(exc, DataError) or (
        isinstance(exc, StatementError) and not isinstance(exc, DBAPIError))


def merge_batch(changes: Iterable[StateChange], *, force: bool = False) -> list[StateChange]:
    """One change per task id, ordered by id (so concurrent batches lock rows in the same order).

    Duplicates are folded in order under the same precedence the database applies,
    so a batch gives the same row as writing its changes one by one. The caller's
    objects are not modified.
    """
    merged: dict[str, StateChange] = {}
    copies: set[str] = set()  # ids whose entry is our own copy, safe to fold into
    for change in changes:
        if change.state not in STATE_RANK:
            raise ValueError(f"task {change.task_id}: unknown state {change.state!r}")
        held = merged.get(change.task_id)
        if held is None:
            merged[change.task_id] = change
        elif force or supersedes(change, held.state, held.retries, held.started_at):
            if change.task_id not in copies:
                held = merged[change.task_id] = copy.copy(held)
                copies.add(change.task_id)
            _fold(held, change, exact_outcome=force or change.state in READY_STATES)
    return [merged[task_id] for task_id in sorted(merged)]


def supersedes(change: StateChange, state: str, retries: int,
               started_at: dt.datetime | None = None) -> bool:
    """Whether ``change`` may overwrite a row in ``state`` after ``retries`` retries
    (``started_at``: the row's)."""
    if state == PENDING:  # a late PENDING never undoes a replaced task's (more retries)
        return change.state != PENDING or change.retries >= retries
    if state in READY_STATES:
        return False
    if (change.retries, STATE_RANK[change.state]) > (retries, STATE_RANK[state]):
        return True
    return _restarts(change, state, retries, started_at)


def _restarts(change: StateChange, state: str, retries: int,
              started_at: dt.datetime | None) -> bool:
    """A later run of the attempt the row shows STARTED: a redelivery that runs again
    after its worker died. Its STARTED applies so the row's ``received_at``,
    ``started_at`` and ``worker`` are those of the run that may finish; only
    STARTED, never RECEIVED, so a claim (hutch.worker.claims) still finds the row."""
    return (change.state == STARTED and state == STARTED and change.retries == retries
            and change.started_at is not None
            and (started_at is None or _utc(change.started_at) > _utc(started_at)))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Upsert = postgresql.Insert | sqlite.Insert
"""An INSERT with ``ON CONFLICT`` clauses: the two dialects spell them alike."""


def _insert(dialect: str) -> Callable[[Any], Upsert]:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def revocation_upsert(dialect: str, table: Table = revoked) -> Insert:
    """Insert a revocation, or refresh one made earlier for the same id (or stamp)."""
    statement = _insert(dialect)(table)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={name: new[name] for name in ("revoked_at", "honour_until", "terminate", "signal")})


def _mark_revoked(conn: Connection, ids: list[str], known: set[str], now: dt.datetime,
                  insert_only: Insert) -> list[str]:
    """REVOKED for rows still waiting (PENDING, RETRY) and for ids with no row at all.

    Insert first (``ON CONFLICT DO NOTHING``), then update: a PENDING row that a
    client's background writer inserts at the same moment is updated rather than
    left PENDING. The state test is in the UPDATE's WHERE, so a worker starting the
    task at the same moment wins rather than being overwritten."""
    unknown = [i for i in ids if i not in known]
    inserted: list[str] = []
    if unknown:
        inserted = list(conn.execute(insert_only.returning(tasks.c.task_id), [
            {**dict.fromkeys(CHANGE_FIELDS), "task_id": i, "state": REVOKED, "retries": 0,
             "exception_message": "revoked", "finished_at": now, "created_at": now,
             "updated_at": now} for i in unknown]).scalars())
    waiting = (update(tasks)
               .where(tasks.c.task_id.in_(sorted(set(ids) - set(inserted))),
                      tasks.c.state.in_([PENDING, RETRY]))
               .values(state=REVOKED, exception_message="revoked", finished_at=now,
                       updated_at=now)
               .returning(tasks.c.task_id))
    return inserted + list(conn.execute(waiting).scalars())


def attempt_rows(changes: Sequence[StateChange], retried: Sequence[StateChange],
                 now: dt.datetime) -> list[dict[str, Any]]:
    """The ``hutch_task_attempts`` rows of a batch's RETRY changes (``retried``). A RETRY
    carries no start time: it is the batch's STARTED of that attempt, if any (else the
    insert reads the stored row's)."""
    starts = {(c.task_id, c.retries): c.started_at for c in changes
              if c.started_at is not None}
    return [storable({
        "task_id": c.task_id, "attempt": c.retries, "worker": c.worker,
        "started_at": c.started_at or starts.get((c.task_id, c.retries)),
        "retried_at": c.finished_at or now, "eta": c.eta,
        "exception_type": c.exception_type, "exception_message": c.exception_message,
    }) for c in retried]


def attempt_insert(dialect: str) -> Insert:
    """Insert an attempt once (a redelivered RETRY finds its row and writes nothing).
    With no start time given, the attempt's start is the stored row's, read before the
    batch's upsert, when that row is at this attempt and STARTED (or already RETRY)."""
    params = {c.name: bindparam(c.name, type_=c.type) for c in task_attempts.columns}
    stored_start = select(tasks.c.started_at).where(
        tasks.c.task_id == params["task_id"], tasks.c.retries == params["attempt"],
        tasks.c.state.in_([_constant(STARTED), _constant(RETRY)])).scalar_subquery()
    values = {**params, "started_at": func.coalesce(params["started_at"], stored_start)}
    return _insert(dialect)(task_attempts).values(values).on_conflict_do_nothing(
        index_elements=[task_attempts.c.task_id, task_attempts.c.attempt])


def upsert_statement(dialect: str, *, force: bool) -> Insert:
    """The write of one row: insert a new id, update an existing row that the change
    supersedes.

    The ``WHERE`` below is :func:`supersedes` in SQL; it is evaluated against the
    locked, current row, so concurrent writers cannot interleave a regression.
    """
    return _upsert(_insert(dialect)(tasks), force=force)


ROW_COLUMNS = (*CHANGE_FIELDS, "updated_at")
"""The bound values of one row (:func:`_row`)."""


def batch_upsert(dialect: str, *, force: bool, returning: bool,
                 durable: bool = True) -> Insert:
    """The batch write, ``returning`` the ids it applied to (a claim needs them).

    On PostgreSQL one statement whatever the batch size, reading the rows from one
    JSON document (``jsonb_to_recordset``): parsed and planned once per connection,
    one round trip, and one parameter that Python's C JSON encoder builds, where
    executemany sends a statement per row (with RETURNING, a new multi-row INSERT for
    every batch size) and arrays are dumped value by value in Python. Elsewhere the
    upsert, executed per row.

    ``durable=False`` (PostgreSQL, a claim only): the statement turns
    ``synchronous_commit`` off for its own transaction (``set_config(..., true)``,
    evaluated as it reads the rows), so its commit in autocommit does not wait for the
    WAL flush; the session's setting is untouched, and the next synchronous commit on
    the server flushes it anyway (worker/claims.py says what a crash can cost).
    """
    if dialect == "postgresql":
        rows = func.jsonb_to_recordset(cast(bindparam("rows"), JSONB)).table_valued(
            *[column(name, tasks.c[name].type) for name in ROW_COLUMNS]
        ).render_derived(name="r", with_types=True)
        source = select(*[rows.c[name] for name in ROW_COLUMNS])
        if not durable:
            source = source.where(func.set_config(
                _constant("synchronous_commit"), _constant("off"), true()) == _constant("off"))
        statement: Insert = _upsert(
            postgresql.insert(tasks).from_select(list(ROW_COLUMNS), source), force=force)
    else:
        statement = upsert_statement(dialect, force=force)
    return statement.returning(tasks.c.task_id) if returning else statement


def carried_columns(dialect: str) -> list[ColumnElement[Any]]:
    """What the upsert returns for the completion notice (:meth:`ResultStore._carried`):
    each applied row's id and, for a SUCCESS whose stored result is at most CARRY_MAX
    bytes (jsonb's own size on PostgreSQL, read without decoding it), that result.
    Sizes stand in for ``IS NULL``, which SQLite 3.40 gets wrong in an upsert's
    RETURNING (false for a NULL)."""
    size = func.pg_column_size if dialect == "postgresql" else func.length
    success, most = tasks.c.state == _constant(SUCCESS), _constant(CARRY_MAX)
    encoded = func.coalesce(func.length(tasks.c.result_encoded), _constant(-1))
    small_json = success & (encoded < _constant(0)) & (
        func.coalesce(size(tasks.c.result), _constant(0)) <= most)
    small_encoded = success & encoded.between(_constant(0), most)
    return [tasks.c.task_id,
            case((small_json, tasks.c.result)).label("result"),
            case((small_encoded, tasks.c.result_encoded)).label("result_encoded"),
            case((small_encoded, tasks.c.result_content_type)).label("result_content_type"),
            (small_json | small_encoded).label("carried")]


def _upsert(statement: Upsert, *, force: bool) -> Upsert:
    new, old = statement.excluded, tasks.c
    values: dict[str, Any] = {name: new[name] for name in ALWAYS_WRITTEN}
    values.update({name: func.coalesce(new[name], old[name]) for name in COALESCED})
    for name in OUTCOME_COLUMNS:
        kept = func.coalesce(new[name], old[name])
        exact = _is_ready(new.state)
        if name in EXCEPTION_COLUMNS:
            exact = exact | new.exception_type.isnot(None)
        values[name] = new[name] if force else case((exact, new[name]), else_=kept)
    where = None if force else _supersedes_sql(new, old)
    return statement.on_conflict_do_update(index_elements=[old.task_id], set_=values, where=where)


def _supersedes_sql(new: Any, old: Any) -> ColumnElement[bool]:
    later_attempt = new.retries > old.retries
    same_attempt_further = (new.retries == old.retries) & (_rank(new.state) > _rank(old.state))
    pending = _constant(PENDING)
    late_pending = (new.state == pending) & (new.retries < old.retries)
    supersedes: ColumnElement[bool] = ((old.state == pending) & ~late_pending) | (
        ~_is_ready(old.state) & (later_attempt | same_attempt_further | _restarts_sql(new, old)))
    return supersedes


def _restarts_sql(new: Any, old: Any) -> ColumnElement[bool]:
    """:func:`_restarts` in SQL."""
    started = _constant(STARTED)
    restarts: ColumnElement[bool] = (
        (new.state == started) & (old.state == started) & (new.retries == old.retries)
        & new.started_at.isnot(None)
        & (old.started_at.is_(None) | (new.started_at > old.started_at)))
    return restarts


def _rank(state: Any) -> ColumnElement[int]:
    ranks = [(state == _constant(name), _constant(rank)) for name, rank in STATE_RANK.items()]
    return case(*ranks, else_=_constant(-1))


def _is_ready(state: Any) -> ColumnElement[bool]:
    ready: ColumnElement[bool] = state.in_([_constant(name) for name in sorted(READY_STATES)])
    return ready


def _constant(value: str | int) -> ColumnElement[Any]:
    """A literal in the SQL text: executemany cannot expand bound lists, and constants
    inline keep the statement readable in ``pg_stat_statements``."""
    return literal_column(repr(value) if isinstance(value, str) else str(value))


def _fold(held: StateChange, later: StateChange, *, exact_outcome: bool) -> None:
    held.merge(later)
    exact = OUTCOME_COLUMNS if exact_outcome else \
        EXCEPTION_COLUMNS if later.exception_type is not None else ()
    for name in exact:
        setattr(held, name, getattr(later, name))


def _row(change: StateChange, now: dt.datetime) -> dict[str, Any]:
    """Bound parameters for one change; every row has the same keys (one executemany)."""
    row = {name: getattr(change, name) for name in CHANGE_FIELDS}
    row["created_at"] = change.created_at or now
    row["updated_at"] = now
    return row


def _record(row: Any) -> TaskRecord:
    return TaskRecord(**{name: row[name] for name in RECORD_FIELDS})


def _is_transient(exc: SQLAlchemyError) -> bool:
    """A dropped or refused connection, or a deadlock: worth one more try."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def open_store(settings: Settings, reconnect_pause: float = RETRY_PAUSE) -> ResultStore:
    """The store of ``settings.result_backend``."""
    return ResultStore(settings.result_backend, reconnect_pause=reconnect_pause)
