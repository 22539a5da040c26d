"""The beat loop on memory:// + SQLite with an injected clock: one tick at a time, no sleeping."""

import datetime as dt
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from apps.tasks import make_app
from hutch import crontab
from hutch.beat.sender import REPUBLISHED_HEADER
from hutch.beat.service import Beat
from hutch.beat.store import NotLeader
from hutch.errors import ConfigurationError
from hutch.options import build_message
from support.workers import running_worker

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   beat_poll_interval=1.0, beat_lease_seconds=3.0, task_track_pending=False)
    yield app
    app.close()


def runs(beat, name):
    return sorted(r.due_at for r in beat.store.runs(name, limit=1000))


def sql(app, statement, **params):
    with app.client().store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_config_sync_adds_updates_and_disables(app):
    clock = Clock()
    app.conf.beat_schedule = {
        "a": {"task": "tests.add", "schedule": 10, "args": (1, 2)},
        "b": {"task": "tests.add", "schedule": crontab(minute=0)},
    }
    Beat(app, clock=clock).sync_config()
    app.schedules.add("runtime-one", "tests.add", every="5s")
    stored = {e.name: e for e in app.schedules.list()}
    assert stored["a"].next_run_at == T0 + dt.timedelta(seconds=10)
    assert stored["a"].source == "config" and stored["runtime-one"].source == "runtime"

    app.conf.beat_schedule = {"a": {"task": "tests.mul", "schedule": 10, "args": (1, 2)}}
    Beat(app, clock=clock).sync_config()
    stored = {e.name: e for e in app.schedules.list()}
    assert stored["a"].task == "tests.mul" and stored["a"].enabled
    assert not stored["b"].enabled and stored["b"].source == "config-removed"
    assert stored["runtime-one"].enabled  # runtime schedules are kept

    app.conf.beat_schedule["b"] = {"task": "tests.add", "schedule": crontab(minute=0)}
    Beat(app, clock=clock).sync_config()
    assert app.schedules.get("b").enabled and app.schedules.get("b").source == "config"


def started(app, clock, every):
    """A beat with one config schedule, "tick", synced and past its first poll."""
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": every, "args": (1, 2)}}
    beat = Beat(app, clock=clock)
    beat.sync_config()
    beat.tick()
    return beat


def test_due_runs_are_sent_once_with_the_schedule_name(app):
    clock = Clock()
    beat = started(app, clock, 10)
    assert beat.active and runs(beat, "tick") == []
    for _ in range(3):
        clock.advance(10)
        beat.tick()
        beat.tick()  # a second tick at the same moment sends nothing more
    assert runs(beat, "tick") == [T0 + dt.timedelta(seconds=s) for s in (10, 20, 30)]
    assert all(r.sent_at is not None for r in beat.store.runs("tick"))
    entry = app.schedules.get("tick")
    assert entry.total_run_count == 3 and entry.next_run_at == T0 + dt.timedelta(seconds=40)


def test_after_downtime_a_missed_schedule_runs_once(app):
    clock = Clock()
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": 10, "args": (1, 2)}}
    beat = Beat(app, clock=clock)
    beat.sync_config()
    clock.advance(95)
    with capture_logs() as logs:
        beat.tick()
    assert runs(beat, "tick") == [T0 + dt.timedelta(seconds=10)]
    assert app.schedules.get("tick").next_run_at == T0 + dt.timedelta(seconds=100)
    caught = [e for e in logs if "caught up" in e["event"]]
    assert len(caught) == 1 and caught[0]["missed_runs"] == 9


def test_only_the_lease_holder_sends_and_a_standby_takes_over(app):
    clock = Clock()
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": 1, "args": (1, 2)}}
    first, second = Beat(app, clock=clock), Beat(app, clock=clock)
    first.sync_config()
    first.tick(), second.tick()
    assert first.active and not second.active
    for _ in range(3):
        clock.advance(1)
        first.tick(), second.tick()
    clock.advance(1)  # the first beat dies: it never ticks again
    for _ in range(4):
        second.tick()
        clock.advance(1)
    assert second.active
    due = runs(first, "tick")
    # every second until the first beat died, then the runs missed during the takeover
    # sent once (caught up), then every second again: no duplicate, no gap beyond that
    gaps = [(b - a).total_seconds() for a, b in zip(due, due[1:], strict=False)]
    assert due[:4] == [T0 + dt.timedelta(seconds=s) for s in range(1, 5)]
    assert gaps.count(1.0) == len(gaps) - 1 and max(gaps) == 3.0


def test_a_claim_made_without_the_lease_is_refused(app):
    clock = Clock()
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": 1, "args": (1, 2)}}
    first, second = Beat(app, clock=clock), Beat(app, clock=clock)
    first.sync_config()
    first.tick()
    clock.advance(4)  # first's lease expired; second takes it
    second.tick()
    assert second.active
    # first still believes it is active (it was paused): its claim must not commit
    entry = app.schedules.get("tick")
    with pytest.raises(NotLeader):
        first.store.claim(entry, entry.next_run_at, None, "stale-id", clock.now,
                          first.holder, first.lease)
    assert "stale-id" not in {r.task_id for r in first.store.runs("tick")}


def test_plain_sql_disable_and_enable_apply_at_the_next_tick(app):
    clock = Clock()
    app.schedules.add("tick", "tests.add", every=2, args=[1, 1])
    beat = Beat(app, clock=Clock(dt.datetime.now(dt.timezone.utc)))
    clock = beat.clock
    beat.tick()
    sql(app, "UPDATE hutch_schedules SET enabled = false WHERE name = 'tick'")
    clock.advance(10)
    beat.tick()
    assert runs(beat, "tick") == []
    sql(app, "UPDATE hutch_schedules SET enabled = true WHERE name = 'tick'")
    beat.tick()  # re-enabled by SQL: next run recomputed from now, no catch-up burst
    assert runs(beat, "tick") == []
    assert app.schedules.get("tick").next_run_at == clock.now + dt.timedelta(seconds=2)
    sql(app, "UPDATE hutch_schedules SET interval_seconds = 5 WHERE name = 'tick'")
    beat.tick()
    assert app.schedules.get("tick").next_run_at == clock.now + dt.timedelta(seconds=5)


def test_clocked_and_one_off_run_once_then_disable(app):
    clock = Clock()
    app.schedules.add("once", "tests.add", at=T0 + dt.timedelta(seconds=3), args=[1, 1])
    beat = Beat(app, clock=clock)
    for _ in range(6):
        beat.tick()
        clock.advance(1)
    assert runs(beat, "once") == [T0 + dt.timedelta(seconds=3)]
    entry = app.schedules.get("once")
    assert not entry.enabled and entry.total_run_count == 1 and entry.next_run_at is None


def test_a_broken_row_is_reported_and_skipped(app):
    clock = Clock(dt.datetime.now(dt.timezone.utc))
    app.schedules.add("cron", "tests.add", cron="* * * * *")
    app.schedules.add("tick", "tests.add", every=1)
    sql(app, "UPDATE hutch_schedules SET crontab = '61 * * * *', next_run_at = NULL "
             "WHERE name = 'cron'")
    beat = Beat(app, clock=clock)
    with capture_logs() as logs:
        beat.tick()
        clock.advance(2)
        beat.tick()
    assert [e["schedule"] for e in logs if "not valid" in e["event"]] == ["cron"]  # once
    assert len(runs(beat, "tick")) == 1


def test_unsent_claims_are_published_again(app):
    clock = Clock()
    beat = started(app, clock, 1)
    clock.advance(1)
    entry = app.schedules.get("tick")
    # a beat that claimed a run and died before the broker confirmed it
    beat.store.claim(entry, entry.next_run_at, entry.next_run_at + dt.timedelta(seconds=1),
                     "lost-id", clock.now, beat.holder, beat.lease)
    assert [r.task_id for r in beat.store.unsent(clock.now)] == ["lost-id"]
    clock.advance(5)
    successor = Beat(app, clock=clock)
    successor.tick()
    assert successor.active and beat.store.unsent(clock.now) == []


def test_run_now_and_api_errors(app):
    app.schedules.add("tick", "tests.add", every="1h", args=[2, 2])
    result = app.schedules.run_now("tick")
    runs_ = app.schedules.store.runs("tick")
    assert [r.task_id for r in runs_] == [result.id] and runs_[0].manual
    with pytest.raises(ConfigurationError, match="exists already"):
        app.schedules.add("tick", "tests.add", every="1h")
    with pytest.raises(ConfigurationError, match="no schedule named"):
        app.schedules.enable("nope")
    with pytest.raises(ConfigurationError, match="give one of"):
        app.schedules.add("x", "tests.add", every="1h", cron="* * * * *")
    with pytest.raises(ConfigurationError, match="timezone"):
        app.schedules.edit("tick", timezone="Nowhere/Land")
    app.schedules.remove("tick")
    assert app.schedules.get("tick") is None


def test_lease_must_outlast_two_polls(app):
    app.conf.beat_lease_seconds = 2.0
    with pytest.raises(ConfigurationError, match="beat_lease_seconds"):
        Beat(app)


def test_a_republished_copy_of_a_finished_task_is_acknowledged_without_running(app, tmp_path):
    marker = tmp_path / "runs"
    client = app.client()
    with running_worker(app, concurrency=1):
        first = app.tasks["tests.sleep"].apply_async((0, str(marker)))
        assert first.get(timeout=10) == 0
        copy = build_message("tests.sleep", (0, str(marker)), {}, {"task_id": first.id},
                             app.conf)
        wire = copy.encode()
        client.broker.publish([("celery", replace(wire, headers={**wire.headers,
                                                                 REPUBLISHED_HEADER: True}))])
        after = app.tasks["tests.sleep"].apply_async((0, str(marker)))  # single slot: FIFO
        assert after.get(timeout=10) == 0
    assert marker.read_text().count("\n") == 2  # the first and the one after; not the copy
