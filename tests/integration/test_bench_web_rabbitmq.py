"""``hutch bench --only web``: the dashboard's reads timed on rows it COPYs in
(real RabbitMQ for the bench's own setup, real PostgreSQL; a small N, so a smoke
run that checks every call answers and is reported, not how fast)."""

import contextlib
import datetime as dt
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from hutch.benchmarks import run as bench_run
from hutch.benchmarks.run import run_bench, scratch_postgres
from hutch.benchmarks.web import NEEDLE, fake_rows, fill
from hutch.ops.tasks import TaskFilters, list_tasks
from hutch.results.models import make_engine
from hutch.results.store import ResultStore

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_the_web_scenario_reports_every_read_on_a_database_of_its_own(
        amqp_url, fresh_postgres_url, monkeypatch):
    made: list[str] = []

    @contextlib.contextmanager
    def recorded(server_url: str) -> Iterator[str]:
        with scratch_postgres(server_url) as url:
            made.append(url)
            yield url

    monkeypatch.setattr(bench_run, "scratch_postgres", recorded)
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
    # the rows went to a database of the scenario's own, dropped afterwards: none here
    store = ResultStore(fresh_postgres_url)
    try:
        assert store.count() == 0
    finally:
        store.close()
    own, = made
    server = make_engine(fresh_postgres_url)
    try:
        with server.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                                {"n": own.rsplit("/", 1)[1]}).scalar() == 0
    finally:
        server.dispose()


def test_the_rows_it_copies_are_what_the_dashboard_lists_and_finds(fresh_postgres_url):
    fill(fresh_postgres_url, 1000, dt.datetime.now(dt.timezone.utc))
    store = ResultStore(fresh_postgres_url)
    try:
        found = list_tasks(store, TaskFilters(search=NEEDLE)).items
        assert [task.args[1] for task in found] == [NEEDLE]
        assert len(list_tasks(store, TaskFilters(), limit=500).items) == 500
        assert store.count() == 1000
    finally:
        store.close()


def test_fake_rows_keep_their_times_in_the_state_machine_s_order():
    for row in fake_rows(200, dt.datetime(2026, 1, 31, tzinfo=dt.timezone.utc)):
        times = [t for t in row[-5:-1] if t is not None]
        assert times == sorted(times), row
