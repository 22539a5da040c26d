"""``hutch bench --only delayed``: countdowns through the classic ladder, then the quorum
one (real RabbitMQ, results in SQLite; a small N, so a smoke run that checks both ran
every task, none early, and every figure is reported, not how fast; countdowns of
0.5-2 s instead of 1-10 s, each still through every ladder level it needs)."""

import pytest

from hutch.benchmarks import run
from hutch.benchmarks.run import run_bench

pytestmark = pytest.mark.rabbitmq


def test_both_ladders_run_every_countdown_and_none_early(amqp_url, tmp_path, monkeypatch):
    monkeypatch.setattr(run, "DELAYED_COUNTDOWNS", (0.5, 2.0))
    said: list[str] = []
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 100, "prefork", 2,
                        said.append, ("delayed",))
    for key in ("delayed", "delayed_quorum"):
        assert figures[f"{key}_done"] == 100 and figures[f"{key}_early"] == 0
        assert figures[f"{key}_lateness_p99_s"] >= figures[f"{key}_lateness_p50_s"] >= 0
    assert [line.split(" (")[0] for line in said if line.startswith("delayed")] == [
        "delayed, classic ladder", "delayed, quorum ladder"]
