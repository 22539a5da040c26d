"""A claim written by the pool thread that takes its delivery, when that thread was
idle (worker/claims.py, ``ClaimWriter.write_here``), on memory:// and SQLite."""

import threading
import uuid

import pytest

from hutch.errors import BackendError
from hutch.messages import TaskMessage
from hutch.results.records import RECEIVED, STARTED, SUCCESS, StateChange
from hutch.worker.claims import claim_of
from hutch.worker.pools import ThreadPool
from support.deliveries import FakeDelivery, executor_world
from support.waiting import eventually


@pytest.fixture
def world(tmp_path):
    with executor_world(tmp_path) as world:
        yield world


@pytest.fixture
def claim_writes(world, monkeypatch):
    """The thread of every claim written to the store."""
    _, store, _, _ = world
    threads: list[str] = []
    write = store.write

    def recorded(changes, **kwargs):
        if kwargs.get("claims") is not None:
            threads.append(threading.current_thread().name)
        return write(changes, **kwargs)

    monkeypatch.setattr(store, "write", recorded)
    return threads



def _message(task_id=None):
    return TaskMessage(task="tests.add", id=task_id or str(uuid.uuid4()), args=(1, 2))


def test_an_idle_pools_claim_is_written_by_the_thread_that_takes_the_delivery(world,
                                                                              claim_writes):
    _, store, _, executor = world
    message = _message()
    delivery = executor.received(FakeDelivery(message.encode()), idle=True)
    claim = claim_of(delivery)
    assert claim is not None and claim.here is not None and not claim.settled
    assert store.get(message.id) is None and claim_writes == []  # nothing written yet
    job = executor.prepare(delivery)
    assert job is not None and claim.settled and claim.seen is None and claim.here is None
    assert claim_writes == [threading.current_thread().name]  # not the claim writer's
    assert store.get(message.id).received_at is not None
    assert executor.recorder.flush(10) and store.get(message.id).state == STARTED


def test_a_busy_pools_claim_goes_to_the_claim_writer(world, claim_writes):
    _, _, _, executor = world
    delivery = executor.received(FakeDelivery(_message().encode()))
    claim = claim_of(delivery)
    assert claim is not None and claim.here is None
    assert executor.prepare(delivery) is not None
    assert claim_writes == ["hutch-claims"]


def test_a_copy_of_a_finished_task_written_here_is_not_run(world):
    _, store, _, executor = world
    message = _message()
    store.write([StateChange(task_id=message.id, state=SUCCESS, result=3)])
    copy = FakeDelivery(message.encode())
    assert executor.prepare(executor.received(copy, idle=True)) is None
    assert copy.settled == "ack" and store.get(message.id).state == SUCCESS


def test_two_copies_written_here_let_one_through(world):
    _, store, _, executor = world
    message = _message()
    first = executor.received(FakeDelivery(message.encode()), idle=True)
    second = FakeDelivery(message.encode())
    assert executor.prepare(first) is not None
    assert executor.prepare(executor.received(second, idle=True)) is None
    assert second.settled == "ack"  # "already received by another delivery"


def test_a_claim_the_store_refuses_here_is_retried_by_the_claim_writer(world, monkeypatch,
                                                                       claim_writes):
    _, store, _, executor = world
    failed: list[str] = []
    write = store.write

    def once_down(changes, **kwargs):
        if kwargs.get("claims") is not None and not failed:
            failed.append(threading.current_thread().name)
            raise BackendError("result backend unreachable")
        return write(changes, **kwargs)

    monkeypatch.setattr(store, "write", once_down)
    message = _message()
    delivery = executor.received(FakeDelivery(message.encode()), idle=True)
    assert executor.prepare(delivery) is not None
    assert failed == [threading.current_thread().name]
    assert store.get(message.id).state in (RECEIVED, STARTED)  # written by the claim writer


class _Blocking:
    """An executor whose deliveries run until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def handle(self, delivery) -> None:
        self.started.set()
        self.release.wait(10)


def test_a_thread_pool_is_idle_while_a_thread_waits_and_nothing_is_queued():
    executor = _Blocking()
    pool = ThreadPool(executor, 1)  # type: ignore[arg-type]
    assert not pool.idle()  # not started: no thread waits
    pool.start()
    try:
        assert eventually(pool.idle, timeout=5)
        pool.submit(FakeDelivery(None))
        assert executor.started.wait(5)
        assert not pool.idle()  # its one thread runs a delivery
        pool.submit(FakeDelivery(None))
        assert not pool.idle()
        executor.release.set()
        assert eventually(pool.idle, timeout=5)  # both done, waiting again
    finally:
        executor.release.set()
        pool.shutdown(5)
