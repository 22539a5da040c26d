"""Celery-style tasks in a prefork worker on RabbitMQ + PostgreSQL: a Task subclass, a
function with base=, a shared task, and their hooks running in the child that ran
the task (tests/apps/class_tasks.py writes each hook call to a file)."""

from __future__ import annotations

import json

import pytest

from hutch import Client
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_class_based_tasks_and_their_hooks_run_in_the_prefork_child(
        amqp_url, postgres_url, topology_prefix, workers, tmp_path):
    hooks = tmp_path / "hooks.jsonl"
    env = worker_env(amqp_url, postgres_url, topology_prefix, CLASS_TASKS_HOOKS=str(hooks))
    worker = workers(env, pool="prefork", concurrency=1, app="apps.class_tasks")
    worker.wait_ready()
    client = Client(amqp_url, postgres_url, topology_prefix=topology_prefix)
    try:
        ran = client.submit("class_tasks.which_process", "a")
        failed = client.submit("class_tasks.divide", 1, 0)
        retried = client.submit("class_tasks.retry_once")
        shared = client.submit("class_tasks.shared_pid")
        info = ran.get(timeout=30)
        with pytest.raises(ZeroDivisionError):
            failed.get(timeout=30)
        assert retried.get(timeout=30) == 1
        child = info["pid"]
        assert shared.get(timeout=30) == child and child != worker.proc.pid
        assert (info["tag"], info["max_retries"]) == ("a", 4)  # class attribute as option
        rows = client.store.get_many([ran.id, failed.id, retried.id])
        assert (rows[ran.id].state, rows[failed.id].state, rows[retried.id].state) == \
            ("SUCCESS", "FAILURE", "SUCCESS")
        assert rows[retried.id].retries == 1

        def lines() -> list[dict]:
            return [json.loads(line) for line in hooks.read_text().splitlines()] \
                if hooks.exists() else []

        eventually(lambda: len(lines()) == 7, timeout=30)
    finally:
        client.close()
    calls = lines()
    assert {call["pid"] for call in calls} == {child}  # every hook ran in the child
    by_task = {}
    for call in calls:
        by_task.setdefault(call["task_id"], []).append(call["hook"])
    assert by_task == {ran.id: ["on_success", "after_return"],
                       failed.id: ["on_failure", "after_return"],
                       retried.id: ["on_retry", "on_success", "after_return"]}
    failure = next(c for c in calls if c["hook"] == "on_failure")
    assert failure["error"] == failure["einfo_type"] == "ZeroDivisionError"
    assert "ZeroDivisionError" in failure["traceback"]
    assert next(c for c in calls if c["hook"] == "on_success" and c["task_id"] == ran.id
                )["args"] == ["a"]
    assert {c["status"] for c in calls if c["hook"] == "after_return"} == \
        {"SUCCESS", "FAILURE"}
    assert worker.stop() == 0
