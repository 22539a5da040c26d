"""What PostgreSQL spends on a worker's two writes a task, by rows per statement.

Run: ``.venv/bin/python tests/bench/write_batch_cost.py [-n COUNT] [--rounds R]
[--batch K ...]``, on the host that runs PostgreSQL (it reads the server processes' CPU
from ``/proc``). On a scratch database (``hutch bench``'s, dropped at the end) it
writes COUNT PENDING rows, then their claims (RECEIVED, through
``ResultStore.write(..., claims=...)``) K rows a statement, then their outcomes
(STARTED and SUCCESS, folded into one row version, with ``carry=...``) K rows a
statement: the worker's own statements, one at a time from one thread. It does so
with the schema's indexes, then with only the primary key, ``--rounds`` times each,
and prints the server's CPU (every PostgreSQL process, the WAL writer included) and
this process's, a row version, as medians of the rounds. Prints figures only;
docs/performance.md keeps them ("What a row version costs PostgreSQL").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable

from amqp_scale import cpu_seconds  # tests/bench/amqp_scale.py, beside this script
from sqlalchemy import create_engine, text

from hutch.benchmarks.run import scratch_postgres
from hutch.config import normalize_backend_url
from hutch.results.records import Applied, Claims, StateChange
from hutch.results.store import ResultStore


def server_cpu() -> float:
    """Seconds of CPU used so far by every PostgreSQL process on this host."""
    pids = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    total = 0.0
    for pid in pids.split():
        try:
            total += cpu_seconds(int(pid))
        except FileNotFoundError:  # a backend that ended meanwhile
            continue
    return total


def measured(work: Callable[[], None], rows: int) -> tuple[float, float]:
    """(server CPU, this process's CPU) a row of ``work``, in microseconds."""
    server, own = server_cpu(), time.process_time()
    work()
    return ((server_cpu() - server) / rows * 1e6, (time.process_time() - own) / rows * 1e6)


def one_round(store: ResultStore, count: int, batch: int) -> dict[str, tuple[float, float]]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    now = dt.datetime.now(dt.timezone.utc)
    pending = [StateChange(task_id=i, state="PENDING", name="bench.noop", args=[n], kwargs={},
                           queue="bench", created_at=now) for n, i in enumerate(ids)]
    for start in range(0, count, 500):
        store.write(pending[start:start + 500])
    slices = [ids[start:start + batch] for start in range(0, count, batch)]

    def claims() -> None:
        for some in slices:
            at = dt.datetime.now(dt.timezone.utc)
            store.write([StateChange(task_id=i, state="RECEIVED", name="bench.noop",
                                     queue="bench", worker="bench@host", received_at=at)
                         for i in some], claims=Claims(frozenset(some)))

    def outcomes() -> None:
        for some in slices:
            at = dt.datetime.now(dt.timezone.utc)
            changes = []
            for i in some:
                changes.append(StateChange(task_id=i, state="STARTED", worker="bench@host",
                                           started_at=at))
                changes.append(StateChange(task_id=i, state="SUCCESS", worker="bench@host",
                                           finished_at=at, result=1))
            store.write(changes, carry=Applied())

    return {"claim": measured(claims, count), "outcome": measured(outcomes, count)}


def keep_primary_key_only(url: str) -> None:
    engine = create_engine(normalize_backend_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        names = conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'hutch_tasks'"
            " AND indexname <> 'pk_hutch_tasks'")).scalars().all()
        for name in names:
            conn.execute(text(f"DROP INDEX {name}"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    batches = args.batch or [1, 5, 10, 30, 100]
    print(f"load average {os.getloadavg()[0]:.2f}; {args.count:,} tasks a round, "
          f"medians of {args.rounds} rounds; microseconds of CPU a row version, "
          "server (all PostgreSQL processes) / this process")
    with scratch_postgres(args.postgres) as url:
        for setup in ("all indexes", "primary key only"):
            if setup == "primary key only":
                keep_primary_key_only(url)
            store = ResultStore(url)
            try:
                for batch in batches:
                    rounds = [one_round(store, args.count, batch) for _ in range(args.rounds)]
                    figures = {write: [statistics.median(r[write][k] for r in rounds)
                                       for k in (0, 1)] for write in ("claim", "outcome")}
                    print(f"{setup:>16}, {batch:>3} rows a statement: "
                          + "; ".join(f"{write} {server:,.0f} / {own:,.0f}"
                                      for write, (server, own) in figures.items()),
                          flush=True)
            finally:
                store.close()


if __name__ == "__main__":
    main()
