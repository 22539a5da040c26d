"""``hutch bench --only drain``: N tasks queued with no worker running, then a prefork
worker started on the backlog (real RabbitMQ, results in SQLite; a small N, so a smoke
run that checks every task ran and the figure is reported, not how fast)."""

import pytest

from hutch.benchmarks.run import run_bench

pytestmark = pytest.mark.rabbitmq


def test_the_drain_runs_the_whole_backlog_and_reports_it_beside_the_raw_pipeline(
        amqp_url, tmp_path):
    said: list[str] = []
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 16, "prefork", 2,
                        said.append, ("drain",))
    assert set(figures) == {"raw_pipeline_per_s", "drain_per_s", "drain_consuming_per_s"}
    assert all(value > 0 for value in figures.values())
    drains = [line for line in said if line.startswith("drain (")]
    assert len(drains) == 1 and drains[0].endswith("of raw)")
    assert "16 queued before the worker starts" in drains[0]
