"""eta and countdown on the real RabbitMQ: the delay ladder, never early, never in a worker."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from support.processes import WorkerProc, worker_env
from support.rabbit import in_ladder_only, queue_counts
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def worker(amqp_url, postgres_url, topology_prefix):
    proc = WorkerProc(worker_env(amqp_url, postgres_url, topology_prefix), pool="threads",
                      concurrency=4).start()
    proc.wait_ready()
    yield proc
    proc.stop()


def _started_after_send(app, result) -> float:
    result.get(timeout=30)
    row = app.client().store.get(result.id)
    return (row.started_at - row.created_at).total_seconds(), row


def test_countdown_of_three_seconds_runs_at_the_right_second(app, worker):
    sent = dt.datetime.now(dt.timezone.utc)
    r = app.tasks["tests.add"].apply_async((1, 2), countdown=3)
    app.client().flush()
    row = app.client().store.get(r.id)
    assert row.state == "PENDING" and row.eta is not None
    assert r.get(timeout=30) == 3
    started = app.client().store.get(r.id).started_at
    lateness = (started - (sent + dt.timedelta(seconds=3))).total_seconds()
    assert 0 <= lateness < 1.5, lateness


def test_sub_second_countdowns_are_never_early_and_run_within_a_second(app, worker):
    """0.3 s waits in the 375 ms queue; 1.3 s in the 1 s and then the 375 ms one."""
    app.client().broker.declare(["celery"])  # so connecting does not eat into the countdowns
    countdowns = [0.3, 0.3, 1.3, 1.3]
    sent = [(dt.datetime.now(dt.timezone.utc), countdown,
             app.tasks["tests.add"].apply_async((i, i), countdown=countdown))
            for i, countdown in enumerate(countdowns)]
    for before, countdown, r in sent:
        r.get(timeout=30)
        row = app.client().store.get(r.id)
        assert (row.started_at - before).total_seconds() >= countdown
        lateness = (row.started_at - row.eta).total_seconds()
        assert 0 <= lateness < 1.0, (countdown, lateness)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
def test_eta_naive_in_the_app_timezone_and_aware(app, worker, zone):
    app.conf.timezone = zone
    due = dt.datetime.now(ZoneInfo(zone)) + dt.timedelta(seconds=3)
    naive = app.tasks["tests.add"].apply_async((1, 1), eta=due.replace(tzinfo=None))
    aware = app.tasks["tests.add"].apply_async((2, 2), eta=due.astimezone(dt.timezone.utc))
    for r in (naive, aware):
        assert r.get(timeout=30) in (2, 4)
        started = app.client().store.get(r.id).started_at
        lateness = (started - due).total_seconds()
        assert 0 <= lateness < 1.5, (zone, lateness)


def test_an_hour_countdown_waits_in_the_ladder_not_in_a_worker(app, worker, topology_prefix):
    r = app.tasks["tests.add"].apply_async((1, 1), countdown=3600)
    # nothing ready, nothing unacknowledged in the work queue: one message in the ladder
    assert eventually(lambda: in_ladder_only(topology_prefix)), queue_counts(topology_prefix)
    assert r.state == "PENDING"


def test_expires_before_eta_never_runs(app, worker):
    r = app.tasks["tests.add"].apply_async((1, 1), countdown=2, expires=1)
    with pytest.raises(Exception, match="expired"):
        r.get(timeout=30)
    assert r.state == "REVOKED"


def test_task_retries_go_through_the_ladder_and_keep_the_id(app, worker):
    r = app.tasks["tests.flaky"].delay(2)
    assert r.get(timeout=30) == 2
    row = app.client().store.get(r.id)
    assert row.state == "SUCCESS" and row.retries == 2
    # each retry waited in the broker at least its countdown of 0.2 s (0.25 s in the ladder)
    assert (row.finished_at - row.created_at).total_seconds() >= 0.4


def test_exhausted_retries_fail_and_dead_letter(app, worker):
    r = app.tasks["tests.autoretry"].delay()
    with pytest.raises(Exception, match="still broken"):
        r.get(timeout=30)
    row = app.client().store.get(r.id)
    assert row.state == "FAILURE" and row.retries == 1
    eventually(lambda: app.client().broker.dead_letter_count("celery") >= 1)
    assert app.client().broker.dead_letter_count("celery") == 1
