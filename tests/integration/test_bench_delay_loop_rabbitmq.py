"""``hutch bench --only delay-loop``: submit() in a loop from 1 and 8 threads while a
prefork worker runs the tasks (real RabbitMQ, results in SQLite; a small N, so a
smoke run that checks every task ran and every figure is reported, not how fast),
then from 1 thread with ignore_result (nothing written in SQL), beside four other
client processes listening to their own notices, and with broker_confirm_wait off; beside them the ceiling of one thread
waiting for each confirm in raw pika, alone and with a raw consumer process."""

import pytest

from hutch.benchmarks.run import run_bench

pytestmark = pytest.mark.rabbitmq


def test_the_delay_loop_runs_every_call_and_reports_it_beside_the_raw_pipeline(
        amqp_url, tmp_path):
    said: list[str] = []
    figures = run_bench(amqp_url, f"sqlite:///{tmp_path / 'bench.sqlite'}", 16, "prefork", 2,
                        said.append, ("delay-loop",))
    assert set(figures) == {
        "raw_pipeline_per_s", "raw_confirm_each_per_s", "raw_confirm_each_consumed_per_s",
        "delay_loop_1_thread_per_s",
        "delay_loop_1_thread_end_to_end_per_s", "delay_loop_8_threads_per_s",
        "delay_loop_8_threads_end_to_end_per_s", "delay_loop_no_results_per_s",
        "delay_loop_listened_per_s", "listener_cpu_us_per_task", "delay_loop_later_per_s",
        "delay_loop_later_confirmed_per_s", "delay_loop_later_end_to_end_per_s"}
    listened = figures.pop("listener_cpu_us_per_task")  # may round to 0 at this N
    assert 0 <= listened < 1e6 and all(value > 0 for value in figures.values())
    loops = [line for line in said if line.startswith("delay() loop")]
    assert [line.split(" (")[0] for line in loops] == [
        "delay() loop, 1 thread", "delay() loop, 8 threads",
        "delay() loop, 1 thread, ignore_result=True",
        "delay() loop, 1 thread, 4 other clients listening",
        "delay() loop, 1 thread, broker_confirm_wait=False"]
    assert all(line.endswith("of raw)") for line in loops)
    assert any(line.startswith("raw pika, 1 thread waiting for each confirm: ")
               for line in said), said
