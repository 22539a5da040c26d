"""What the dashboard's indexes (migration 0010) cost the worker's write path.

Run: ``.venv/bin/python tests/bench/web_write_cost.py [--rows N] [-n COUNT] [--rounds R]``.
On one scratch PostgreSQL database (``hutch bench``'s, dropped at the end) holding
``--rows`` rows made like tests/bench/web_tasks.py's, it runs ``hutch bench``'s end to
end scenario (COUNT no-op tasks published in batches, a ``-P prefork -c 2`` worker,
the clock stops when the last result row is committed) without the indexes of 0010,
with its B-trees only, and with all of them (the trigram index too), in turn,
``--rounds`` times each. The indexes are dropped and built by hand from the
revision's own definitions, so the schema stays at the head and the worker (which
wants the newest schema) starts. Prints figures only; docs/performance.md keeps them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import statistics
from pathlib import Path
from types import ModuleType

from sqlalchemy import create_engine, text

from hutch.benchmarks.run import run_bench, scratch_postgres
from hutch.benchmarks.web import fill
from hutch.config import normalize_backend_url

SETUPS = ("without 0010's indexes", "with 0010's B-trees only", "with all 0010's indexes")
MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0010_dashboard_indexes.py"


def _revision() -> ModuleType:
    spec = importlib.util.spec_from_file_location("revision_0010", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_indexes(url: str, setup: str) -> None:
    """Give ``hutch_tasks`` 0010's indexes (all, or all but the trigram one) or 0009's,
    with 0010's own definitions; the schema stays stamped 0010 either way."""
    rev = _revision()
    table = rev.TABLE
    engine = create_engine(normalize_backend_url(url))
    with engine.begin() as conn:
        for name in [*rev.ADDED, rev.SEARCH_INDEX, *rev.REPLACED]:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        wanted = rev.REPLACED if setup == SETUPS[0] else rev.ADDED
        for name, columns in wanted.items():
            include = rev.INCLUDED.get(name)
            conn.execute(text(f"CREATE INDEX {name} ON {table} ({', '.join(columns)})"
                              + (f" INCLUDE ({', '.join(include)})" if include else "")))
        if setup == SETUPS[2]:
            conn.execute(text(f"CREATE INDEX {rev.SEARCH_INDEX} ON {table} "
                              f"USING gin (({rev.SEARCH_TEXT}) gin_trgm_ops)"))
        conn.execute(text(f"ANALYZE {table}"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("-n", "--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    options = parser.parse_args()
    broker = os.environ.get("HUTCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    with scratch_postgres(options.server) as url:
        fill(url, options.rows, dt.datetime.now(dt.timezone.utc))
        for _ in range(options.rounds):
            for setup in SETUPS:
                set_indexes(url, setup)
                figures = run_bench(broker, url, options.count, "prefork", 2, lambda _: None,
                                    ("end-to-end",))
                rates[setup].append(figures["end_to_end_per_s"])
                print(f"{setup}: {figures['end_to_end_per_s']:,.0f} tasks/s end to end "
                      f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    without = statistics.mean(rates[SETUPS[0]])
    for setup in SETUPS:
        mean = statistics.mean(rates[setup])
        print(f"mean {setup}: {mean:,.0f} tasks/s ({mean / without - 1:+.0%})")
    print(f"{options.rows:,} rows to start with")


if __name__ == "__main__":
    main()
