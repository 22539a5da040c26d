"""``hutch bench --only web``: the dashboard's reads timed on rows it COPYs in
(real RabbitMQ for the bench's own setup, real PostgreSQL; a small N, so a smoke
run that checks every call answers and is reported, not how fast)."""

import datetime as dt
import re

import pytest

from hutch.benchmarks.run import run_bench
from hutch.benchmarks.web import NEEDLE, fake_rows
from hutch.ops.tasks import TaskFilters, list_tasks
from hutch.results.store import ResultStore

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_the_web_scenario_fills_the_table_and_reports_every_read(amqp_url, fresh_postgres_url):
    said: list[str] = []
    figures = run_bench(amqp_url, fresh_postgres_url, 1000, "prefork", 2, said.append, ("web",))
    assert said[1].startswith("web: 1,000 rows added by COPY")
    table = next(i for i, line in enumerate(said) if line.startswith("load average"))
    rows = said[table + 1:]  # one per call: label, p50, p95, and a flag past the target
    assert len(figures) == len(rows) >= 40
    assert all(re.fullmatch(r".{38} +\d+\.\d +\d+\.\d( +> \d+ ms)?", row) for row in rows), rows
    assert all(value >= 0 for value in figures.values())
    assert {"web_first page_p95_ms", "web_counts: all_p95_ms",
            "web_search: word in args (1 in 10k)_p95_ms"} <= set(figures)
    store = ResultStore(fresh_postgres_url)
    try:
        found = list_tasks(store, TaskFilters(search=NEEDLE)).items
        assert [task.args[1] for task in found] == [NEEDLE]
        assert len(list_tasks(store, TaskFilters(), limit=500).items) == 500
    finally:
        store.close()


def test_fake_rows_keep_their_times_in_the_state_machine_s_order():
    for row in fake_rows(200, dt.datetime(2026, 1, 31, tzinfo=dt.timezone.utc)):
        times = [t for t in row[-5:-1] if t is not None]
        assert times == sorted(times), row
