"""The built-in periodic cleanup: results older than ``result_expires`` are deleted.

Run by the active beat every ``beat_cleanup_interval`` seconds, in statements of
``result_cleanup_batch`` rows each (short transactions: no long lock on
``hutch_tasks``, no huge WAL); the retried attempts of a task
(``hutch_task_attempts``) go once its row is gone. A round deletes at most ``MAX_BATCHES`` batches per
table, and beat renews its lease between them when a poll has passed (so a slow
round cannot let the lease lapse); a backlog continues at the next poll.
Claimed runs in ``hutch_schedule_runs`` older than ``result_expires`` (and sent)
go the same way, and so do workflow groups (``hutch_groups``, a chord once decided)
and the chord counter rows of groups that are gone. Rows of ``hutch_workers`` whose
last heartbeat is older than ``worker_heartbeat_retention`` go too (a live worker
rewrites its row every few seconds, so those workers are gone for good), whatever
``result_expires`` says.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial

from ..config import Settings
from ..logs import get_logger
from ..results.workers import WorkerStore
from .store import CLEANED, BeatStore

log = get_logger("hutch.beat")

MAX_BATCHES = 10


class Cleanup:
    def __init__(self, store: BeatStore, conf: Settings) -> None:
        self.store = store
        self.conf = conf
        self._next: dt.datetime | None = None

    def maybe_run(self, now: dt.datetime, between: Callable[[], None] = lambda: None) -> int:
        """Delete a round of expired rows if one is due; returns how many were deleted.
        ``between`` runs before each statement (beat renews its lease there)."""
        if self._next is not None and now < self._next:
            return 0
        deleted, more = self.run(now, between)
        pause = 0.0 if more else self.conf.beat_cleanup_interval
        self._next = now + dt.timedelta(seconds=pause)
        if deleted:
            log.info("expired results deleted", rows=deleted, backlog=more)
        return deleted

    def run(self, now: dt.datetime,
            between: Callable[[], None] = lambda: None) -> tuple[int, bool]:
        """One round: (rows deleted, whether more remain)."""
        deleted, more = self._results(now, between)
        if more:
            return deleted, True
        gone = now - dt.timedelta(seconds=self.conf.worker_heartbeat_retention)
        workers = WorkerStore(self.store.results)
        count, more = self._batches(lambda batch: workers.delete_gone(gone, batch), between)
        return deleted + count, more

    def _results(self, now: dt.datetime, between: Callable[[], None]) -> tuple[int, bool]:
        expires = self.conf.result_expires
        if expires is None:
            return 0, False
        cut = now - dt.timedelta(seconds=expires)
        deleted = 0
        for table in CLEANED:
            count, more = self._batches(partial(self.store.delete_batch, table, cut), between)
            deleted += count
            if more:
                return deleted, True
        return deleted, False

    def _batches(self, delete: Callable[[int], int],
                 between: Callable[[], None]) -> tuple[int, bool]:
        """``delete(batch)`` until it deletes less than a batch, at most MAX_BATCHES
        times: (rows deleted, whether more remain)."""
        batch = self.conf.result_cleanup_batch
        deleted = 0
        for _ in range(MAX_BATCHES):
            between()
            count = delete(batch)
            deleted += count
            if count < batch:
                return deleted, False
        return deleted, True
