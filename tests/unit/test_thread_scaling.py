"""A threads worker's pool grows and shrinks (issue #15): ``--autoscale MAX,MIN``,
``pool_grow`` and ``pool_shrink`` on memory://. A retiring thread finishes its task,
deliveries waiting in the pool's queue stay for the threads that remain, and the
consumer's prefetch, ``inspect stats`` and the heartbeat row follow the size."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from hutch.worker.autoscale import GROW_EVERY
from hutch.worker.pools import ThreadPool
from hutch.worker.threadscale import ThreadScaler
from support.waiting import eventually
from support.workers import running_worker


@dataclass
class Gate:
    """A stand-in delivery whose handling waits until opened."""

    name: str
    opened: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    handled_by: str = ""


class GatedExecutor:
    def handle(self, delivery: Gate) -> None:
        delivery.handled_by = threading.current_thread().name
        delivery.started.set()
        assert delivery.opened.wait(10)


@pytest.fixture
def pool():
    pool = ThreadPool(GatedExecutor(), 2)  # type: ignore[arg-type]
    pool.start()
    yield pool
    pool.shutdown(5)


def _submit(pool: ThreadPool, *names: str) -> list[Gate]:
    gates = [Gate(name) for name in names]
    for gate in gates:
        pool.submit(gate)  # type: ignore[arg-type]
    return gates


def test_a_pool_grows_and_its_new_threads_take_work(pool):
    assert pool.grow(2) == 4
    gates = _submit(pool, "a", "b", "c", "d")
    assert all(g.started.wait(5) for g in gates)
    assert pool.busy() == {0: True, 1: True, 2: True, 3: True}
    assert {g.handled_by for g in gates} == {f"hutch-pool-{i}" for i in range(4)}
    for gate in gates:
        gate.opened.set()
    assert eventually(lambda: pool.busy() == dict.fromkeys(range(4), False), 10)


def test_a_shrink_retires_the_idlest_thread_and_keeps_one(pool):
    (busy,) = _submit(pool, "a")
    assert busy.started.wait(5)
    running = int(busy.handled_by.rsplit("-", 1)[1])
    assert pool.shrink(5) == 1  # asked for more than it may: one always stays
    assert pool.busy() == {running: True}  # the idle one retired, not the busy one
    busy.opened.set()
    assert eventually(lambda: pool.busy() == {running: False}, 10)
    later = _submit(pool, "b")[0]
    assert later.started.wait(5) and later.handled_by == busy.handled_by
    later.opened.set()


def test_a_retiring_thread_finishes_its_task_and_queued_work_stays_for_the_others(pool):
    first, second = _submit(pool, "a", "b")
    assert first.started.wait(5) and second.started.wait(5)
    waiting = _submit(pool, "c", "d")  # prefetched: in the pool's queue
    leaving = int(first.handled_by.rsplit("-", 1)[1])
    assert pool.shrink(1, [leaving]) == 1
    first.opened.set()  # the retiring thread ends its task and takes no other
    assert eventually(lambda: leaving not in pool._workers, 10)
    second.opened.set()
    for gate in waiting:
        assert gate.started.wait(5)
        assert gate.handled_by == second.handled_by
        gate.opened.set()


def test_the_autoscaler_adds_a_thread_a_second_while_all_are_busy_and_retires_idle_ones(pool):
    sizes: list[tuple[int, str]] = []
    scaler = ThreadScaler(pool, lambda size, why: sizes.append((size, why)), (4, 1), 5.0)
    first = _submit(pool, "a", "b")
    assert all(g.started.wait(5) for g in first)
    scaler.tick(100.0)
    assert sizes == [(3, "autoscale")]
    (third,) = _submit(pool, "c")
    assert third.started.wait(5)
    scaler.tick(100.0 + GROW_EVERY / 2)  # all busy, but not a second later yet
    assert pool.size == 3
    scaler.tick(100.0 + GROW_EVERY)
    assert sizes[-1] == (4, "autoscale")
    assert eventually(lambda: pool.busy() == {0: True, 1: True, 2: True, 3: False}, 10)
    scaler.tick(102.0)
    scaler.tick(106.9)
    assert pool.size == 4  # idle, but not for the keepalive yet
    scaler.tick(107.1)
    assert sizes[-1] == (3, "autoscale") and set(pool.busy()) == {0, 1, 2}
    for gate in (*first, third):
        gate.opened.set()
    assert eventually(lambda: pool.busy() == dict.fromkeys(range(3), False), 10)
    scaler.tick(108.0)
    scaler.tick(113.1)
    scaler.tick(113.2)  # one thread retires per look
    assert sizes[-2:] == [(2, "autoscale"), (1, "autoscale")]
    scaler.tick(200.0)
    assert pool.size == 1  # never below MIN
    scaler.grow(4, "pool_grow")  # past MAX: MAX follows, as under prefork
    assert scaler.autoscaler is not None and scaler.autoscaler.maximum == 5


# -- a threads worker on memory:// ---------------------------------------------------

@pytest.fixture
def gated(memory_app):
    """A task that runs until the gate opens (the worker runs in this process)."""
    gate = threading.Event()

    @memory_app.task(name="t.gated")
    def gated_task(key):
        assert gate.wait(20)
        return key

    yield gated_task, gate
    gate.set()


def _stats(app, name: str) -> dict:
    return app.control.inspect([name], timeout=3).stats()[name]


def _prefetch(worker) -> int:
    return worker._consumer.prefetch  # memory:// consumer's limit


def test_an_autoscaled_threads_worker_grows_under_load_and_shrinks_when_idle(memory_app, gated):
    task, gate = gated
    memory_app.conf.worker_autoscale = "3,1"
    memory_app.conf.worker_autoscale_keepalive = 0.5
    memory_app.conf.worker_prefetch_multiplier = 2
    with running_worker(memory_app, concurrency=8) as worker:
        name = worker.nodename
        assert worker.concurrency == 1 and _prefetch(worker) == 2  # starts with MIN
        results = [task.delay(f"k{i}") for i in range(6)]
        assert eventually(lambda: len(worker._executor.running) == 3, 20)
        stats = _stats(memory_app, name)
        assert stats["pool"]["max-concurrency"] == 3 and stats["prefetch_count"] == 6
        assert _prefetch(worker) == 6
        assert worker._heartbeat_writer._fixed.concurrency == 3
        gate.set()
        assert [r.get(timeout=20) for r in results] == [f"k{i}" for i in range(6)]
        assert eventually(lambda: worker._pool.size == 1, 20)
        assert _stats(memory_app, name)["pool"]["max-concurrency"] == 1
        assert _prefetch(worker) == 2
    assert "hutch-autoscale" not in {t.name for t in threading.enumerate()}  # stopped too


def test_pool_grow_and_shrink_on_a_threads_worker_change_stats_and_prefetch(memory_app, gated):
    task, gate = gated
    with running_worker(memory_app, concurrency=2) as worker:
        name = worker.nodename
        ask = memory_app.control.inspect([name], timeout=3)
        assert ask.call("pool_grow", {"n": 2}) == {name: {"ok": "pool will grow"}}
        assert _stats(memory_app, name)["pool"]["max-concurrency"] == 4
        assert _prefetch(worker) == 4 * memory_app.conf.worker_prefetch_multiplier
        assert "pool -> threads concurrency 4 prefetch" in ask.call("report")[name]["ok"]
        results = [task.delay(f"k{i}") for i in range(4)]
        assert eventually(lambda: len(worker._executor.running) == 4, 20)
        assert ask.call("pool_shrink", {"n": 3}) == {name: {"ok": "pool will shrink"}}
        assert _stats(memory_app, name)["pool"]["max-concurrency"] == 1
        assert len(worker._executor.running) == 4  # retiring threads finish their tasks
        assert ask.call("pool_shrink", {"n": 1}) == {name: {"error": (
            "ValueError: pool_shrink: the pool has 1 threads and keeps at least one "
            "(asked to stop 1)")}}
        later = [task.delay(f"l{i}") for i in range(2)]  # the one thread runs them
        gate.set()
        assert [r.get(timeout=20) for r in results + later] == \
            ["k0", "k1", "k2", "k3", "l0", "l1"]
        assert ask.call("autoscale", {"max": 3, "min": 2}) == {
            name: {"ok": "autoscale now max=3 min=2"}}
        assert eventually(lambda: worker._pool.size == 2, 10)  # MIN reached at once


@pytest.mark.parametrize("pool", ["asyncio", "solo"])
def test_asyncio_and_solo_workers_refuse_to_resize_naming_their_pool(memory_app, pool):
    with running_worker(memory_app, pool=pool, concurrency=1) as worker:
        name = worker.nodename
        reply = memory_app.control.inspect([name], timeout=3).call("pool_grow", {"n": 1})
        assert reply == {name: {"error": (
            f"ValueError: pool_grow: the {pool} pool has a fixed size (restart it with "
            "another -c, or run -P prefork or threads)")}}
