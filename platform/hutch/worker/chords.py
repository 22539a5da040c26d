"""Chord completion, inside the transaction that records header outcomes.

The recorder hands a batch's state changes, the groups its follow-ups create and
its chord events (header tasks that finished) to :meth:`ChordKeeper.count`,
which writes them all in one transaction:

1. the task rows (the usual upsert) and the new ``hutch_groups`` rows;
2. the count (results/groups.py): a header task counts when its own write made
   it final (so once), into this worker process's own counter row; on PostgreSQL
   the batch's upsert does it in the same statement, and a batch of header
   successes with no new groups is that one statement, in autocommit;
3. for a chord a failure decided: the body's rows (every task it would have
   started, workflows/unreached.py) become FAILURE with a ChordError naming the
   failed task, and the body's errbacks are built (once:
   only the transaction that moves the chord from OPEN decides it). A failed
   chord that is itself a header member of an outer chord fails that one too.

Then, in a second transaction (:meth:`ChordKeeper.claim`), the chords whose
counters add up are claimed (exactly one claim wins); for each, the header
results are read in header order, the body's message is built and its PENDING
row written.

The recorder publishes what this returns (with confirms) before it acknowledges
the header deliveries, exactly as it does for link callbacks.
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from ..errors import ChordError, HutchError
from ..logs import get_logger
from ..messages import ORIGIN, Wire, republished
from ..results.groups import (
    COMPLETE,
    FAILED,
    OPEN,
    Counts,
    Done,
    GroupRecord,
    Transition,
    claim_complete,
    complete_candidates,
    count_done,
    header_outcomes,
    insert_groups,
    read_groups,
)
from ..results.pending_rows import pending_changes
from ..results.records import FAILURE, PENDING, SUCCESS, StateChange, decode_result
from ..results.store import ResultStore
from ..workflows.canvas import Signature
from ..workflows.plan import GroupRow, Plan, Planner, chord_marker, errbacks, result_id, task_ids
from ..workflows.unreached import Unreached, unreached

if TYPE_CHECKING:
    from ..config import Settings
    from ..tasks import TaskRegistry

log = get_logger("hutch.worker")


@dataclass
class Outcome:
    """What the chord step produced: messages to publish and ids now final."""

    followups: list[tuple[str, Wire]] = field(default_factory=list)
    finished: list[tuple[str | None, str]] = field(default_factory=list)
    """Ids this step made final (a failed chord's body), each with the notice key of
    the client that sent the chord."""
    sent: list[str] = field(default_factory=list)
    """Chords whose body (or errbacks) are among the follow-ups: marked sent once
    published (Recorder), which tells a redelivered header whether to send again."""

    def plus(self, other: Outcome) -> Outcome:
        return Outcome(self.followups + other.followups, self.finished + other.finished,
                       self.sent + other.sent)


class ChordKeeper:
    """Counts one worker process's chord header outcomes (``shard`` names its counter
    rows) and sends or fails the chords they decide; ``tasks`` give the chord bodies'
    task defaults."""

    def __init__(self, conf: Settings, tasks: TaskRegistry, shard: str | None = None) -> None:
        self.shard = shard or ORIGIN
        self.prefix = conf.topology_prefix
        """The topology prefix: the exchanges the publish signals name."""
        self.accept = tuple(conf.accept_content)
        self.planner = Planner(conf, tasks.options_for)

    def count(self, store: ResultStore, changes: Sequence[StateChange],
              groups: Sequence[GroupRow], events: Sequence[Done]) -> Outcome:
        """Write ``changes`` and ``groups`` and count ``events`` in one transaction;
        chords a failure decides are failed there. Header successes alone (the usual
        batch) are one statement on PostgreSQL: the upsert that counts them."""
        counts = Counts(list({(e.group_id, e.task_id): e for e in events}.values()), self.shard)
        if not groups and all(e.state == SUCCESS for e in events):
            store.write(changes, counts=counts)
            return Outcome()

        def step(conn: Connection) -> Outcome:
            now = dt.datetime.now(dt.timezone.utc)
            insert_groups(conn, groups, now)
            out = Outcome()
            pending = list(events)
            while pending:  # a failed inner chord fails the outer chord it belongs to
                cascade: list[Done] = []
                for transition in count_done(conn, pending, counts.written, self.shard, now):
                    cascade.extend(self._decided(conn, store, transition, out, now))
                pending = cascade
            return out

        counted = store.write(changes, within=step, counts=counts)
        assert counted is not None
        return counted

    def claim(self, store: ResultStore, events: Sequence[Done], counted: Outcome) -> Outcome:
        """After the count committed: claim the chords whose counters add up and build
        their bodies; for a redelivered header, send again what a dead worker decided
        but did not publish."""
        rechecks = {e.group_id for e in events if e.recheck}
        counting = {e.group_id for e in events if e.state == SUCCESS}
        candidates = rechecks | (store.read_now("read chord counts", lambda conn: (
            complete_candidates(conn, counting))) if counting else set())

        def step(conn: Connection) -> Outcome:
            now = dt.datetime.now(dt.timezone.utc)
            out = Outcome()
            for transition in claim_complete(conn, candidates, now):
                self._decided(conn, store, transition, out, now)
            again = rechecks - set(out.sent) - set(counted.sent)
            for group in read_groups(conn, again).values():
                self._send_again(conn, store, group, out, now)
            return out

        return store.transaction("claim chords", step, write_first=True) if candidates else Outcome()

    def _decided(self, conn: Connection, store: ResultStore, transition: Transition,
                 out: Outcome, now: dt.datetime) -> list[Done]:
        out.sent.append(transition.group.group_id)
        if transition.state == COMPLETE:
            self._send_body(conn, store, transition, out, now)
            return []
        return self._fail_body(conn, store, transition, out)

    def _send_again(self, conn: Connection, store: ResultStore, group: GroupRecord,
                    out: Outcome, now: dt.datetime) -> None:
        """A chord decided by a worker that died before its body (or errbacks) were
        published: publish them now (same body id). Skipped when the body was marked
        sent, or a worker has received it already."""
        if group.body is None or group.body_sent_at is not None or group.state == OPEN:
            return
        if group.state == COMPLETE:
            body = header_outcomes(conn, [group.body_id or ""]).get(group.body_id or "")
            if body is not None and body.state != PENDING:
                return
        log.warning("chord decided but its follow-ups were not confirmed sent; sending "
                    "them again", group_id=group.group_id, state=group.state)
        failed = Done(group.group_id, group.failed_task_id or "", FAILURE,
                      f"header task {group.failed_task_id} failed")
        start = len(out.followups)
        self._decided(conn, store, Transition(group.state or COMPLETE, group,
                                              failed if group.state == FAILED else None),
                      out, now)
        # marked: a worker drops this copy if the first one was received after all
        out.followups[start:] = [(queue, republished(wire)) for queue, wire in out.followups[start:]]

    def mark_sent(self, store: ResultStore, group_ids: Sequence[str]) -> None:
        store.mark_sent(group_ids)

    # -- completion -----------------------------------------------------------------
    def _send_body(self, conn: Connection, store: ResultStore, transition: Transition,
                   out: Outcome, now: dt.datetime) -> None:
        group = transition.group
        body = Signature.from_dict(group.body or {})
        try:
            results = self._header_results(conn, group.member_ids)
            plan = self.planner.for_sender(group.notify).plan(
                body, (results,), parent_id=group.group_id,
                root_id=group.root_id or group.group_id)
            wires = [(m.queue, m.encode()) for m in plan.messages]
        except HutchError as exc:
            log.error("chord body could not be built", group_id=group.group_id,
                      error=str(exc))
            self._write_failure(conn, store, group, body, ChordError(
                f"chord {group.group_id}: the body could not be sent: {exc}"), out)
            return
        self._store_plan(conn, store, plan, now)
        out.followups.extend(wires)
        log.info("chord complete; body sent", group_id=group.group_id, body_id=group.body_id,
                 size=group.size)

    def _header_results(self, conn: Connection, member_ids: list[str]) -> list[object]:
        """The header results in header order, read in the completing transaction."""
        rows = header_outcomes(conn, member_ids)
        values = []
        for task_id in member_ids:
            row = rows.get(task_id)
            if row is None or row.state != SUCCESS:
                raise ChordError(f"header task {task_id} has no result "
                                 f"(state {row.state if row else 'missing'})")
            values.append(decode_result(row, self.accept))
        return values

    def _store_plan(self, conn: Connection, store: ResultStore, plan: Plan,
                    now: dt.datetime) -> None:
        insert_groups(conn, plan.groups, now)
        store.write_in(conn, pending_changes(plan.messages))

    # -- failure ----------------------------------------------------------------------
    def _fail_body(self, conn: Connection, store: ResultStore, transition: Transition,
                   out: Outcome) -> list[Done]:
        group, failed = transition.group, transition.failed
        assert failed is not None
        body = Signature.from_dict(group.body or {})
        error = ChordError(f"chord {group.group_id} failed: {failed.reason or failed.task_id}")
        error.task_id = failed.task_id
        log.warning("chord failed; body not run", group_id=group.group_id,
                    failed_task=failed.task_id, body_id=group.body_id)
        self._write_failure(conn, store, group, body, error, out)
        body_id = result_id(body)
        planner = self.planner.for_sender(group.notify)
        for errback in errbacks(body):
            try:
                plan = planner.plan(errback, (body_id,), parent_id=body_id,
                                         root_id=group.root_id or group.group_id)
                wires = [(m.queue, m.encode()) for m in plan.messages]
            except HutchError as exc:
                log.error("errback could not be built; skipped", callback=errback.task,
                          error=str(exc))
                continue
            self._store_plan(conn, store, plan, dt.datetime.now(dt.timezone.utc))
            out.followups.extend(wires)
        marker = chord_marker(body)
        if marker is None:
            return []
        return [Done(str(marker["group_id"]), body_id, FAILURE, str(error))]

    def _write_failure(self, conn: Connection, store: ResultStore, group: GroupRecord,
                       body: Signature, error: ChordError, out: Outcome) -> None:
        """FAILURE with the ChordError for every task of the body (none will run), each
        row with the lineage it would have had: the body's ``parent_id`` is the header
        group, so get() finds the failed header task from it (results/causes.py)."""
        now = dt.datetime.now(dt.timezone.utc)
        failure = StateChange(
            task_id=error.task_id or group.group_id, state=FAILURE,
            exception_type=_type_name(error), exception_message=str(error),
            traceback="".join(traceback.format_exception_only(error)), finished_at=now)
        try:
            ended = unreached(self.planner.for_sender(group.notify), [body], group.group_id,
                              group.root_id or group.group_id, failure)
        except Exception:  # noqa: BLE001 - the chord's failure must be recorded regardless
            ended = Unreached()
        if not ended.rows:  # a body that cannot be planned: its rows without lineage
            ended = Unreached([replace(failure, task_id=i) for i in task_ids(body)])
        insert_groups(conn, ended.groups, now)
        store.write_in(conn, ended.rows)
        out.finished.extend((group.notify, row.task_id) for row in ended.rows)


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"

