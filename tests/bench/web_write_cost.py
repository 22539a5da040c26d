"""What the dashboard's indexes (migration 0010) cost the worker's write path.

Run: ``.venv/bin/python tests/bench/web_write_cost.py [--rows N] [-n COUNT] [--rounds R]``.
On one scratch PostgreSQL database (``hutch bench``'s, dropped at the end) holding
``--rows`` rows made like tests/bench/web_tasks.py's, it runs ``hutch bench``'s end to
end scenario (COUNT no-op tasks published in batches, a ``-P prefork -c 2`` worker,
the clock stops when the last result row is committed) with the indexes of 0010
dropped and with them built, alternately, ``--rounds`` times each. Without them the
database is downgraded to 0009 and stamped 0010 again, so the worker (which wants
the newest schema) still starts. Prints figures only; docs/performance.md keeps them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics

from alembic import command
from web_tasks import fill

from hutch.benchmarks.run import run_bench, scratch_postgres
from hutch.results import migrate


def set_indexes(url: str, built: bool) -> None:
    """Build or drop 0010's indexes, leaving the database stamped 0010 either way."""
    config = migrate.alembic_config(url=url)
    if built:
        command.stamp(config, "0009")
        migrate.upgrade(url, "0010")
    else:
        migrate.downgrade(url, "0009")
        command.stamp(config, "0010")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("-n", "--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    options = parser.parse_args()
    broker = os.environ.get("HUTCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    rates: dict[bool, list[float]] = {False: [], True: []}
    with scratch_postgres(options.server) as url:
        fill(url, options.rows, dt.datetime.now(dt.timezone.utc))
        for turn in range(options.rounds * 2):
            built = turn % 2 == 1
            set_indexes(url, built)
            figures = run_bench(broker, url, options.count, "prefork", 2, lambda _: None,
                                ("end-to-end",))
            rates[built].append(figures["end_to_end_per_s"])
            print(f"{'with' if built else 'without'} 0010's indexes: "
                  f"{figures['end_to_end_per_s']:,.0f} tasks/s end to end "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    without, with_ = statistics.mean(rates[False]), statistics.mean(rates[True])
    print(f"mean: without {without:,.0f} tasks/s, with {with_:,.0f} tasks/s "
          f"({with_ / without - 1:+.0%}), {options.rows:,} rows to start with")


if __name__ == "__main__":
    main()
