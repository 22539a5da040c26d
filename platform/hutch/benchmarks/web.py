"""The web scenario: the dashboard's task list and counts with many rows in ``hutch_tasks``.

:func:`bench_web` COPYs N realistic rows into a PostgreSQL database (40 task names
of skewed frequency, 4 queues, 8 worker processes, 30 days of creation times, JSON
args/kwargs/results, failures with exceptions, workflows with root/group ids),
``VACUUM ANALYZE``s it (autovacuum's steady state), then times each call the task
list and stats pages make through :mod:`hutch.ops.tasks`, ``repeat`` times after a
warm-up: p50 and p95. ``hutch bench --only web -n 1000000`` is issue #14's check
(every call under 200 ms at p95); tests/bench/web_tasks.py runs it on a database
of its own, at any revision. docs/performance.md ("Dashboard at 1,000,000 rows")
keeps the figures.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import psycopg

from ..config import normalize_backend_url
from ..ops.overview import task_figures, window_of
from ..ops.tasks import TaskFilters, list_tasks, state_counts
from ..results import migrate
from ..results.store import ResultStore

Say = Callable[[str], None]
TARGET_MS = 200
"""Issue #14: every call under this at p95 with 1,000,000 rows."""

NAMES = [f"proj.{area}.{verb}" for area in ("billing", "mail", "reports", "images", "sync")
         for verb in ("send", "render", "resize", "fetch", "index", "charge", "export", "clean")]
"""40 task names; the first few much commoner than the rest (weights below)."""
QUEUES = ["default", "mail", "reports", "images"]
WORKERS = [f"celery@host{h}:{1000 + p}" for h in range(4) for p in range(2)]
STATES = ["SUCCESS"] * 86 + ["FAILURE"] * 6 + ["RETRY"] * 2 + ["STARTED", "RECEIVED"] + \
    ["PENDING"] * 2 + ["REVOKED"] * 2
"""Over the last hour the unfinished states are commoner; overall mostly SUCCESS."""
EXCEPTIONS = [("ValueError", "invalid literal for int() with base 10: 'x{n}'"),
              ("TimeoutError", "upstream did not answer within 30 s (order {n})"),
              ("KeyError", "'customer_{n}'")]
COLUMNS = ("task_id", "name", "state", "args", "kwargs", "result", "exception_type",
           "exception_message", "traceback", "queue", "worker", "retries", "parent_id",
           "root_id", "group_id", "schedule_name", "created_at", "received_at", "started_at",
           "finished_at", "updated_at")
DAYS = 30
NEEDLE = "needle-7f3a"
"""A word in the args of 1 row in 10,000: what a user searching for an order id types."""


def fake_rows(count: int, now: dt.datetime, seed: int = 14) -> Iterator[tuple[Any, ...]]:
    """``count`` rows created over the last :data:`DAYS` days, oldest first (as written)."""
    rand = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(NAMES))]
    names = rand.choices(NAMES, weights, k=count)
    start = now - dt.timedelta(days=DAYS)
    step = dt.timedelta(days=DAYS) / count
    root = group = parent = None
    for i in range(count):
        created = start + step * i
        if i % 10 == 0:  # every tenth task starts a workflow of ten
            root, group, parent = f"root-{i:08d}", (f"group-{i:08d}" if i % 20 == 0 else None), None
        task_id = str(uuid.UUID(int=rand.getrandbits(128), version=4))
        state = "PENDING" if created > now - dt.timedelta(minutes=1) else rand.choice(STATES)
        yield _row(rand, i, task_id, names[i], state, created, root, group, parent)
        parent = task_id


def _row(rand: random.Random, i: int, task_id: str, name: str, state: str, created: dt.datetime,
         root: str | None, group: str | None, parent: str | None) -> tuple[Any, ...]:
    received = None if state == "PENDING" else created + dt.timedelta(milliseconds=rand.randint(2, 900))
    started = received + dt.timedelta(milliseconds=3) if received and state != "RECEIVED" else None
    done = state in ("SUCCESS", "FAILURE", "REVOKED")
    finished = started + dt.timedelta(seconds=rand.expovariate(2)) if started and done else None
    note = NEEDLE if i % 10_000 == 7 else f"order-{rand.randint(1, 10**6)}"
    args = json.dumps([i, note, {"customer": f"c{i % 5000}", "amount": i % 997}])
    kwargs = json.dumps({"retry": i % 3 == 0, "locale": rand.choice(("en", "de", "fr"))})
    result = json.dumps({"ok": True, "rows": i % 250}) if state == "SUCCESS" else None
    exc_type = exc_message = traceback = None
    if state in ("FAILURE", "RETRY"):
        exc_type, message = rand.choice(EXCEPTIONS)
        exc_message = message.format(n=i)
        traceback = f'Traceback (most recent call last):\n  File "tasks.py", line 42\n{exc_type}: {exc_message}\n'
    return (task_id, name, state, args, kwargs, result, exc_type, exc_message, traceback,
            QUEUES[i % 4], None if received is None else WORKERS[i % 8],
            1 if state == "RETRY" else 0, parent, root if parent else None, group,
            "nightly-report" if i % 50 == 0 else None, created, received, started, finished,
            finished or started or received or created)


def fill(url: str, count: int, now: dt.datetime) -> None:
    """COPY ``count`` rows in, then VACUUM ANALYZE (autovacuum's steady state)."""
    dsn = normalize_backend_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY hutch_tasks ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in fake_rows(count, now):
                    copy.write_row(row)
            cur.execute("VACUUM ANALYZE hutch_tasks")


def cursor_at(store: ResultStore, filters: TaskFilters, page: int, sort: str) -> str | None:
    """The cursor that opens page ``page`` (1-based) of the list."""
    cursor = None
    for _ in range(page - 1):
        cursor = list_tasks(store, filters, after=cursor, sort=sort).next_cursor
    return cursor


def calls(store: ResultStore, now: dt.datetime) -> list[tuple[str, Callable[[], object]]]:
    """(label, call) for every read the task list, stats and overview pages make."""
    day = now - dt.timedelta(days=3)
    some = list_tasks(store, TaskFilters(states=("FAILURE",)), limit=1).items[0]
    window = TaskFilters(received_after=day, received_before=day + dt.timedelta(hours=1))
    listed: list[tuple[str, TaskFilters, str]] = [
        ("first page", TaskFilters(), "-created"),
        ("state=FAILURE", TaskFilters(states=("FAILURE",)), "-created"),
        ("state=SUCCESS", TaskFilters(states=("SUCCESS",)), "-created"),
        ("state=RETRY,STARTED", TaskFilters(states=("RETRY", "STARTED")), "-created"),
        ("name (common)", TaskFilters(name=NAMES[0]), "-created"),
        ("name (rare)", TaskFilters(name=NAMES[-1]), "-created"),
        ("state+name", TaskFilters(states=("FAILURE",), name=NAMES[-1]), "-created"),
        ("queue", TaskFilters(queue="reports"), "-created"),
        ("worker process", TaskFilters(worker=WORKERS[3]), "-created"),
        ("worker node", TaskFilters(worker="celery@host2"), "-created"),
        ("received in 1 h, 3 days ago", window, "-created"),
        ("finished in 1 h, 3 days ago", TaskFilters(finished_after=day,
                                                   finished_before=day + dt.timedelta(hours=1)),
         "-finished"),
        ("root_id", TaskFilters(root_id=some.root_id or "none"), "-created"),
        ("group_id", TaskFilters(group_id=some.group_id or "none"), "-created"),
        ("schedule", TaskFilters(schedule_name="nightly-report"), "-created"),
        ("search: task id", TaskFilters(search=some.task_id), "-created"),
        ("search: word in args (1 in 10k)", TaskFilters(search=NEEDLE), "-created"),
        ("search: exception text", TaskFilters(search="upstream did not"), "-created"),
        ("search: no match", TaskFilters(search="zzqx-nothing"), "-created"),
    ]
    listed += [(f"sort {sort}", TaskFilters(), sort)
               for name in ("created", "received", "started", "finished", "name", "state")
               for sort in (name, "-" + name)]
    out: list[tuple[str, Callable[[], object]]] = [
        (label, partial(list_tasks, store, f, sort=s)) for label, f, s in listed]
    for sort in ("-created", "-finished", "name"):
        after = cursor_at(store, TaskFilters(), 50, sort)
        out.append((f"page 50, sort {sort}",
                    partial(list_tasks, store, TaskFilters(), after=after, sort=sort)))
    after = cursor_at(store, TaskFilters(states=("FAILURE",)), 50, "-created")
    out.append(("page 50, state=FAILURE", partial(
        list_tasks, store, TaskFilters(states=("FAILURE",)), after=after)))
    counted = [("counts: all", TaskFilters()), ("counts: name", TaskFilters(name=NAMES[0])),
               ("counts: received in 1 h", window),
               ("counts: last 24 h", TaskFilters(received_after=now - dt.timedelta(days=1))),
               ("counts: search word", TaskFilters(search=NEEDLE)),
               ("counts: search exception text", TaskFilters(search="upstream did not"))]
    out += [(label, partial(state_counts, store, f)) for label, f in counted]
    out += [(f"overview: last {name}", partial(task_figures, store, window_of(name), now))
            for name in ("hour", "day")]
    return out


def samples_ms(call: Callable[[], object], repeat: int) -> list[float]:
    """How long each of ``repeat`` calls took, in ms, after one warm-up call."""
    call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(p50, p95) in ms of ``repeat`` calls after one warm-up call."""
    samples = samples_ms(call, repeat)
    return statistics.median(samples), statistics.quantiles(samples, n=20)[18]


def measure(url: str, repeat: int, now: dt.datetime, say: Say) -> dict[str, float]:
    """p50 and p95 of each call, said as a table; figures ``web_<call>_p95_ms``."""
    figures: dict[str, float] = {}
    store = ResultStore(url)
    if migrate.current(url) not in migrate.heads():  # timing an older schema on purpose
        store._schema_ready = True
    try:
        say(f"load average {os.getloadavg()[0]:.2f}; {'call':25} {'p50 ms':>8} {'p95 ms':>8}")
        for label, call in calls(store, now):
            p50, p95 = timed(call, repeat)
            figures[f"web_{label}_p95_ms"] = p95
            flag = "" if p95 < TARGET_MS else f"  > {TARGET_MS} ms"
            say(f"{label:38} {p50:8.1f} {p95:8.1f}{flag}")
    finally:
        store.close()
    return figures


def bench_web(url: str, rows: int, say: Say, repeat: int = 30) -> dict[str, float]:
    """Add ``rows`` rows to the PostgreSQL database at ``url`` (migrated), then time
    the dashboard's reads; figures ``web_<call>_p95_ms``."""
    began = time.perf_counter()
    fill(url, rows, dt.datetime.now(dt.timezone.utc))
    say(f"web: {rows:,} rows added by COPY and VACUUM ANALYZEd in "
        f"{time.perf_counter() - began:.0f} s")
    return measure(url, repeat, dt.datetime.now(dt.timezone.utc), say)
