"""Soft and hard time limits on real workers (RabbitMQ + PostgreSQL)."""

from __future__ import annotations

import pytest

from hutch.brokers.base import NOTICE_EVERYONE
from hutch.errors import SoftTimeLimitExceeded
from hutch.messages import decode_notice
from support.events import Events
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_soft_limit_raises_inside_the_task_which_may_clean_up(app, env, workers):
    w = workers(env, pool="prefork", concurrency=1)
    w.wait_ready()
    caught = app.tasks["tests.cleanup_on_soft_limit"].apply_async((30,), soft_time_limit=1)
    assert caught.get(timeout=15) == "cleaned up"
    uncaught = app.tasks["tests.sleep"].apply_async((30,), soft_time_limit=1)
    with pytest.raises(SoftTimeLimitExceeded, match="soft time limit of 1 s"):
        uncaught.get(timeout=15)
    assert uncaught.state == "FAILURE"
    assert w.stop() == 0


def test_soft_limit_on_a_solo_worker(app, env, workers):
    w = workers(env, pool="solo", concurrency=1)
    w.wait_ready()
    r = app.tasks["tests.cleanup_on_soft_limit"].apply_async((30,), soft_time_limit=0.5)
    assert r.get(timeout=15) == "cleaned up"
    assert w.stop() == 0


def test_hard_limit_kills_the_child_records_failure_and_the_pool_goes_on(
        app, env, workers, tmp_path, broker):
    marker = tmp_path / "ran"
    w = workers(env, pool="prefork", concurrency=1)
    w.wait_ready()
    announced: list[str] = []
    notices = broker.subscribe_notices(lambda body: announced.extend(decode_notice(body)),
                                     (NOTICE_EVERYONE,))  # the supervisor knows no sender
    with Events(broker) as events:
        declared = app.tasks["tests.hard_limited"].delay(30, str(marker))  # time_limit=1
        per_call = app.tasks["tests.sleep"].apply_async((30, str(marker)), time_limit=1)
        for r in (declared, per_call):
            with pytest.raises(Exception) as info:
                r.get(timeout=20)
            assert type(info.value).__name__ == "TimeLimitExceeded"
            row = app.client().store.get(r.id)
            assert row.state == "FAILURE"
            assert row.exception_type == "hutch.errors.TimeLimitExceeded"
            # the supervisor tells live views too: the killed child could not
            failed = events.wait_for(r.id, "task-failed")[-1]
            assert failed["type"] == "task-failed", events.of(r.id)
            assert failed["exception"].startswith("TimeLimitExceeded(")
            assert events.types_of(r.id)[-2:] == ["task-started", "task-failed"]
    # and sends the completion notice get() waits for (a handle may skip its first read)
    assert eventually(lambda: {declared.id, per_call.id} <= set(announced))
    notices.close()
    assert eventually(lambda: w.output().count("replacing it") >= 2)
    # the replacement child serves the queue, and the killed deliveries are not run again
    assert app.tasks["tests.add"].delay(2, 3).get(timeout=20) == 5
    assert eventually(lambda: broker.queue_depths(["celery"])["celery"][0] == 0)
    assert broker.dead_letter_count("celery") == 0
    assert not marker.exists()
    assert w.stop() == 0


def test_asyncio_pool_cancels_an_async_task_at_its_time_limit(app, env, workers):
    w = workers(env, pool="asyncio", concurrency=4)
    w.wait_ready()
    slow = app.tasks["tests.asleep"].apply_async((30,), time_limit=1)
    soft = app.tasks["tests.asleep"].apply_async((30,), soft_time_limit=1)
    quick = app.tasks["tests.asleep"].delay(0.1)
    assert quick.get(timeout=10) == 0.1
    with pytest.raises(Exception) as info:
        slow.get(timeout=15)
    assert type(info.value).__name__ == "TimeLimitExceeded"
    with pytest.raises(SoftTimeLimitExceeded):
        soft.get(timeout=15)
    assert w.stop() == 0


def test_threads_pool_says_it_cannot_enforce_limits(app, env, workers):
    w = workers(env, pool="threads", concurrency=2)
    w.wait_ready()
    r = app.tasks["tests.sleep"].apply_async((0.5,), time_limit=0.1)
    assert r.get(timeout=10) == 0.5  # ran to the end: a thread cannot be stopped
    assert "time limits are not enforced on this pool" in w.output()
    assert w.stop() == 0
