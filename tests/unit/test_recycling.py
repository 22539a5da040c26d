"""When a prefork child retires (worker/recycling.py): after N tasks, or once a task left
its resident memory above the limit; and what the other pools say about the settings."""

from __future__ import annotations

from hutch import Hutch
from hutch.worker import runner
from hutch.worker.recycling import Recycler, child_prefetch, resident_kib
from support.logs import capture_logs


def test_a_child_retires_after_its_share_of_tasks():
    recycler = Recycler(max_tasks=3, max_memory_kib=None)
    assert [recycler.task_done() for _ in range(2)] == [None, None]
    assert recycler.task_done() == "ran 3 tasks (worker_max_tasks_per_child)"


def test_a_child_retires_once_its_memory_is_above_the_limit():
    now = resident_kib()
    assert now > 1000  # a Python process holds megabytes
    assert Recycler(max_tasks=None, max_memory_kib=now * 4).task_done() is None
    with capture_logs() as events:
        low = Recycler(max_tasks=None, max_memory_kib=now // 2)
    assert "is below a new child's memory" in events[0]["event"]
    assert "worker_max_memory_per_child" in (low.task_done() or "")


def test_no_recycler_without_limits_and_prefetch_no_larger_than_the_tasks_left():
    app = Hutch("r", broker="memory://", worker_prefetch_multiplier=64)
    assert Recycler.from_settings(app.conf) is None and child_prefetch(app.conf) == 64
    app.conf.update(worker_max_tasks_per_child=5)
    assert Recycler.from_settings(app.conf) is not None and child_prefetch(app.conf) == 5


def test_other_pools_warn_that_they_ignore_the_settings():
    app = Hutch("r", broker="memory://", worker_max_tasks_per_child=5,
                worker_max_memory_per_child=1000)
    with capture_logs() as events:
        runner._warn_unrecycled(app.conf, "threads")
        runner._warn_unrecycled(app.conf, "prefork")
    assert [e["event"] for e in events] == [
        "worker_max_tasks_per_child recycles prefork children: the threads pool ignores it",
        "worker_max_memory_per_child recycles prefork children: the threads pool ignores it"]
