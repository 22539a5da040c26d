"""``hutch bench --only async-loop``: ``await AsyncClient.submit()`` in a loop from 1
and 8 coroutines, then from 1 with ``broker_confirm_wait`` off, while a prefork worker
runs the tasks (real RabbitMQ, results in SQLite; a small N, so a smoke run that
checks every task ran and every figure is reported, not how fast)."""

import pytest

from hutch.benchmarks.run import run_bench

pytestmark = pytest.mark.rabbitmq


def test_the_async_loop_runs_every_call_and_reports_it_beside_the_raw_pipeline(
        amqp_url, tmp_path):
    said: list[str] = []
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 16, "prefork", 2,
                        said.append, ("async-loop",))
    assert set(figures) == {
        "raw_pipeline_per_s", "async_loop_1_coroutine_per_s",
        "async_loop_1_coroutine_end_to_end_per_s", "async_loop_8_coroutines_per_s",
        "async_loop_8_coroutines_end_to_end_per_s", "async_loop_later_per_s",
        "async_loop_later_confirmed_per_s", "async_loop_later_end_to_end_per_s"}
    assert all(value > 0 for value in figures.values())
    loops = [line for line in said if line.startswith("AsyncClient.submit() loop")]
    assert [line.split(" (")[0] for line in loops] == [
        "AsyncClient.submit() loop, 1 coroutine", "AsyncClient.submit() loop, 8 coroutines",
        "AsyncClient.submit() loop, 1 coroutine, broker_confirm_wait=False"]
    assert all(line.endswith("of raw)") for line in loops)
