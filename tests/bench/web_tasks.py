"""How fast the dashboard's task list and counts answer with 1,000,000 rows in PostgreSQL.

Run: ``.venv/bin/python tests/bench/web_tasks.py [--rows N] [--server URL] [--revision R]``.
It creates a scratch database ``hutch_bench_<random>`` on ``--server`` (default: the
local PostgreSQL), migrates it to ``--revision`` (default: head; ``0009`` shows the
table without the dashboard's indexes), and runs the web scenario of ``hutch bench``
(hutch.benchmarks.web: COPY ``--rows`` realistic rows, VACUUM ANALYZE, then p50/p95
of every call the task list and stats pages make, ``--repeat`` times). The database
is dropped at the end unless ``--keep``; ``--database URL`` times an already filled
database instead (no fill, no drop). ``hutch bench --only web -n 1000000`` does the
same at head on ``hutch bench``'s scratch database. Prints figures only;
docs/performance.md ("Dashboard at 1,000,000 rows") keeps them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from hutch.benchmarks.web import bench_web, measure
from hutch.config import normalize_backend_url
from hutch.results import migrate


@contextmanager
def scratch_database(server: str, revision: str, keep: bool) -> Iterator[str]:
    name = f"hutch_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(normalize_backend_url(server), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = server.rsplit("/", 1)[0] + f"/{name}"
        migrate.upgrade(url, revision)
        yield url
    finally:
        if not keep:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--revision", default="head")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database", default=None, help="an already filled database to time")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args()
    if options.database:
        measure(options.database, options.repeat, dt.datetime.now(dt.timezone.utc), print)
        return
    with scratch_database(options.server, options.revision, options.keep) as url:
        print(f"schema at {migrate.current(url)}")
        bench_web(url, options.rows, print, options.repeat)
        if options.keep:
            print(f"kept {url}: drop it when done")


if __name__ == "__main__":
    main()
