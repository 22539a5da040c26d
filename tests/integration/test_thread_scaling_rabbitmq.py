"""A threads worker's pool grows and shrinks (issue #15) on the real RabbitMQ and
PostgreSQL: ``--autoscale 4,1`` grows under load and shrinks back after the
keepalive; ``pool_grow``/``pool_shrink`` change ``inspect stats``, the row, and how
many tasks RabbitMQ hands the worker at once (its consumer's prefetch follows)."""

from __future__ import annotations

import uuid

import pytest

from hutch.ops.workers import list_workers
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _pool(app, name: str) -> tuple[int, int] | None:
    """``inspect stats``: (max-concurrency, prefetch_count)."""
    stats = (app.control.inspect([name], timeout=5).stats() or {}).get(name)
    return (stats["pool"]["max-concurrency"], stats["prefetch_count"]) if stats else None


def _running(app, name: str) -> int:
    return len((app.control.inspect([name], timeout=5).active() or {}).get(name) or [])


def _row_concurrency(app, name: str) -> int | None:
    rows = [r for r in list_workers(app.client().store) if r.hostname == name]
    return rows[0].concurrency if rows else None


def _threads_worker(env, workers, tag: str, *args: str, keepalive: str = "30"):
    name, queue = f"threads-{tag}@test", f"qt-{tag}"
    w = workers({**env, "HUTCH_PREFETCH_MULTIPLIER": "1", "HUTCH_AUTOSCALE_KEEPALIVE": keepalive,
                 "HUTCH_WORKER_HEARTBEAT_INTERVAL": "0.5"},
                queues=(queue,), pool="threads", concurrency=1, extra_args=("-n", name, *args))
    w.wait_ready(count=1)
    return w, name, queue


def test_an_autoscaled_threads_worker_grows_under_load_and_shrinks_back(app, env, workers):
    w, name, queue = _threads_worker(env, workers, uuid.uuid4().hex[:8], "--autoscale", "4,1",
                                     keepalive="1")
    assert _pool(app, name) == (1, 1)  # MIN threads, prefetching for them
    tasks = [app.tasks["tests.sleep"].apply_async((3,), queue=queue) for _ in range(4)]
    assert eventually(lambda: _running(app, name) >= 3, 20), w.output()[-3000:]
    grown = _pool(app, name)
    assert grown is not None and grown[0] >= 3 and grown[1] == grown[0]
    assert [t.get(timeout=30) for t in tasks] == [3] * 4
    assert eventually(lambda: _pool(app, name) == (1, 1), 20), w.output()[-3000:]
    assert eventually(lambda: _row_concurrency(app, name) == 1, 10)
    assert '"by": "autoscale"' in w.output()
    assert w.stop() == 0


def test_pool_grow_and_shrink_resize_a_threads_worker_and_its_prefetch(app, env, workers):
    w, name, queue = _threads_worker(env, workers, uuid.uuid4().hex[:8])
    ask = app.control.inspect([name], timeout=10)
    assert ask.call("pool_grow", {"n": 2}) == {name: {"ok": "pool will grow"}}
    assert _pool(app, name) == (3, 3)
    assert eventually(lambda: _row_concurrency(app, name) == 3, 10)
    sleep = app.tasks["tests.sleep"]
    tasks = [sleep.apply_async((2,), queue=queue) for _ in range(3)]
    assert eventually(lambda: _running(app, name) == 3, 20), w.output()[-3000:]

    # shrink while all three run: two threads retire after their tasks, none is lost
    assert ask.call("pool_shrink", {"n": 2}) == {name: {"ok": "pool will shrink"}}
    assert _pool(app, name) == (1, 1)
    assert ask.call("pool_shrink", {"n": 1}) == {name: {"error": (
        "ValueError: pool_shrink: the pool has 1 threads and keeps at least one "
        "(asked to stop 1)")}}
    later = [sleep.apply_async((1,), queue=queue) for _ in range(2)]
    assert [t.get(timeout=30) for t in tasks] == [2, 2, 2]
    broker = app.client().broker  # prefetch 1 again: the second waits in RabbitMQ
    assert eventually(lambda: _running(app, name) == 1 and broker.queue_stats(queue).ready == 1,
                      20)
    assert [t.get(timeout=30) for t in later] == [1, 1]
    first, second = sorted((app.client().store.get(t.id) for t in later),
                           key=lambda r: r.started_at)
    assert second.started_at >= first.finished_at  # one thread: one at a time
    assert eventually(lambda: _row_concurrency(app, name) == 1, 10)
    assert w.stop() == 0
