"""Recycling prefork children on the real RabbitMQ and PostgreSQL: ``--max-tasks-per-child``
replaces a child after N tasks and ``--max-memory-per-child`` one left above the limit by
a task; each retiring child finishes and records its task first, nothing is lost, and
the replacement starts at once (not as a crash, so no respawn backoff)."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _lines(worker, event: str) -> list[dict]:
    return [json.loads(line) for line in worker.output().splitlines()
            if f'"{event}' in line]


def test_max_tasks_per_child_runs_tasks_in_fresh_children(app, env, workers):
    worker = workers(env, concurrency=1, extra_args=("--max-tasks-per-child", "2"))
    worker.wait_ready()
    results = [app.tasks["tests.pid"].delay() for _ in range(5)]
    pids = [r.get(timeout=30) for r in results]
    assert all(r.state == "SUCCESS" for r in results)
    assert len(set(pids)) >= 3, pids
    for pid in set(pids):
        assert pids.count(pid) <= 2, pids
    retired = _lines(worker, "worker child retired")
    assert len(retired) >= 2, worker.output()[-3000:]
    assert "worker child exited; replacing it" not in worker.output()  # no crash, no backoff
    assert all("ran 2 tasks" in line["reason"] for line in _lines(worker, "worker child retiring"))


def test_max_memory_per_child_replaces_the_child_a_task_left_too_big(app, env, workers):
    pid = app.tasks["tests.pid"]
    worker = workers(env, concurrency=1, extra_args=("--max-memory-per-child", "150000"))
    worker.wait_ready()
    first, second = pid.delay().get(timeout=30), pid.delay().get(timeout=30)
    assert first == second  # well below the limit: the same child
    hoarder = pid.delay(hoard_kib=100_000)  # kept: a child of ~80 MB passes 150,000 KiB
    assert hoarder.get(timeout=30) == first and hoarder.state == "SUCCESS"
    after = [pid.delay().get(timeout=30) for _ in range(2)]
    assert first not in after and after[0] == after[1], (first, after)
    [retiring] = _lines(worker, "worker child retiring")
    assert "worker_max_memory_per_child" in retiring["reason"], retiring
    assert "worker child exited; replacing it" not in worker.output()
