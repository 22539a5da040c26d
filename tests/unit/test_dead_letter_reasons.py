"""A refused delivery's dead letter carries its reason, and the pools' last line of defence
never requeues a delivery that failed for anything but an outage (memory:// + SQLite)."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from hutch.errors import BackendError, BrokerUnavailable
from hutch.messages import TaskMessage
from hutch.ops.deadletters import list_dead, replay
from hutch.worker.pools import AsyncioPool, ThreadPool
from support.deliveries import FakeDelivery, executor_world
from support.waiting import eventually


@pytest.fixture
def world(tmp_path):
    with executor_world(tmp_path) as world:
        yield world


def delivery(**headers) -> FakeDelivery:
    wire = TaskMessage(task="tests.add", id=str(uuid.uuid4()), args=(1, 2)).encode()
    return FakeDelivery(dataclasses.replace(wire, headers={**wire.headers, **headers}))


def test_a_message_without_an_id_has_its_reason_in_the_dead_letter(world):
    app, store, broker, executor = world
    d = delivery(id=None, eta="tomorrow-ish")
    d.wire = dataclasses.replace(d.wire, headers={k: v for k, v in d.wire.headers.items()
                                                  if k != "id"}, message_id="")
    assert executor.prepare(d) is None and executor.recorder.flush(10)
    assert d.settled == "ack"
    [letter] = list_dead(app.client(), "celery")
    assert letter.reason == ("rejected: hutch.errors.MessageError: header 'eta': not an "
                             "ISO 8601 time: 'tomorrow-ish'")
    assert letter.key == letter.headers["dead_id"] and letter.task_id == ""
    assert store.count() == 0  # no id, no row
    assert replay(app.client(), "celery") == [""]  # replaying it writes no row either
    assert store.count() == 0


def test_when_the_copy_cannot_be_published_the_delivery_is_rejected_into_the_queue(world,
                                                                                  monkeypatch):
    _, store, broker, executor = world

    def unavailable(*args, **kwargs):
        raise BrokerUnavailable("connection lost")

    monkeypatch.setattr(broker, "publish_dead", unavailable)
    d = delivery(hutch=99)
    assert executor.prepare(d) is None and executor.recorder.flush(10)
    assert d.settled == "dead"  # RabbitMQ dead-letters it; the reason is on the row
    assert "protocol version 99" in store.get(d.wire.message_id).exception_message


def _pool_world(world, pool_kind, failure):
    app, store, broker, executor = world

    def broken(*args, **kwargs):
        raise failure

    executor.succeeded = broken  # a bug (or an outage) after the task ran
    pool = AsyncioPool(executor, 1) if pool_kind == "asyncio" else ThreadPool(executor, 1)
    pool.start()
    return app, store, broker, pool


@pytest.mark.parametrize("pool_kind", ["threads", "asyncio"])
def test_an_unexpected_error_dead_letters_the_delivery_instead_of_requeueing_it(world,
                                                                              pool_kind):
    app, store, broker, pool = _pool_world(world, pool_kind, RuntimeError("a bug"))
    d = delivery()
    pool.submit(d)
    assert eventually(lambda: d.settled is not None, 10)
    pool.shutdown(5)
    assert d.settled == "ack"
    [letter] = broker.dead_letters("celery")
    assert letter.headers["dead_reason"] == "RuntimeError: a bug"
    assert eventually(lambda: getattr(store.get(d.wire.message_id), "state", None)
                      == "FAILURE")


@pytest.mark.parametrize("pool_kind", ["threads", "asyncio"])
def test_an_outage_requeues_the_delivery_after_a_pause(world, pool_kind):
    app, store, broker, pool = _pool_world(world, pool_kind, BackendError("database down"))
    d = delivery()
    started = time.monotonic()
    pool.submit(d)
    assert eventually(lambda: d.settled is not None, 10)
    pool.shutdown(5)
    assert d.settled == "requeue" and time.monotonic() - started >= 0.9
    assert broker.dead_letters("celery") == []
