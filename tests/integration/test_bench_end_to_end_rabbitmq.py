"""``hutch bench --only end-to-end``: tasks published in batches while a prefork worker
runs them, on PostgreSQL with the WAL the server wrote a task, on SQLite without. A
smoke run that checks every task ran and every figure is reported, not how fast."""

import pytest

from hutch.benchmarks.run import run_bench

pytestmark = pytest.mark.rabbitmq


@pytest.mark.postgres
def test_on_postgresql_the_end_to_end_reports_the_wal_a_task(amqp_url, fresh_postgres_url):
    said: list[str] = []
    figures = run_bench(amqp_url, fresh_postgres_url, 200, "prefork", 2, said.append,
                        ("end-to-end",))
    assert set(figures) == {"end_to_end_per_s", "submit_batched_per_s",
                            "end_to_end_wal_bytes_per_task"}
    # three row versions a task (PENDING, the claim, the outcome) are at least 1 kB of WAL
    assert figures["end_to_end_wal_bytes_per_task"] > 1000
    line, = [line for line in said if line.startswith("hutch end to end")]
    assert line.endswith(" bytes of PostgreSQL WAL a task)")


def test_on_sqlite_the_end_to_end_has_no_wal_figure(amqp_url, tmp_path):
    said: list[str] = []
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 100, "prefork",
                        2, said.append, ("end-to-end",))
    assert set(figures) == {"end_to_end_per_s", "submit_batched_per_s"}
    assert all(value > 0 for value in figures.values())
    assert not any("WAL" in line for line in said)
