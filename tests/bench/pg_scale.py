"""``hutch_tasks`` at 10,000,000 rows: today's plain table against one partitioned by time.

Run: ``.venv/bin/python tests/bench/pg_scale.py [--rows N] [--tasks N] [--rounds R]``.
Run by hand (not by pytest); it prints figures and asserts nothing. docs/scaling.md
keeps them.

It creates two scratch databases ``hutch_scale_<random>_plain`` and ``..._part`` on
``--server`` (default: the local PostgreSQL), both migrated to head by hutch's own
migrations, and drops them at the end, on Ctrl-C or failure too (``--keep`` keeps
them). In ``_part`` the migrated ``hutch_tasks`` is replaced by the same table built
from hutch's metadata (hutch.results.models: every column and index), declaratively
partitioned by ``RANGE (created_at)`` in daily partitions, whose primary key must then be
``(task_id, created_at)``: PostgreSQL only enforces uniqueness across partitions when the
key holds the partition key.

Each design is loaded with ``--rows`` rows created over the last 30 days (the mix of
hutch.benchmarks.web: 86% SUCCESS, 6% FAILURE, 2% RETRY, skewed task names,
workflows, JSON args/kwargs/results) by ``INSERT ... SELECT generate_series`` with the
primary key and indexes dropped, which are then built again from the metadata (each
build timed). Then, ``--rounds`` times, alternating the designs:

- writes: ``--tasks`` new tasks through hutch's ResultStore.write (the real
  statements), ``--threads`` writers at once, each task written as the client and
  the worker do: its PENDING row (a batch of ``--batch``), its RECEIVED claim (a batch,
  with Claims, as worker/claims.py), its STARTED and SUCCESS in one batch (with the
  completion notice's carry, as worker/recorder.py). On the partitioned table the
  upsert's conflict target is ``(task_id, created_at)`` (the same SET and WHERE as
  hutch's, only the target differs), so every change must carry the task's
  ``created_at``: here it does, as a worker would from the message's ``sent_at``.
- reads: the dashboard's main calls (hutch.benchmarks.web.calls: the task list,
  its filters and counts, the overview), ``--repeat`` times each, p50 and max.

Then the retention, the oldest (partial) day and then one more day per round: on the
plain table hutch's own cleanup (hutch.beat.store.BeatStore.delete_batch,
``result_cleanup_batch`` rows a statement) deleting the day's finished rows, then the
VACUUM that makes their space reusable; on the partitioned table ``DROP TABLE`` of
that day's partition. Sizes are printed after the load. Every phase prints the load
average at its start.

``--migrate`` then turns the plain table into the partitioned design in place (the
old table attached as the partition of everything before the next midnight), timing
each step, and writes through it (docs/scaling.md, "Migrating an existing table").
``--designs plain`` builds one design only; ``--rounds 0`` skips the timed rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, Table, create_engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from hutch.beat.store import BeatStore
from hutch.benchmarks.web import NAMES, calls, samples_ms
from hutch.config import normalize_backend_url
from hutch.results import migrate
from hutch.results.models import tasks
from hutch.results.records import RECEIVED, STARTED, SUCCESS, Applied, Claims, StateChange
from hutch.results.store import ROW_COLUMNS, ResultStore

DESIGNS = ("plain", "partitioned")
DAYS = 30
CHUNK = 1_000_000
"""Rows per INSERT of the load (one transaction each, so progress shows)."""
READS = ("first page", "state=FAILURE", "name (common)", "name (rare)", "state+name",
         "received in 1 h, 3 days ago", "search: word in args (1 in 10k)", "sort -finished",
         "page 50, sort -created", "counts: all", "counts: name", "counts: last 24 h",
         "overview: last hour", "overview: last day")
"""The dashboard calls timed (labels of hutch.benchmarks.web.calls)."""

LOAD_SQL = """
INSERT INTO hutch_tasks (task_id, name, state, args, kwargs, result, exception_type,
    exception_message, traceback, queue, worker, retries, parent_id, root_id, group_id,
    schedule_name, created_at, received_at, started_at, finished_at, updated_at)
SELECT id, name, state, args, kwargs,
    CASE WHEN state = 'SUCCESS' THEN jsonb_build_object('ok', true, 'rows', g %% 250) END,
    CASE WHEN state IN ('FAILURE', 'RETRY') THEN exc END,
    CASE WHEN state IN ('FAILURE', 'RETRY') THEN exc || ': upstream did not answer (order '
        || g || ')' END,
    CASE WHEN state IN ('FAILURE', 'RETRY') THEN 'Traceback (most recent call last):'
        || chr(10) || '  File "tasks.py", line 42' || chr(10) || exc END,
    (ARRAY['default', 'mail', 'reports', 'images'])[1 + g %% 4],
    CASE WHEN received IS NOT NULL THEN 'celery@host' || (g %% 8 / 2) || ':' || (1000 + g %% 2) END,
    CASE WHEN state = 'RETRY' THEN 1 ELSE 0 END, parent, root, grp,
    CASE WHEN g %% 50 = 0 THEN 'nightly-report' END,
    created, received, started, finished, coalesce(finished, started, received, created)
FROM (
  SELECT s.*, CASE WHEN started IS NOT NULL AND state IN ('SUCCESS', 'FAILURE', 'REVOKED')
      THEN started + (-ln(1 - r3) / 2) * interval '1 second' END AS finished
  FROM (
    SELECT s.*, CASE WHEN received IS NOT NULL AND state <> 'RECEIVED'
        THEN received + interval '3 milliseconds' END AS started
    FROM (
      SELECT s.*, CASE WHEN state <> 'PENDING'
          THEN created + (2 + r2 * 898) * interval '1 millisecond' END AS received
      FROM (
        SELECT s.*, CASE WHEN created > %(now)s - interval '1 minute' THEN 'PENDING'
            WHEN r1 < 0.86 THEN 'SUCCESS' WHEN r1 < 0.92 THEN 'FAILURE'
            WHEN r1 < 0.94 THEN 'RETRY' WHEN r1 < 0.95 THEN 'STARTED'
            WHEN r1 < 0.96 THEN 'RECEIVED' WHEN r1 < 0.98 THEN 'PENDING'
            ELSE 'REVOKED' END AS state
        FROM (
          SELECT g, random() AS r1, random() AS r2, random() AS r3,
            md5(g::text)::uuid::text AS id,
            CASE WHEN g %% 10 <> 0 THEN md5((g - 1)::text)::uuid::text END AS parent,
            CASE WHEN g %% 10 <> 0 THEN 'root-' || lpad((g / 10 * 10)::text, 8, '0') END AS root,
            CASE WHEN g / 10 %% 2 = 0 THEN 'group-' || lpad((g / 10 * 10)::text, 8, '0') END AS grp,
            (%(names)s::text[])[1 + floor(%(n_names)s * power(random(), 2.5))::int] AS name,
            (ARRAY['ValueError', 'TimeoutError', 'KeyError'])[1 + g %% 3] AS exc,
            jsonb_build_array(g, CASE WHEN g %% 10000 = 7 THEN 'needle-7f3a'
                ELSE 'order-' || floor(random() * 1000000)::int END,
                jsonb_build_object('customer', 'c' || g %% 5000, 'amount', g %% 997)) AS args,
            jsonb_build_object('retry', g %% 3 = 0,
                'locale', (ARRAY['en', 'de', 'fr'])[1 + g %% 3]) AS kwargs,
            %(start)s + (g - 1) * %(step)s AS created
          FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
        ) s
      ) s
    ) s
  ) s
) s
"""
"""The mix of hutch.benchmarks.web.fake_rows, made by the server (COPY from Python
would take about 12 minutes for 10,000,000 rows on 2 cores)."""


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", flush=True)


def dsn(url: str) -> str:
    return normalize_backend_url(url).replace("postgresql+psycopg://", "postgresql://")


def sql(statement: Any) -> str:
    return str(statement.compile(dialect=postgresql.dialect()))


def partitioned_table() -> Table:
    """``hutch_tasks`` from hutch's metadata, partitioned by ``RANGE (created_at)``: the
    same columns and indexes; the primary key gains the partition key."""
    columns = [c._copy() for c in tasks.columns]
    columns[0].primary_key = False  # task_id: the key is declared below, with created_at
    table = Table("hutch_tasks", MetaData(), *columns,
                  PrimaryKeyConstraint("task_id", "created_at", name="pk_hutch_tasks"),
                  postgresql_partition_by="RANGE (created_at)")
    for index in tasks.indexes:
        parts = [table.c[e.name] if isinstance(e, Column) else e for e in index.expressions]
        Index(index.name, *parts, _table=table, **index.kwargs)
    return table


def day_bounds(now: dt.datetime) -> list[dt.datetime]:
    """Midnights (UTC) from before the oldest row to two days past ``now``."""
    first = (now - dt.timedelta(days=DAYS + 1)).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
    return [first + dt.timedelta(days=i) for i in range(DAYS + 5)]


def partition_name(day: dt.datetime) -> str:
    return f"hutch_tasks_p{day:%Y%m%d}"


def table_of(design: str) -> Table:
    return tasks if design == "plain" else partitioned_table()


def prepare(url: str, design: str, now: dt.datetime) -> None:
    """The table of ``design``, empty, without its primary key and indexes (for the load)."""
    migrate.upgrade(url)
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        if design == "partitioned":
            table = partitioned_table()
            conn.execute("DROP TABLE hutch_tasks")
            conn.execute(sql(CreateTable(table)))
            bounds = day_bounds(now)
            for low, high in itertools.pairwise(bounds):
                conn.execute(f"CREATE TABLE {partition_name(low)} PARTITION OF hutch_tasks "
                             f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')")
        for index in tasks.indexes:
            conn.execute(f"DROP INDEX IF EXISTS {index.name}")
        conn.execute("ALTER TABLE hutch_tasks DROP CONSTRAINT pk_hutch_tasks")


def load(url: str, design: str, rows: int, now: dt.datetime, search_index: bool) -> None:
    """Fill, then build the primary key and each index from the metadata, timing each."""
    table = table_of(design)
    start = now - dt.timedelta(days=DAYS)
    params = {"now": now, "names": NAMES, "n_names": len(NAMES), "start": start,
              "step": dt.timedelta(days=DAYS) / rows}
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        began = time.perf_counter()
        for lo in range(1, rows + 1, CHUNK):
            conn.execute(LOAD_SQL, {**params, "lo": lo, "hi": min(rows, lo + CHUNK - 1)})
            say(f"{design}: {min(rows, lo + CHUNK - 1):,} rows "
                f"({time.perf_counter() - began:.0f} s)")
        say(f"{design}: {rows:,} rows inserted in {time.perf_counter() - began:.0f} s")
        steps: list[tuple[str, str]] = [("primary key", sql(AddConstraint(table.primary_key)))]
        steps += [(index.name or "", sql(CreateIndex(index))) for index in table.indexes
                  if search_index or index.name != "ix_hutch_tasks_search"]
        total = 0.0
        for name, ddl in steps:
            began = time.perf_counter()
            conn.execute(ddl)
            took = time.perf_counter() - began
            total += took
            say(f"{design}: built {name} in {took:.1f} s")
        say(f"{design}: primary key and {len(steps) - 1} indexes built in {total:.0f} s")
        began = time.perf_counter()
        conn.execute("VACUUM ANALYZE hutch_tasks")
        say(f"{design}: VACUUM ANALYZE in {time.perf_counter() - began:.0f} s")


def sizes(url: str, design: str) -> str:
    """Heap (with TOAST), indexes and total of ``hutch_tasks`` (all partitions)."""
    query = """SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)),
                      sum(pg_total_relation_size(c.oid)), count(*)
               FROM pg_class c WHERE c.relkind = 'r' AND (c.relname = 'hutch_tasks'
                   OR c.oid IN (SELECT relid FROM pg_partition_tree('hutch_tasks')))"""
    with psycopg.connect(dsn(url)) as conn:
        heap, indexes, total, leaves = conn.execute(query).fetchone()  # type: ignore[misc]
        count = conn.execute("SELECT count(*) FROM hutch_tasks").fetchone()[0]  # type: ignore[index]
    gib = 1024 ** 3
    return (f"{design}: {count:,} rows, table {heap / gib:.2f} GiB, indexes "
            f"{indexes / gib:.2f} GiB, total {total / gib:.2f} GiB ({leaves} leaf table(s))")


def open_store(url: str, design: str) -> ResultStore:
    """hutch's ResultStore; on the partitioned table its batch upserts conflict on
    ``(task_id, created_at)`` (the same SET and WHERE: only the target differs)."""
    store = ResultStore(url)
    store._schema_ready = True  # the partitioned table is not what head describes
    if design == "partitioned":
        store._upserts = {key: on_partition_key(statement)
                          for key, statement in store._upserts.items()}
        store._carry_upsert = on_partition_key(store._carry_upsert)
    return store


def on_partition_key(statement: Any) -> Any:
    clause = statement._post_values_clause
    rebuilt = postgresql.insert(tasks).from_select(list(ROW_COLUMNS), statement.select)
    rebuilt = rebuilt.on_conflict_do_update(
        index_elements=[tasks.c.task_id, tasks.c.created_at],
        set_=clause.update_values_to_set, where=clause.update_whereclause)
    return rebuilt.returning(*statement._returning) if statement._returning else rebuilt


def write_tasks(store: ResultStore, count: int, batch: int, threads: int) -> tuple[float, float]:
    """(tasks/s, seconds): ``count`` tasks written PENDING, RECEIVED, STARTED+SUCCESS."""
    per = count // threads
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for lo in range(0, per, batch):
                ids = [uuid.uuid4().hex for _ in range(min(batch, per - lo))]
                sent = dt.datetime.now(dt.timezone.utc)
                store.write([StateChange(task_id=i, state="PENDING", name=NAMES[offset % 40],
                                         args=[offset, lo], kwargs={}, queue="default",
                                         created_at=sent) for i in ids])
                got = dt.datetime.now(dt.timezone.utc)
                received = [StateChange(task_id=i, state=RECEIVED, worker="w@h:1", queue="default",
                                        received_at=got, created_at=sent) for i in ids]
                store.write(received, claims=Claims(frozenset(ids)))
                done = dt.datetime.now(dt.timezone.utc)
                outcome = [change for i in ids for change in (
                    StateChange(task_id=i, state=STARTED, started_at=got, created_at=sent),
                    StateChange(task_id=i, state=SUCCESS, result={"ok": True},
                                finished_at=done, created_at=sent))]
                store.write(outcome, carry=Applied())
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.perf_counter() - began
    if errors:
        raise errors[0]
    return per * threads / took, took


def written(url: str) -> int:
    """Rows the write phases left SUCCESS (their worker is ``w@h:1``)."""
    with psycopg.connect(dsn(url)) as conn:
        row = conn.execute("SELECT count(*) FROM hutch_tasks WHERE worker = 'w@h:1' "
                           "AND state = 'SUCCESS'").fetchone()
    return int(row[0]) if row else 0


def read_calls(store: ResultStore, repeat: int) -> dict[str, tuple[float, float]]:
    """label: (p50 ms, max ms) of each dashboard call of READS."""
    chosen = [(label, call) for label, call in calls(store, dt.datetime.now(dt.timezone.utc))
              if label in READS]
    out = {}
    for label, call in chosen:
        samples = samples_ms(call, repeat)
        out[label] = (statistics.median(samples), max(samples))
    return out


def retention_step(url: str, design: str, store: ResultStore, day: dt.datetime) -> str:
    """Remove the rows of the day before ``day`` (and older): hutch's cleanup and VACUUM
    on the plain table, DROP TABLE of the partition on the other."""
    if design == "partitioned":
        began = time.perf_counter()
        with psycopg.connect(dsn(url), autocommit=True) as conn:
            conn.execute(f"DROP TABLE {partition_name(day - dt.timedelta(days=1))}")
        return f"DROP TABLE of the day's partition {(time.perf_counter() - began) * 1000:.0f} ms"
    beat = BeatStore(store)
    batch = 1000
    began = time.perf_counter()
    deleted = statements = 0
    while True:
        count = beat.delete_batch("tasks", day, batch)
        deleted += count
        statements += 1
        if count < batch:
            break
    took = time.perf_counter() - began
    began = time.perf_counter()
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        conn.execute("VACUUM hutch_tasks")
    vacuum = time.perf_counter() - began
    return (f"hutch's cleanup deleted {deleted:,} rows in {statements} statements, "
            f"{took:.1f} s ({deleted / took:,.0f} rows/s); VACUUM {vacuum:.1f} s")


def migrate_to_partitions(url: str, now: dt.datetime) -> None:
    """Turn the plain ``hutch_tasks`` at ``url`` into the partitioned design, the old
    table becoming the partition of everything before the next midnight (docs/scaling.md,
    "Migrating an existing table"), timing each step; then write through it."""
    cut = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    table = partitioned_table()
    before = [  # while workers write: no step blocks them for long
        "CREATE UNIQUE INDEX CONCURRENTLY hutch_tasks_legacy_key "
        "ON hutch_tasks (task_id, created_at)",
        "CREATE UNIQUE INDEX CONCURRENTLY hutch_tasks_legacy_id ON hutch_tasks (task_id)",
        f"ALTER TABLE hutch_tasks ADD CONSTRAINT hutch_tasks_legacy_range "
        f"CHECK (created_at < '{cut.isoformat()}') NOT VALID",
        "ALTER TABLE hutch_tasks VALIDATE CONSTRAINT hutch_tasks_legacy_range"]
    swap = ["ALTER TABLE hutch_tasks RENAME TO hutch_tasks_legacy",
            "ALTER TABLE hutch_tasks_legacy DROP CONSTRAINT pk_hutch_tasks",
            "ALTER TABLE hutch_tasks_legacy ADD CONSTRAINT pk_hutch_tasks_legacy "
            "PRIMARY KEY USING INDEX hutch_tasks_legacy_key"]
    with psycopg.connect(dsn(url)) as conn:
        built = {row[0] for row in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'hutch_tasks'")}
    indexes = [index for index in table.indexes if index.name in built]
    swap += [f"ALTER INDEX {index.name} RENAME TO {index.name}_legacy" for index in indexes]
    swap.append(sql(CreateTable(table)))
    swap += [sql(CreateIndex(index)).replace(" ON hutch_tasks ", " ON ONLY hutch_tasks ", 1)
             for index in indexes]
    for day in (cut + dt.timedelta(days=i) for i in range(3)):
        swap.append(f"CREATE TABLE {partition_name(day)} PARTITION OF hutch_tasks FOR VALUES "
                    f"FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')")
    swap.append("ALTER TABLE hutch_tasks ATTACH PARTITION hutch_tasks_legacy "
                f"FOR VALUES FROM (MINVALUE) TO ('{cut.isoformat()}')")
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        for ddl in before:
            began = time.perf_counter()
            conn.execute(ddl)
            say(f"migration, online: {ddl.split(' ON ')[0][:70]} in "
                f"{time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        with conn.transaction():
            for ddl in swap:
                conn.execute(ddl)
        say(f"migration, the swap ({len(swap)} statements in one transaction, writes "
            f"wait meanwhile): {(time.perf_counter() - began) * 1000:.0f} ms")
        attached = conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = "
                                "'hutch_tasks_legacy'::regclass").fetchone()
        invalid = conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid AND "
                               "indrelid = 'hutch_tasks'::regclass").fetchone()
        say(f"migration: the old table has {attached[0] if attached else '?'} indexes (the "
            f"parent's matched them: none rebuilt); invalid indexes on the new table: "
            f"{invalid[0] if invalid else '?'}")
    with open_store(url, "partitioned") as store:
        rate, _ = write_tasks(store, 2000, 100, 2)
    say(f"migration: hutch's writes (conflict on task_id, created_at) go on: {rate:,.0f} tasks/s; "
        f"{written(url):,} SUCCESS rows written by the benchmark")


@contextmanager
def scratch_databases(server: str, keep: bool) -> Iterator[dict[str, str]]:
    """One database per design, dropped at the end (on failure and Ctrl-C too)."""
    base = f"hutch_scale_{uuid.uuid4().hex[:8]}"
    names = {design: f"{base}_{design[:5]}" for design in DESIGNS}
    engine = create_engine(normalize_backend_url(server), isolation_level="AUTOCOMMIT")
    created: list[str] = []
    try:
        with engine.connect() as conn:
            for name in names.values():
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        yield {design: server.rsplit("/", 1)[0] + f"/{name}" for design, name in names.items()}
    finally:
        if keep:
            print(f"kept databases {', '.join(created)}: drop them when done")
        else:
            with engine.connect() as conn:
                for name in created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def spread(values: list[float], unit: str, fmt: str = ",.0f") -> str:
    return (f"median {statistics.median(values):{fmt}} {unit} "
            f"(range {min(values):{fmt}}-{max(values):{fmt}}, {len(values)} runs)")


def interrupted(*_: object) -> None:
    """SIGTERM ends the run as Ctrl-C does: the scratch databases are dropped."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks written per round")
    parser.add_argument("--batch", type=int, default=100, help="changes per write")
    parser.add_argument("--threads", type=int, default=4, help="writers at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5, help="calls of each read per round")
    parser.add_argument("--no-search-index", action="store_true",
                        help="skip the trigram index (the slowest build)")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--designs", default=",".join(DESIGNS),
                        help="which of plain,partitioned to build and time")
    parser.add_argument("--migrate", action="store_true",
                        help="at the end, migrate the plain table to the partitioned design")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)
    now = dt.datetime.now(dt.timezone.utc)
    say(f"{options.rows:,} rows per design, {os.cpu_count()} cores, "
        f"loadavg {open('/proc/loadavg').read().strip()}")
    designs = [d for d in DESIGNS if d in options.designs.split(",")]
    with scratch_databases(options.server, options.keep) as urls, ExitStack() as stack:
        for design in designs:
            prepare(urls[design], design, now)
            load(urls[design], design, options.rows, now, not options.no_search_index)
        for design in designs:
            say(sizes(urls[design], design))
        stores = {d: stack.enter_context(open_store(urls[d], d)) for d in designs}
        rates: dict[str, list[float]] = {d: [] for d in designs}
        reads: dict[str, dict[str, list[tuple[float, float]]]] = {d: {} for d in designs}
        for round_ in range(1, options.rounds + 1):
            for design in designs:
                rate, took = write_tasks(stores[design], options.tasks, options.batch,
                                         options.threads)
                rates[design].append(rate)
                say(f"round {round_} {design}: {options.tasks:,} tasks written in {took:.1f} s: "
                    f"{rate:,.0f} tasks/s ({3 * rate:,.0f} upserted rows/s)")
                for label, figures in read_calls(stores[design], options.repeat).items():
                    reads[design].setdefault(label, []).append(figures)
                say(f"round {round_} {design}: reads timed")
        for design in designs if options.rounds else ():
            say(f"{design}: writes {spread(rates[design], 'tasks/s')}; "
                f"{written(urls[design]):,} rows for {options.rounds * options.tasks:,} tasks "
                "written (one row each, SUCCESS, or the upsert missed its row)")
            for label, runs in reads[design].items():
                p50 = statistics.median(r[0] for r in runs)
                worst = max(r[1] for r in runs)
                print(f"  {design:11} {label:34} p50 {p50:8.1f} ms   max {worst:8.1f} ms "
                      f"(p50 per round {', '.join(f'{r[0]:.1f}' for r in runs)})")
        oldest = day_bounds(now)[1]
        for round_ in range(1, options.rounds + 2 if options.rounds else 1):
            day = oldest + dt.timedelta(days=round_)
            for design in designs:
                say(f"retention {design}, rows of {day - dt.timedelta(days=1):%Y-%m-%d} "
                    f"{'(a partial day) ' if round_ == 1 else ''}: "
                    f"{retention_step(urls[design], design, stores[design], day)}")
        if options.migrate and "plain" in designs:
            stores["plain"].close()
            migrate_to_partitions(urls["plain"], now)


if __name__ == "__main__":
    main()
