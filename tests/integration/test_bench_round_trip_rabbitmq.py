"""``hutch bench --only round-trip``: one ``delay().get()`` at a time on the bench's
worker, then on a worker of its own with ``worker_claim_synchronous_commit`` off
(PostgreSQL only: on SQLite there is no WAL flush to spare). A smoke run that checks
every figure is reported, not how fast."""

import pytest

from hutch.benchmarks.run import run_bench

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_the_round_trip_is_reported_with_and_without_the_claims_wal_flush(
        amqp_url, fresh_postgres_url):
    said: list[str] = []
    figures = run_bench(amqp_url, fresh_postgres_url, 16, "prefork", 2, said.append,
                        ("round-trip",))
    assert set(figures) == {"round_trip_p50_ms", "round_trip_p99_ms",
                            "round_trip_quick_claims_p50_ms", "round_trip_quick_claims_p99_ms"}
    assert all(value > 0 for value in figures.values())
    trips = [line.split(":")[0] for line in said if line.startswith("round trip")]
    assert trips == ["round trip delay().get()",
                     "round trip delay().get(), worker_claim_synchronous_commit=False"]


def test_on_sqlite_the_round_trip_is_reported_once(amqp_url, tmp_path):
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 16, "prefork", 2,
                        lambda _line: None, ("round-trip",))
    assert set(figures) == {"round_trip_p50_ms", "round_trip_p99_ms"}
