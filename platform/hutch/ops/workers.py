"""Workers as the CLI (``hutch workers``) and the dashboard see them: every row of
``hutch_workers`` with its effective state (a worker silent for 3 heartbeat
intervals reads offline, whatever it last wrote; hutch.results.workers).

Read from the database, not asked over the broker: a worker that died still shows,
offline, until the beat's cleanup removes it (``worker_heartbeat_retention``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ..results.store import ResultStore
from ..results.workers import STATES, WorkerRecord, WorkerStore


def list_workers(store: ResultStore, state: str | None = None) -> list[WorkerRecord]:
    """Every worker by hostname, or those whose effective state is ``state``."""
    if state is not None and state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    records = WorkerStore(store).workers()
    return [r for r in records if state is None or r.state == state]


def state_counts(records: Sequence[WorkerRecord]) -> dict[str, int]:
    """How many workers are in each state (every state present, 0 included)."""
    counts = Counter(r.state for r in records)
    return {state: counts.get(state, 0) for state in STATES}
