"""``hutch bench --only memory``: RSS sampled while a prefork and then a threads worker
run tasks (real RabbitMQ, results in SQLite; 200 tasks instead of 100,000, so a smoke
run that checks every sample is taken and reported, not how flat it is)."""

import pytest

from hutch.benchmarks import run
from hutch.benchmarks.run import run_bench

pytestmark = pytest.mark.rabbitmq


def test_the_memory_scenario_samples_each_worker_process_and_reports_its_growth(
        amqp_url, tmp_path, monkeypatch):
    monkeypatch.setattr(run, "MEMORY_TASKS", 200)
    said: list[str] = []
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 100, "prefork", 2,
                        said.append, ("memory",))
    assert set(figures) == {f"memory_{process}_growth_{unit}" for unit in ("kib", "pct")
                            for process in ("prefork_worker", "prefork_child1",
                                            "prefork_child2", "threads_worker")}
    headers = [line for line in said if line.startswith("memory, ")]
    assert len(headers) == 2
    assert all("RSS in MiB at 0/20/40/60/80/100/120/140/160/180/200 tasks; growth from 40 "
               "to the end" in line for line in headers)
    rows = [line.split() for line in said if line.startswith("  ")]
    assert [row[0] for row in rows] == ["worker", "child", "child", "worker"]
    assert all(len([v for v in row if v.replace(".", "").isdigit()]) >= 11 for row in rows)
