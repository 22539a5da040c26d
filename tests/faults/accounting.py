"""Accounting for the fault scenarios: what was confirmed, what ran, what finished.

The producer (the test process, never killed) records the id of every submit
RabbitMQ confirmed. The task body (``faults.record``, apps/faults_app.py) records
each of its runs itself, in an append-only file that survives any worker kill,
with the state its row had as the run began. At the end the rows of the
scenario's own database say how each id ended, and :meth:`Ledger.account` sorts
every confirmed id into finished, missing or stuck and counts the runs:

- missing: confirmed, yet no final row and no run at all (the message was lost);
- stuck: confirmed, ran or has a row, but the row never became final;
- run twice: ids whose body ran more than once; each extra run is either
  *after a kill* (the run before it was in a process the scenario killed:
  at-least-once, allowed) or *unexplained*;
- run after finished: runs that began when the id's outcome was already
  committed (SUCCESS, FAILURE, REVOKED): never allowed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hutch import Hutch
from hutch.config import normalize_backend_url
from support.waiting import eventually

FINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
ENDLESS_RETRY = {"max_retries": None, "interval_start": 0.1, "interval_step": 0.2,
                 "interval_max": 1.0}
"""Producers wait out any outage (the scenario's deadline bounds them)."""
REPORT_FILE = os.environ.get("HUTCH_FAULTS_REPORT", "")
"""A file each scenario appends its report to as a JSON line (``make faults``); read at
import, since the tests run without HUTCH_* variables (tests/conftest.py)."""


@dataclass(frozen=True)
class Run:
    task_id: str
    pid: int
    started: float
    state_at_start: str


@dataclass
class Report:
    scenario: str
    submitted: int
    confirmed: int
    finished: int
    missing: int
    stuck: int
    failed: int
    run_twice: int
    reruns_after_kill: int
    reruns_unexplained: int
    run_after_finished: int
    duration: float
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def save(self) -> None:
        """Append to ``$HUTCH_FAULTS_REPORT`` when set (the table in docs/reliability.md)."""
        if REPORT_FILE:
            with Path(REPORT_FILE).open("a") as fh:
                fh.write(self.summary() + "\n")

    def assert_no_loss(self) -> None:
        """Every confirmed id finished, none ran again once finished."""
        assert (self.missing, self.stuck, self.run_after_finished) == (0, 0, 0), self.summary()
        assert self.finished == self.confirmed, self.summary()


class Ledger:
    """One scenario's books (see the module docstring)."""

    def __init__(self, scenario: str, directory: Path) -> None:
        self.scenario = scenario
        self.run_log = str(directory / "runs.log")
        Path(self.run_log).touch()
        self.confirmed: list[str] = []
        self.submitted = 0
        self.submit_errors: list[str] = []
        self.killed: set[int] = set()
        self.notes: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._began = time.monotonic()

    # --- producing -----------------------------------------------------------------

    def submit(self, app: Hutch, count: int, seconds: float = 0.0,
               policy: dict[str, Any] | None = None) -> None:
        """Submit ``count`` runs of ``faults.record``, one confirmed publish at a time,
        recording each confirmed id; a submit that raises is counted, not confirmed."""
        task = app.tasks["faults.record"]
        for _ in range(count):
            with self._lock:
                self.submitted += 1
            try:
                result = task.apply_async((self.run_log, seconds), retry=True,
                                          retry_policy=policy or ENDLESS_RETRY)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.submit_errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.confirmed.append(result.id)

    def producers(self, app: Hutch, count: int, threads: int = 1, seconds: float = 0.0,
                  policy: dict[str, Any] | None = None) -> Callable[[float], None]:
        """Start ``threads`` producers sharing ``count`` submits; returns ``join(timeout)``."""
        shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
        workers = [threading.Thread(target=self.submit, args=(app, n, seconds, policy),
                                    daemon=True) for n in shares]
        for worker in workers:
            worker.start()

        def join(timeout: float) -> None:
            deadline = time.monotonic() + timeout
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            assert not any(w.is_alive() for w in workers), "producers still submitting"

        return join

    # --- the end -------------------------------------------------------------------

    def runs(self) -> list[Run]:
        runs = []
        for line in Path(self.run_log).read_text().splitlines():
            task_id, pid, started, state = line.split()
            runs.append(Run(task_id, int(pid), float(started), state))
        return runs

    def run_count(self) -> int:
        with Path(self.run_log).open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))

    def wait_runs(self, more: int, timeout: float = 60.0) -> None:
        """Wait until ``more`` runs beyond those recorded now have begun (a worker is busy)."""
        target = self.run_count() + more
        assert eventually(lambda: self.run_count() >= target, timeout), \
            f"fewer than {more} runs in {timeout} s"

    def wait_finished(self, backend_url: str, timeout: float) -> bool:
        """Poll the scenario's database until every confirmed id has a final row (a cheap
        count first; the full check once the count is there)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if final_count(backend_url) >= len(self.confirmed):
                states = row_states(backend_url)
                if all(states.get(i) in FINAL for i in self.confirmed):
                    return True
            time.sleep(0.5)
        return False

    def account(self, backend_url: str) -> Report:
        states = row_states(backend_url)
        runs_by_id: dict[str, list[Run]] = defaultdict(list)
        for run in sorted(self.runs(), key=lambda r: r.started):
            runs_by_id[run.task_id].append(run)
        finished = [i for i in self.confirmed if states.get(i) in FINAL]
        unfinished = [i for i in self.confirmed if states.get(i) not in FINAL]
        stuck = [i for i in unfinished
                 if runs_by_id.get(i) or states.get(i) not in (None, "PENDING")]
        extra = [(earlier, later) for runs in runs_by_id.values()
                 for earlier, later in zip(runs, runs[1:], strict=False)]
        after_kill = sum(1 for earlier, _ in extra if earlier.pid in self.killed)
        report = Report(
            scenario=self.scenario, submitted=self.submitted, confirmed=len(self.confirmed),
            finished=len(finished), missing=len(unfinished) - len(stuck), stuck=len(stuck),
            failed=sum(1 for i in finished if states[i] != "SUCCESS"),
            run_twice=sum(1 for runs in runs_by_id.values() if len(runs) > 1),
            reruns_after_kill=after_kill, reruns_unexplained=len(extra) - after_kill,
            run_after_finished=sum(1 for runs in runs_by_id.values() for r in runs
                                   if r.state_at_start in FINAL),
            duration=round(time.monotonic() - self._began, 1),
            notes={**self.notes, **({"submit_errors": len(self.submit_errors)}
                                    if self.submit_errors else {})})
        report.save()
        return report


def row_states(backend_url: str) -> dict[str, str]:
    """``task_id -> state`` of every row in the scenario's own database."""
    return dict(query(backend_url, "SELECT task_id, state FROM hutch_tasks"))


def final_count(backend_url: str) -> int:
    states = ", ".join(f"'{s}'" for s in sorted(FINAL))
    return query(backend_url, f"SELECT count(*) FROM hutch_tasks WHERE state IN ({states})")[0][0]


def query(backend_url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(normalize_backend_url(backend_url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


# --- processes -----------------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and its descendants at once (a worker and its prefork children);
    returns the pids killed."""
    pids = process_tree(pid)
    for each in pids:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def rss_mb(pids: Iterable[int]) -> float:
    """Resident memory of these processes together, in MB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)
