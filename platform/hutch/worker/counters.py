"""What one worker process has done, counted: for its log lines, and the task outcomes
for the heartbeat (worker/heartbeat.py). Safe to add to from any pool thread.

The outcome counts of a whole worker must reach the process that writes its
heartbeat, which under prefork is the supervisor, not the children that run the
tasks. They meet in a :class:`Tally`: shared memory created before the fork, one
row per process slot, each row written by one process only and read by the
supervisor without a lock (a lock held by a child that is then killed would never
be released, as with worker/timelimits.py's Slot). A replacement child adds to the
row of the child it replaces, so a worker's totals never go down. Shared memory
rather than a pipe or a queue: the children stay free of any round trip to the
supervisor on the hot path, and a child killed mid-task loses nothing it counted.
"""

from __future__ import annotations

import ctypes
import multiprocessing.sharedctypes as shared
import threading

from ..results.records import FAILURE, RETRY, REVOKED, SUCCESS

DUPLICATES = "duplicates_skipped"
"""Deliveries of a task id that had finished already, acknowledged without running."""

PROCESSED, SUCCEEDED, FAILED, RETRIED = "processed", "succeeded", "failed", "retried"
OUTCOMES = (PROCESSED, SUCCEEDED, FAILED, RETRIED)
"""The counts a heartbeat reports (columns of ``hutch_workers``)."""

_BY_STATE = {SUCCESS: (PROCESSED, SUCCEEDED), FAILURE: (PROCESSED, FAILED),
             RETRY: (PROCESSED, RETRIED), REVOKED: (PROCESSED,)}
"""What a recorded state adds to: ``processed`` is every attempt that ended here."""


class TallyRow:
    """One process's row of a :class:`Tally`; only that process writes it."""

    def __init__(self, cells: ctypes.Array[ctypes.c_int64]) -> None:
        self._cells = cells

    def add(self, name: str, amount: int) -> None:
        self._cells[OUTCOMES.index(name)] += amount

    def values(self) -> list[int]:
        return list(self._cells)


class Tally:
    """Outcome counts of a worker's processes in shared memory, a row per process slot.
    A row is made by the supervisor before it forks the process that writes it (the
    pool grows: rows are added); rows are never removed, so totals never go down."""

    def __init__(self, rows: int = 1) -> None:
        self._rows: dict[int, TallyRow] = {}
        for index in range(rows):
            self.row(index)

    def row(self, index: int) -> TallyRow:
        """Row ``index``, made on first use (before the fork of the process that writes it)."""
        if index not in self._rows:
            self._rows[index] = TallyRow(shared.RawArray(ctypes.c_int64, len(OUTCOMES)))
        return self._rows[index]

    def totals(self) -> dict[str, int]:
        """The sum of every row, by outcome."""
        rows = [row.values() for row in list(self._rows.values())]
        return {name: sum(values[i] for values in rows) for i, name in enumerate(OUTCOMES)}


class Counters:
    def __init__(self, row: TallyRow | None = None) -> None:
        """``row``: where the outcome counts also go, for the heartbeat."""
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._row = row

    def add(self, name: str, amount: int = 1) -> int:
        """Add to ``name``; returns its new total."""
        with self._lock:
            total = self._counts[name] = self._counts.get(name, 0) + amount
            if self._row is not None and name in OUTCOMES:
                self._row.add(name, amount)
        return total

    def outcome(self, state: str) -> None:
        """Count a task attempt that ended in ``state`` (other states are not outcomes)."""
        for name in _BY_STATE.get(state, ()):
            self.add(name)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
