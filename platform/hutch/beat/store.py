"""Every statement on the beat tables, each in its own short transaction.

Transactions run through the result store (same database, same retry and error
handling); those that write start with a write where they can, so on SQLite
they wait for the write lock instead of failing on a stale read snapshot (the
one exception, the start-up config sync, is retried once). A due run is *claimed* by inserting its
``(schedule_name, due_at)`` row with ``ON CONFLICT DO NOTHING`` in the same
transaction that checks the lease and advances the schedule's ``next_run_at``:
whoever loses the race inserts nothing and sends nothing. A run that must be
published again is re-claimed the same way (:meth:`BeatStore.reclaim`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Insert,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import ConfigurationError, HutchError, NotLeader
from ..results.groups import COMPLETE, FAILED
from ..results.models import group_counts, groups, task_attempts, tasks
from ..results.records import READY_STATES
from ..results.store import ResultStore
from ..schedules.entry import SOURCE_CONFIG, SOURCE_REMOVED, Schedule
from .models import beat_lease, schedule_runs, schedules

T = TypeVar("T")

SYNC_LOCK_KEY = 0x68757462  # "hutb": held while a starting beat syncs beat_schedule


class Claim(enum.Enum):
    """What :meth:`BeatStore.claim` did."""

    CLAIMED = "claimed"
    """The run is this caller's: publish it."""
    TAKEN = "taken"
    """Claimed before; the schedule moved past it. Publish nothing."""
    LOST = "lost"
    """The schedule's row changed meanwhile: nothing done; read it again."""


class _Lost(HutchError):
    """The schedule changed under a claim: raised inside the claim's transaction to
    roll it back, and caught around it (:meth:`BeatStore.claim` returns LOST)."""


@dataclass(frozen=True)
class Run:
    """A claimed run: the message beat publishes (or re-publishes) for it."""

    schedule_name: str
    due_at: dt.datetime
    task_id: str
    claimed_at: dt.datetime
    sent_at: dt.datetime | None
    manual: bool


@dataclass(frozen=True)
class SyncReport:
    added: list[str]
    updated: list[str]
    disabled: list[str]
    """Config entries no longer in ``beat_schedule``: disabled, kept."""
    restored: list[str]


class BeatStore:
    """The beat tables in the result database (same engine as the :class:`ResultStore`)."""

    def __init__(self, results: ResultStore) -> None:
        self.results = results
        self.engine = results.engine
        self.dialect = self.engine.dialect.name
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        # RETURNING says whether a row went in: the driver's rowcount of an
        # INSERT ... ON CONFLICT DO NOTHING is not reliable through SQLAlchemy (-1).
        self._claim_insert: Insert = insert(schedule_runs).on_conflict_do_nothing(
            index_elements=[schedule_runs.c.schedule_name, schedule_runs.c.due_at]
        ).returning(schedule_runs.c.task_id)
        self._lease_insert: Insert = insert(beat_lease).on_conflict_do_nothing(
            index_elements=[beat_lease.c.name]).returning(beat_lease.c.name)
        self._schedule_insert: Insert = insert(schedules).on_conflict_do_nothing(
            index_elements=[schedules.c.name]).returning(schedules.c.name)

    # -- schedules ------------------------------------------------------------------
    def all(self) -> list[Schedule]:
        query = select(schedules).order_by(schedules.c.name)
        return self._run("read schedules", lambda c: [
            Schedule.from_row(r) for r in c.execute(query).mappings()])

    def readable(self) -> tuple[list[Schedule], dict[str, str]]:
        """Every schedule that can be read, and why each other one cannot.

        On SQLite a column edited by hand may hold text its type cannot parse
        (``start_at = 'yesterday'``, JSON that is not JSON); SQLAlchemy raises on
        such a row while reading the whole table. Then the rows are read one by one,
        so one bad row does not stop every schedule.
        """
        try:
            return self.all(), {}
        except (ValueError, TypeError):
            pass
        query = select(schedules.c.name).order_by(schedules.c.name)
        names = self._run("read schedule names", lambda c: list(c.execute(query).scalars()))
        good: list[Schedule] = []
        bad: dict[str, str] = {}
        for name in names:
            try:
                entry = self.get(name)
            except (ValueError, TypeError) as exc:
                bad[name] = f"a column cannot be read: {exc}"
                continue
            if entry is not None:
                good.append(entry)
        return good, bad

    def get(self, name: str) -> Schedule | None:
        query = select(schedules).where(schedules.c.name == name)
        row = self._run("read schedule", lambda c: c.execute(query).mappings().first())
        return Schedule.from_row(row) if row is not None else None

    def insert(self, entry: Schedule, now: dt.datetime) -> None:
        """Add a schedule; ConfigurationError if the name is taken."""
        row = {**entry.to_row(), "created_at": now, "updated_at": now}
        inserted = self._run("add schedule", lambda c: c.execute(
            self._schedule_insert, row).first())
        if inserted is None:
            raise ConfigurationError(f"name: a schedule named {entry.name!r} exists already")

    def update(self, name: str, values: dict[str, Any], now: dt.datetime) -> bool:
        """Set columns of one schedule; False if there is none of that name."""
        statement = update(schedules).where(schedules.c.name == name).values(
            **values, updated_at=now)
        return bool(self._run("edit schedule", lambda c: c.execute(statement).rowcount))

    def delete(self, name: str) -> bool:
        def work(conn: Connection) -> int:
            gone = conn.execute(delete(schedules).where(schedules.c.name == name)).rowcount
            conn.execute(delete(schedule_runs).where(schedule_runs.c.schedule_name == name))
            return gone
        return bool(self._run("remove schedule", work))

    def set_next_run(self, entry: Schedule, next_run: dt.datetime | None,
                     now: dt.datetime) -> bool:
        """Beat's recomputation after a change it did not make (a plain SQL edit):
        applied only if the row still holds what beat read."""
        same = [_same(schedules.c.next_run_at, entry.next_run_at, self.dialect),
                _same(schedules.c.updated_at, entry.updated_at, self.dialect)]
        statement = (update(schedules).where(schedules.c.name == entry.name, *same)
                     .values(next_run_at=next_run))
        return bool(self._run("reschedule", lambda c: c.execute(statement).rowcount))

    def sync_config(self, entries: Iterable[Schedule], now: dt.datetime) -> SyncReport:
        """Upsert ``beat_schedule``: config entries are added or updated, runtime ones
        are kept, and config entries gone from the config are disabled (not deleted)."""
        wanted = {e.name: e for e in entries}

        def work(conn: Connection) -> SyncReport:
            if self.dialect == "postgresql":  # beats starting together sync one at a time
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SYNC_LOCK_KEY})
            stored = {r["name"]: Schedule.from_row(r)
                      for r in conn.execute(select(schedules)).mappings()}
            report = SyncReport([], [], [], [])
            for name, entry in wanted.items():
                _upsert_config(conn, entry, stored.get(name), now, report)
            for name, old in stored.items():
                if old.source == SOURCE_CONFIG and name not in wanted:
                    conn.execute(update(schedules).where(schedules.c.name == name).values(
                        enabled=False, source=SOURCE_REMOVED, next_run_at=None,
                        updated_at=now))
                    report.disabled.append(name)
            return report

        return self._run("sync beat_schedule", work)

    # -- runs -----------------------------------------------------------------------
    def claim(self, entry: Schedule, due: dt.datetime, next_run: dt.datetime | None,
              task_id: str, now: dt.datetime, holder: str, lease: Lease | None) -> Claim:
        """Claim the run of ``entry`` due at ``due`` and advance the schedule, in one
        transaction; with ``lease``, only while ``holder`` holds it (raises NotLeader).
        A run claimed before (a ``next_run_at`` moved back by hand) is not claimed
        again, but the schedule still moves past it (TAKEN), or it would stay stuck on
        it; LOST when the row changed meanwhile (another beat claimed, an edit)."""
        manual = lease is None
        run = {"schedule_name": entry.name, "due_at": due, "task_id": task_id,
               "claimed_at": now, "claimed_by": holder, "sent_at": None, "manual": manual}
        advance: dict[str, Any] = {"next_run_at": next_run}
        if entry.one_off or entry.kind == "clocked":
            advance["enabled"] = False
        counted = {"last_run_at": now, "total_run_count": schedules.c.total_run_count + 1}

        def work(conn: Connection) -> Claim:
            if lease is not None and not lease.renew_in(conn, holder, now):
                raise NotLeader()
            inserted = conn.execute(self._claim_insert, run).first() is not None
            if manual:
                values = counted if inserted else {}
                where = [schedules.c.name == entry.name]
            else:
                values = {**advance, **counted} if inserted else advance
                where = [schedules.c.name == entry.name, schedules.c.enabled.is_(True),
                         _same(schedules.c.next_run_at, entry.next_run_at, self.dialect)]
            if values and not conn.execute(update(schedules).where(*where)
                                           .values(**values)).rowcount:
                raise _Lost()
            return Claim.CLAIMED if inserted else Claim.TAKEN

        try:
            return self._run("claim run", work)
        except _Lost:
            return Claim.LOST

    def reclaim(self, run: Run, now: dt.datetime, holder: str, lease: Lease) -> bool:
        """Take over an unsent run to publish it again, in a transaction that renews the
        lease (raises NotLeader): False if another beat re-claimed it or it was sent
        meanwhile. So a run is published again by one beat, and only by the active one."""
        statement = (update(schedule_runs)
                     .where(schedule_runs.c.task_id == run.task_id,
                            schedule_runs.c.sent_at.is_(None),
                            _same(schedule_runs.c.claimed_at, run.claimed_at, self.dialect))
                     .values(claimed_at=now, claimed_by=holder))

        def work(conn: Connection) -> bool:
            if not lease.renew_in(conn, holder, now):
                raise NotLeader()
            return bool(conn.execute(statement).rowcount)

        return self._run("re-claim run", work)

    def mark_sent(self, task_ids: list[str], now: dt.datetime) -> None:
        if task_ids:
            statement = (update(schedule_runs).where(schedule_runs.c.task_id.in_(task_ids))
                         .values(sent_at=now))
            self._run("mark runs sent", lambda c: c.execute(statement))

    def unsent(self, claimed_before: dt.datetime) -> list[Run]:
        """Runs claimed but never confirmed as sent (their beat died in between)."""
        query = (select(schedule_runs).where(schedule_runs.c.sent_at.is_(None),
                                             schedule_runs.c.claimed_at <= claimed_before)
                 .order_by(schedule_runs.c.claimed_at))
        return self._run("read unsent runs", lambda c: [
            Run(**{k: r[k] for k in Run.__dataclass_fields__})
            for r in c.execute(query).mappings()])

    def task_rows(self, task_ids: list[str]) -> set[str]:
        """Which of these ids have a ``hutch_tasks`` row (a message that reached the broker)."""
        query = select(tasks.c.task_id).where(tasks.c.task_id.in_(task_ids))
        return self._run("read tasks", lambda c: set(c.execute(query).scalars()))

    def runs(self, name: str, limit: int = 20) -> list[Run]:
        query = (select(schedule_runs).where(schedule_runs.c.schedule_name == name)
                 .order_by(schedule_runs.c.due_at.desc()).limit(limit))
        return self._run("read runs", lambda c: [
            Run(**{k: r[k] for k in Run.__dataclass_fields__})
            for r in c.execute(query).mappings()])

    def server_time(self) -> dt.datetime | None:
        """PostgreSQL's clock now (None on SQLite, whose beats share one host's clock)."""
        if self.dialect != "postgresql":
            return None
        now: dt.datetime = self._run("read the database clock", lambda c: c.execute(
            select(func.clock_timestamp())).scalar_one())
        return now

    # -- cleanup ----------------------------------------------------------------------
    def delete_batch(self, table: str, before: dt.datetime, batch: int) -> int:
        """Delete up to ``batch`` expired rows of ``table`` (one of CLEANED)."""
        key, old = _expired(table, before)
        chosen = select(key).where(old).limit(batch).scalar_subquery()
        statement = delete(key.table).where(key.in_(chosen))
        return self._run("delete expired rows", lambda c: c.execute(statement).rowcount)

    def _run(self, action: str, work: Callable[[Connection], T]) -> T:
        return self.results.transaction(action, work)


CLEANED = ("tasks", "attempts", "runs", "groups", "group_counts")
"""What the result cleanup deletes, in this order: a task's attempts after its row, a
group after its members' rows, its counter rows after the group."""


def _expired(table: str, before: dt.datetime) -> tuple[Any, Any]:
    """The key column and the condition of ``table``'s expired rows.

    Tasks: only final states (a RETRY row has ``finished_at`` too, when that attempt
    ended, but its task is still to run). Runs: sent ones. Groups: plain or saved
    groups by age, chords once decided (an OPEN chord still waits for its header).
    Counter rows: those whose chord row is gone. Attempts: those whose task row is
    gone (expired, forgotten, purged), all of a task's at once.
    """
    if table == "tasks":
        return tasks.c.task_id, and_(tasks.c.state.in_(sorted(READY_STATES)),
                                     tasks.c.finished_at < before)
    if table == "attempts":
        return task_attempts.c.task_id, ~exists().where(
            tasks.c.task_id == task_attempts.c.task_id)
    if table == "runs":
        return schedule_runs.c.task_id, and_(schedule_runs.c.sent_at.is_not(None),
                                             schedule_runs.c.claimed_at < before)
    if table == "groups":
        return groups.c.group_id, or_(
            and_(groups.c.state.is_(None), groups.c.created_at < before),
            and_(groups.c.state.in_([COMPLETE, FAILED]), groups.c.finished_at < before))
    if table == "group_counts":
        return group_counts.c.group_id, ~exists().where(
            groups.c.group_id == group_counts.c.group_id)
    raise ValueError(f"no cleanup for table {table!r}")


@dataclass(frozen=True)
class LeaseState:
    """What an attempt to take the lease found: whether this beat holds it now, and
    until when the holder's lease runs (a standby sleeps until then, not a poll more)."""

    held: bool
    holder: str | None
    expires_at: dt.datetime | None


class Lease:
    """The leader lease: one row of ``hutch_beat_lease``, held while renewed.

    ``hutch_beat_lease`` is used instead of a PostgreSQL advisory lock so SQLite
    works the same, and so a DBA can see who is active (``SELECT * FROM
    hutch_beat_lease``). Only one beat can change the row at a time, and every claim
    renews it in its own transaction (:meth:`renew_in`): once another beat has taken
    the row, the old holder's claims fail, whatever the clocks say. The clocks decide
    only *when* a standby may take an unrenewed row (``expires_at``, written by the
    holder's clock, read against the standby's): a standby whose clock runs ahead by
    more than the lease's slack (lease minus poll) takes it from a live beat early
    (the live one stops at its next claim), one that runs behind takes over late.
    Keep hosts in NTP sync; beat warns at start if its clock and PostgreSQL's differ.
    """

    def __init__(self, store: BeatStore, seconds: float, name: str = "beat",
                 node: Callable[[], str | None] = lambda: None) -> None:
        """``node()``: the broker node (``host:port``) the holder publishes through,
        written to ``broker_node`` with each renewal (None leaves the column as is)."""
        self.store = store
        self.seconds = seconds
        self.name = name
        self.node = node

    def _node_values(self) -> dict[str, Any]:
        node = self.node()
        return {} if node is None else {"broker_node": node}

    def acquire(self, holder: str, now: dt.datetime) -> LeaseState:
        """Take (or renew) the lease; not held while another holder's is unexpired."""
        expires = now + dt.timedelta(seconds=self.seconds)
        node = self._node_values()
        row = {"name": self.name, "holder": holder, "acquired_at": now, "renewed_at": now,
               "expires_at": expires, "broker_node": node.get("broker_node")}
        taken = (update(beat_lease)
                 .where(beat_lease.c.name == self.name,
                        or_(beat_lease.c.holder == holder, beat_lease.c.expires_at <= now))
                 .values(holder=holder, renewed_at=now, expires_at=expires,
                         broker_node=node.get("broker_node"),
                         acquired_at=case((beat_lease.c.holder == holder,
                                           beat_lease.c.acquired_at), else_=now)))
        current = select(beat_lease.c.holder, beat_lease.c.expires_at).where(
            beat_lease.c.name == self.name)
        mine = LeaseState(True, holder, expires)

        def work(conn: Connection) -> LeaseState:  # a write first: see ResultStore.transaction
            if conn.execute(taken).rowcount:
                return mine
            other = conn.execute(current).first()
            if other is not None:
                return LeaseState(False, other.holder, other.expires_at)
            return mine if conn.execute(self.store._lease_insert, row).first() is not None \
                else LeaseState(False, None, None)

        return self.store._run("take the beat lease", work)

    def renew_in(self, conn: Connection, holder: str, now: dt.datetime) -> bool:
        """Renew inside a claim's transaction: the claim commits only if still held."""
        statement = (update(beat_lease)
                     .where(beat_lease.c.name == self.name, beat_lease.c.holder == holder,
                            beat_lease.c.expires_at > now)
                     .values(renewed_at=now, expires_at=now + dt.timedelta(seconds=self.seconds),
                             **self._node_values()))
        return bool(conn.execute(statement).rowcount)

    def release(self, holder: str, now: dt.datetime) -> None:
        """Give the lease up (clean shutdown), so a standby takes over at its next poll."""
        statement = (update(beat_lease)
                     .where(beat_lease.c.name == self.name, beat_lease.c.holder == holder)
                     .values(expires_at=now))
        self.store._run("release the beat lease", lambda c: c.execute(statement))

    def holder(self) -> dict[str, Any] | None:
        query = select(beat_lease).where(beat_lease.c.name == self.name)
        row = self.store._run("read the beat lease",
                              lambda c: c.execute(query).mappings().first())
        return dict(row) if row is not None else None


def _upsert_config(conn: Connection, entry: Schedule, old: Schedule | None,
                   now: dt.datetime, report: SyncReport) -> None:
    if old is None:
        row = {**entry.to_row(), "next_run_at": entry.first_run(now),
               "created_at": now, "updated_at": now}
        conn.execute(schedules.insert(), row)
        report.added.append(entry.name)
        return
    values = entry.definition()
    if old.source != SOURCE_REMOVED:
        values["enabled"] = old.enabled  # a runtime disable of a config entry sticks
    merged = Schedule(**{**old.to_row(), **values})
    if merged.definition() == old.definition():
        return
    if merged.fingerprint() != old.fingerprint():
        values["next_run_at"] = merged.first_run(now)
    conn.execute(update(schedules).where(schedules.c.name == entry.name)
                 .values(**values, updated_at=now))
    (report.restored if old.source == SOURCE_REMOVED else report.updated).append(entry.name)


def _same(column: Any, value: Any, dialect: str) -> Any:
    """``column = value``, where NULL equals NULL.

    SQLite keeps datetimes as text, and a row written by hand may hold another
    spelling of the same instant (``datetime('now')`` and the ``CURRENT_TIMESTAMP``
    default have no microseconds), which a text comparison would call different:
    a hand-set ``next_run_at`` would then never be claimed. There the instants are
    compared with ``julianday`` (to the millisecond) instead.
    """
    if value is None:
        return column.is_(None)
    if dialect == "sqlite" and isinstance(value, dt.datetime):
        return func.julianday(column) == func.julianday(literal(value, type_=column.type))
    return column == value
