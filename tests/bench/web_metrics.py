"""What one ``/metrics`` scrape of hutch web costs with many rows in ``hutch_tasks``.

Run: ``.venv/bin/python tests/bench/web_metrics.py [--rows N] [--backend URL]``
(default: 100,000 rows in a fresh SQLite file; a PostgreSQL URL must point at a
scratch database upgraded with ``hutch db upgrade``: rows are added to it). The
rows are spread over the last hour (40 task names, 4 queues, 1/12 of them in the
histograms' 5-minute window); the broker is memory://. Prints figures only;
docs/dashboard.md ("Metrics") keeps them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import uuid

from starlette.testclient import TestClient

from hutch import Hutch
from hutch.results.records import StateChange
from hutch.results.store import ResultStore
from hutch.web.app import create_app

STATES = ["SUCCESS"] * 7 + ["FAILURE", "PENDING", "RETRY"]


def fill(store: ResultStore, rows: int, now: dt.datetime) -> None:
    for start in range(0, rows, 2000):
        batch = []
        for i in range(start, min(rows, start + 2000)):
            finished = now - dt.timedelta(seconds=i * 3600.0 / rows)
            batch.append(StateChange(
                task_id=uuid.uuid4().hex, state=STATES[i % 10], name=f"bench.task{i % 40}",
                queue=f"q{i % 4}", created_at=finished - dt.timedelta(seconds=2),
                received_at=finished - dt.timedelta(seconds=1.5),
                started_at=finished - dt.timedelta(seconds=1), finished_at=finished))
        store.write(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--scrapes", type=int, default=11)
    options = parser.parse_args()
    backend = options.backend or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    app = Hutch("bench", broker=f"memory://{uuid.uuid4().hex}", backend=backend)
    try:
        began = time.perf_counter()
        fill(app.client().store, options.rows, dt.datetime.now(dt.timezone.utc))
        print(f"wrote {options.rows} rows in {time.perf_counter() - began:.1f} s")
        with TestClient(create_app(app)) as http:
            times = []
            for _ in range(options.scrapes):
                began = time.perf_counter()
                answer = http.get("/metrics")
                times.append(time.perf_counter() - began)
                assert answer.status_code == 200 and "} 1.0" not in "".join(
                    line for line in answer.text.splitlines()
                    if line.startswith("hutch_scrape_error")), answer.text[-600:]
        print(f"{app.client().store.dialect}: scrape median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms; {len(answer.content)} bytes, "
              f"{answer.text.count(chr(10))} lines")
    finally:
        app.close()


if __name__ == "__main__":
    main()
