"""The poison guard's verdicts on suspect deliveries, on memory:// and SQLite."""

import dataclasses
import uuid

import pytest

from hutch.messages import CONTINUED_HEADER, LOST_ATTEMPTS_HEADER, TaskMessage, replayable
from hutch.results.records import RECEIVED, RETRY, STARTED, SUCCESS, StateChange
from support.deliveries import FakeDelivery, executor_world
from support.logs import capture_logs
from support.waiting import eventually


@pytest.fixture
def world(tmp_path):
    with executor_world(tmp_path, worker_max_lost_attempts=3, task_queues={
            "qq": {"queue_type": "quorum", "delivery_limit": 4}}) as world:
        yield world


def _delivery(store, state, redelivered=True, queue="celery", **headers):
    message = TaskMessage(task="tests.add", id=str(uuid.uuid4()), args=(1, 2), queue=queue)
    if state is not None:
        store.write([StateChange(task_id=message.id, state=state, name=message.task)])
    wire = message.encode()
    wire = dataclasses.replace(wire, headers={**wire.headers, **headers})
    return FakeDelivery(wire, queue, redelivered)


def prepare(executor, delivery):
    """As the worker does: the RECEIVED claim as it arrives, then the pool's prepare."""
    return executor.prepare(executor.received(delivery))


def _settle(executor, delivery):
    job = prepare(executor, delivery)
    assert executor.recorder.flush(10)
    return job


def test_a_redelivery_of_a_started_attempt_is_republished_counting_the_loss(world):
    _, store, broker, executor = world
    delivery = _delivery(store, STARTED)
    assert _settle(executor, delivery) is None
    assert delivery.settled == "ack"  # only after the copy was published
    copy = _take(broker, "celery")
    assert copy.message_id == delivery.wire.message_id
    assert copy.headers[LOST_ATTEMPTS_HEADER] == 1
    assert store.get(copy.message_id).state == STARTED


def test_the_last_allowed_loss_is_failure_and_a_dead_letter(world):
    _, store, broker, executor = world
    delivery = _delivery(store, STARTED, **{LOST_ATTEMPTS_HEADER: 2})
    assert _settle(executor, delivery) is None
    assert delivery.settled == "ack"  # once its copy, with the reason, is a dead letter
    row = store.get(delivery.wire.message_id)
    assert row.state == "FAILURE" and row.exception_type == "hutch.errors.WorkerLostError"
    assert "died at least 3 times" in row.exception_message
    assert "worker_max_lost_attempts=3" in row.exception_message
    [dead] = broker.dead_letters("celery")
    assert dead.message_id == delivery.wire.message_id
    assert dead.headers["dead_reason"].startswith("hutch.errors.WorkerLostError: the worker")


def test_a_redelivery_that_never_started_runs_with_its_start_committed_first(world):
    _, store, _, executor = world
    delivery = _delivery(store, RECEIVED)
    job = prepare(executor, delivery)  # no flush here: prepare itself waited for the commit
    assert job is not None and delivery.settled is None
    assert store.get(delivery.wire.message_id).state == STARTED


def test_a_copy_is_not_a_loss_and_a_finished_one_is_acknowledged(world):
    _, store, _, executor = world
    copy = _delivery(store, STARTED, redelivered=False, **{LOST_ATTEMPTS_HEADER: 1,
                                                          CONTINUED_HEADER: True})
    assert prepare(executor, copy) is not None and copy.settled is None
    done = _delivery(store, SUCCESS, redelivered=False, **{LOST_ATTEMPTS_HEADER: 1,
                                                          CONTINUED_HEADER: True})
    assert _settle(executor, done) is None and done.settled == "ack"


def test_a_new_delivery_of_an_attempt_another_delivery_holds_is_a_duplicate(world):
    """Not judged as a loss (it is no redelivery): another copy of the attempt was
    received first, and that one runs or is redelivered."""
    _, store, _, executor = world
    for state in (RECEIVED, STARTED):
        delivery = _delivery(store, state, redelivered=False)
        assert _settle(executor, delivery) is None and delivery.settled == "ack"
        assert store.get(delivery.wire.message_id).state == state
    fresh = _delivery(store, None, redelivered=False)
    assert prepare(executor, fresh) is not None and fresh.settled is None


def test_quorum_last_delivery_is_dead_lettered_by_the_worker(world):
    _, store, broker, executor = world
    delivery = _delivery(store, RECEIVED, queue="qq", **{"x-delivery-count": 4})
    assert _settle(executor, delivery) is None
    assert delivery.settled == "ack"
    [dead] = broker.dead_letters("qq")
    assert "x-delivery-count" not in dead.headers  # the copy starts clean
    assert "DeliveryLimitExceeded: delivered 5 times" in dead.headers["dead_reason"]
    row = store.get(delivery.wire.message_id)
    assert row.exception_type == "hutch.errors.DeliveryLimitExceeded"
    assert "delivered 5 times" in row.exception_message
    below = _delivery(store, RECEIVED, queue="qq", **{"x-delivery-count": 3})
    assert prepare(executor, below) is not None


def test_replay_starts_the_lost_count_again():
    wire = TaskMessage(task="t", id="x").encode()
    wire = dataclasses.replace(wire, headers={**wire.headers, LOST_ATTEMPTS_HEADER: 3,
                                              "x-death": [{}]})
    assert LOST_ATTEMPTS_HEADER not in replayable(wire).headers


def _take(broker, route):
    """The next ready message of a memory:// route (acknowledged at once)."""
    taken = []
    consumer = broker.consume([route], 1, lambda d: (taken.append(d.wire), d.ack()))
    consumer.start()
    try:
        assert eventually(lambda: taken, timeout=5), "no message on the route"
    finally:
        consumer.stop()
    return taken[0]


def test_a_redelivered_attempt_whose_retry_was_scheduled_does_not_run_again(world):
    """Its worker died after the retry's message was confirmed, before the original's
    ack reached RabbitMQ: the retry carries on, the old attempt must not run (it
    would schedule a second retry chain)."""
    _, store, _, executor = world
    over = _delivery(store, RETRY)  # attempt 0 failed and scheduled attempt 1
    assert _settle(executor, over) is None and over.settled == "ack"
    later = _delivery(store, STARTED)
    store.write([StateChange(task_id=later.wire.message_id, state=STARTED, retries=1)])
    assert _settle(executor, later) is None and later.settled == "ack"  # attempt 1 runs
    assert store.get(later.wire.message_id).state == STARTED


def test_a_delivery_whose_connection_was_lost_does_not_start(world):
    """Prefetched, and its connection then died (a cluster node was killed): RabbitMQ
    has put it back, another consumer may be running it already, so this copy neither
    runs nor is settled, and its row stays as its claim left it (issue #17)."""
    _, store, _, executor = world
    delivery = _delivery(store, None, redelivered=False)
    delivery.stale = True
    with capture_logs() as logs:
        assert prepare(executor, delivery) is None
    assert delivery.settled is None
    assert executor.recorder.flush(10)
    assert store.get(delivery.wire.message_id).state == RECEIVED
    assert [e["event"] for e in logs].count(
        "not run: its broker connection was lost; it is delivered again") == 1
