"""The beat loop on memory:// + SQLite with an injected clock: one tick at a time, no sleeping."""

import datetime as dt
import queue
import uuid
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from apps.tasks import make_app
from hutch import crontab
from hutch.beat.service import Beat
from hutch.call_options import build_message
from hutch.client.sync import Client
from hutch.errors import BrokerUnavailable, ConfigurationError, NotLeader
from hutch.messages import REPUBLISHED_HEADER
from hutch.results.records import RETRY, SUCCESS, StateChange
from support.logs import capture_logs
from support.workers import running_worker

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.timezone.utc)


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
    Beat(app.conf, app.client, clock=clock).sync_config()
    app.schedules.add("runtime-one", "tests.add", every="5s")
    stored = {e.name: e for e in app.schedules.list()}
    assert stored["a"].next_run_at == T0 + dt.timedelta(seconds=10)
    assert stored["a"].source == "config" and stored["runtime-one"].source == "runtime"

    app.conf.beat_schedule = {"a": {"task": "tests.mul", "schedule": 10, "args": (1, 2)}}
    Beat(app.conf, app.client, clock=clock).sync_config()
    stored = {e.name: e for e in app.schedules.list()}
    assert stored["a"].task == "tests.mul" and stored["a"].enabled
    assert not stored["b"].enabled and stored["b"].source == "config-removed"
    assert stored["runtime-one"].enabled  # runtime schedules are kept

    app.conf.beat_schedule["b"] = {"task": "tests.add", "schedule": crontab(minute=0)}
    Beat(app.conf, app.client, clock=clock).sync_config()
    assert app.schedules.get("b").enabled and app.schedules.get("b").source == "config"


def test_a_config_entrys_catch_up_is_synced_and_keeps_its_next_run(app):
    clock = Clock()
    app.conf.beat_schedule = {"a": {"task": "tests.add", "schedule": 10}}
    Beat(app.conf, app.client, clock=clock).sync_config()
    clock.advance(3)
    app.conf.beat_schedule["a"].update(catch_up="all", catch_up_limit=7)
    with capture_logs() as logs:
        Beat(app.conf, app.client, clock=clock).sync_config()
    entry = app.schedules.get("a")
    assert (entry.catch_up, entry.catch_up_limit) == ("all", 7)
    assert entry.next_run_at == T0 + dt.timedelta(seconds=10)  # not a timing change
    assert [e["updated"] for e in logs if e["event"] == "beat_schedule synced"] == [["a"]]


def started(app, clock, every):
    """A beat with one config schedule, "tick", synced and past its first poll."""
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": every, "args": (1, 2)}}
    beat = Beat(app.conf, app.client, clock=clock)
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
    beat = Beat(app.conf, app.client, clock=clock)
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
    first, second = (Beat(app.conf, app.client, clock=clock),
                     Beat(app.conf, app.client, clock=clock))
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


def two_beats(app, clock, every, **options):
    """Two beats on one clock and a config schedule "tick"; the first is active."""
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": every, "args": (1, 2),
                                       **options}}
    first, second = (Beat(app.conf, app.client, clock=clock),
                     Beat(app.conf, app.client, clock=clock))
    first.sync_config()
    first.tick()
    return first, second


def simulate(clock, beats, until, dies=None):
    """Run ``beats`` on the injected clock, each ticking again after the wait its last
    tick returned, up to ``until``; ``dies``: beat -> moment after which it never ticks
    (SIGKILL: no release). Returns the moments each beat became active."""
    wake = dict.fromkeys(beats, clock.now)
    dies = dies or {}
    became: dict = {b: [] for b in beats}
    while True:
        alive = {b: t for b, t in wake.items()
                 if t <= until and (b not in dies or t < dies[b])}
        if not alive:
            return became
        beat = min(alive, key=alive.get)
        clock.now, was = alive[beat], beat.active
        wake[beat] = clock.now + dt.timedelta(seconds=beat.tick())
        if beat.active and not was:
            became[beat].append(clock.now)


@pytest.mark.parametrize("dies_after", [0.05, 0.5, 0.95])
def test_a_standby_takes_over_the_moment_the_lease_it_saw_expires(app, dies_after):
    """Lease 3 s, poll 1 s. The active beat renews every poll; killed between two polls,
    its lease runs out 3 s after its last renewal, and the standby (ticking 0.3 s out of
    step with it) takes over at that moment, not at its next poll."""
    clock = Clock()
    first, second = two_beats(app, clock, 1)
    clock.advance(0.3)
    killed = T0 + dt.timedelta(seconds=4 + dies_after)  # last renewal: T0 + 4 s
    became = simulate(clock, [first, second], T0 + dt.timedelta(seconds=12),
                      dies={first: killed})
    assert became[second] == [T0 + dt.timedelta(seconds=4 + 3)]
    assert became[second][0] - killed <= dt.timedelta(seconds=3)  # <= lease after death
    # runs 1-4 by the first beat; 5 (standing for 5, 6 and 7) at the takeover; then on time
    assert runs(first, "tick") == [T0 + dt.timedelta(seconds=s) for s in (1, 2, 3, 4, 5, 8, 9,
                                                                         10, 11, 12)]


def test_a_standby_polls_while_the_lease_is_further_off_than_a_poll(app):
    clock = Clock()
    first, second = (Beat(app.conf, app.client, clock=clock),
                     Beat(app.conf, app.client, clock=clock))
    first.tick()
    assert second.tick() == 1.0  # lease 3 s away: poll (edits and shutdowns are seen)
    clock.advance(2.4)
    assert second.tick() == pytest.approx(0.6)  # wakes when the lease it saw expires
    clock.advance(0.6)
    second.tick()
    assert second.active


def test_catch_up_all_sends_every_missed_run_once_oldest_first(app):
    clock = Clock()
    app.conf.beat_schedule = {
        "every": {"task": "tests.add", "schedule": 10, "args": (1, 2), "catch_up": "all"},
        "one": {"task": "tests.add", "schedule": 10, "args": (1, 2)},
        "capped": {"task": "tests.add", "schedule": 10, "args": (1, 2), "catch_up": "all",
                   "catch_up_limit": 4}}
    beat = Beat(app.conf, app.client, clock=clock)
    beat.sync_config()
    clock.advance(95)
    with capture_logs() as logs:
        beat.tick()
        beat.tick()  # nothing more at the same moment
    assert runs(beat, "every") == [T0 + dt.timedelta(seconds=s) for s in range(10, 91, 10)]
    assert runs(beat, "one") == [T0 + dt.timedelta(seconds=10)]
    assert runs(beat, "capped") == [T0 + dt.timedelta(seconds=s) for s in (60, 70, 80, 90)]
    for name in ("every", "one", "capped"):
        assert app.schedules.get(name).next_run_at == T0 + dt.timedelta(seconds=100)
    sent = [e for e in logs if e["event"] == "scheduled run sent"]
    assert [e["due_at"] for e in sent if e["schedule"] == "every"] == [
        (T0 + dt.timedelta(seconds=s)).isoformat() for s in range(10, 91, 10)]  # oldest first
    assert len({e["task_id"] for e in sent}) == len(sent) == 9 + 1 + 4
    skipped = [e for e in logs if "skipped" in e["event"]]
    assert [(e["schedule"], e["skipped_runs"], e["first_skipped"][14:19],
             e["last_skipped"][14:19]) for e in skipped] == [("capped", 5, "00:10", "00:50")]
    assert [(e["schedule"], e["runs"]) for e in logs if "each missed run" in e["event"]] == [
        ("every", 9), ("capped", 4)]  # in due order: every from 10 s, capped from 60 s
    assert [e["missed_runs"] for e in logs if "sent once" in e["event"]] == [9]


def test_next_run_moved_back_over_sent_runs_sends_only_the_missing_ones(app):
    clock = Clock()
    beat, _ = two_beats(app, clock, 10, catch_up="all")
    clock.advance(30)
    beat.tick()
    assert runs(beat, "tick") == [T0 + dt.timedelta(seconds=s) for s in (10, 20, 30)]
    sql(app, "UPDATE hutch_schedules SET next_run_at = :t", t=T0)  # a DBA rewinds it
    clock.advance(10)
    with capture_logs() as logs:
        beat.tick()
    assert runs(beat, "tick") == [T0 + dt.timedelta(seconds=s) for s in (0, 10, 20, 30, 40)]
    assert len([e for e in logs if e["event"] == "scheduled run sent"]) == 2
    assert len([e for e in logs if "not sent again" in e["event"]]) == 3
    assert app.schedules.get("tick").next_run_at == T0 + dt.timedelta(seconds=50)


class Killed(BaseException):
    """The process dies here (not an error the beat loop could catch)."""


def test_a_takeover_in_the_middle_of_a_catch_up_sends_each_run_once(app):
    clock = Clock()
    first, second = two_beats(app, clock, 10, catch_up="all")
    clock.advance(95)
    sends = []

    def dies_at_the_fourth_publish(message, now):
        sends.append(message.id)
        if len(sends) == 4:  # claimed (committed), never published
            raise Killed()
        published(message, now)

    published, first.sender.send = first.sender.send, dies_at_the_fourth_publish
    with pytest.raises(Killed):
        first.tick()
    assert len(runs(first, "tick")) == 4
    clock.advance(3)  # first's lease (renewed by each claim) runs out
    with capture_logs() as logs:
        second.tick()
    assert second.active
    assert runs(second, "tick") == [T0 + dt.timedelta(seconds=s) for s in range(10, 91, 10)]
    rows = second.store.runs("tick", limit=100)
    assert all(r.sent_at is not None for r in rows) and len({r.task_id for r in rows}) == 9
    assert [e["task_id"] for e in logs if "published again" in e["event"]] == [sends[3]]
    assert app.client().broker.queue_stats("celery").ready == 9  # 3 + the republished one + 5


def test_a_beat_paused_after_reading_an_unsent_run_does_not_publish_it_too(app):
    """The first beat reads an unsent run, then stalls (a GC or VM pause) past its lease;
    the second takes over and publishes the run again. The first, resuming, must not
    publish it a third time: every publish follows a transaction that renewed the lease."""
    clock = Clock()
    first, second = two_beats(app, clock, 60)
    clock.advance(1)
    entry = app.schedules.get("tick")
    first.store.claim(entry, entry.next_run_at, None, "lost-id", clock.now, first.holder,
                      first.lease)  # a claim whose publish was never confirmed
    clock.advance(2)
    first.tick()  # renews; the claim is not yet a lease old
    reads = first.store.task_rows

    def pause_after_reading(task_ids):
        found = reads(task_ids)
        clock.advance(3.5)  # first stalls past its lease; second takes over meanwhile
        second.tick()
        return found

    first.store.task_rows = pause_after_reading
    clock.advance(1.1)
    with capture_logs() as logs:
        first.tick()
    assert second.active and not first.active
    assert app.client().broker.queue_stats("celery").ready == 1  # second's copy only
    assert [e["event"] for e in logs if e.get("beat") == first.holder] == [
        "beat lease lost; standing by"]


def test_a_beat_that_cannot_renew_sends_nothing_until_it_can(app):
    clock = Clock()
    beat = started(app, clock, 1)
    clock.advance(1)
    beat.tick()
    assert runs(beat, "tick") == [T0 + dt.timedelta(seconds=1)]
    sql(app, "ALTER TABLE hutch_beat_lease RENAME TO lease_away")  # renewals fail
    with capture_logs() as logs:
        for _ in range(3):
            clock.advance(1)
            assert beat.tick() == 1.0
    assert not beat.active and runs(beat, "tick") == [T0 + dt.timedelta(seconds=1)]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "beat lease not renewed: standing by until the database answers"]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "beat round failed; retrying"] * 3  # the cause, each round, until the database answers
    sql(app, "ALTER TABLE lease_away RENAME TO hutch_beat_lease")
    clock.advance(1)
    beat.tick()  # its own unexpired lease: renewed, and the missed runs caught up once
    assert beat.active
    assert runs(beat, "tick") == [T0 + dt.timedelta(seconds=s) for s in (1, 2)]


def test_a_long_cleanup_keeps_renewing_the_lease(app):
    store = app.client().store
    old = T0 - dt.timedelta(days=2)
    store.write([StateChange(task_id=f"old-{i}", state=SUCCESS, finished_at=old)
                 for i in range(30)])
    app.conf.result_cleanup_batch = 1
    clock = Clock()
    first, second = (Beat(app.conf, app.client, clock=clock),
                     Beat(app.conf, app.client, clock=clock))
    deletes = first.store.delete_batch

    def slow_delete(table, before, batch):
        clock.advance(0.7)  # a slow statement: ten of them outlast the 3 s lease
        second.tick()
        return deletes(table, before, batch)

    first.store.delete_batch = slow_delete
    first.tick()
    assert first.active and not second.active
    assert store.count() == 20  # one round: ten statements of one row
    assert first.lease.holder()["expires_at"] > clock.now


def test_a_claim_made_without_the_lease_is_refused(app):
    clock = Clock()
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": 1, "args": (1, 2)}}
    first, second = (Beat(app.conf, app.client, clock=clock),
                     Beat(app.conf, app.client, clock=clock))
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
    app.schedules.add("tick", "tests.add", every=2, args=[1, 1])
    # before the first run is due, however long the add (and the migration) took
    due = app.schedules.get("tick").next_run_at
    beat = Beat(app.conf, app.client, clock=Clock(due - dt.timedelta(seconds=1)))
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
    beat = Beat(app.conf, app.client, clock=clock)
    for _ in range(6):
        beat.tick()
        clock.advance(1)
    assert runs(beat, "once") == [T0 + dt.timedelta(seconds=3)]
    entry = app.schedules.get("once")
    assert not entry.enabled and entry.total_run_count == 1 and entry.next_run_at is None


def test_a_broken_row_is_reported_and_skipped(app):
    app.schedules.add("cron", "tests.add", cron="* * * * *")
    app.schedules.add("tick", "tests.add", every=1)
    sql(app, "UPDATE hutch_schedules SET crontab = '61 * * * *', next_run_at = NULL "
             "WHERE name = 'cron'")
    # half a second before the tick is due, however long the adds took on a busy host
    clock = Clock(app.schedules.get("tick").next_run_at - dt.timedelta(seconds=0.5))
    beat = Beat(app.conf, app.client, clock=clock)
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
    successor = Beat(app.conf, app.client, clock=clock)
    successor.tick()
    assert successor.active and beat.store.unsent(clock.now) == []



def test_an_unsent_run_is_published_again_marked_and_gets_its_pending_row(app):
    """The sweep sends through the client's public path (Client.send): the copy carries
    the republished mark and its PENDING row the schedule's name, as a first send's does."""
    app.conf.task_track_pending = True
    clock = Clock()
    beat = started(app, clock, 1)
    entry = app.schedules.get("tick")
    beat.store.claim(entry, entry.next_run_at, entry.next_run_at + dt.timedelta(seconds=1),
                     "lost-id", clock.now, beat.holder, beat.lease)
    clock.advance(5)
    Beat(app.conf, app.client, clock=clock).tick()
    deliveries = queue.SimpleQueue()
    consumer = app.client().broker.consume(["celery"], 100, deliveries.put)
    consumer.start()
    try:
        while (delivery := deliveries.get(timeout=10)).wire.message_id != "lost-id":
            assert REPUBLISHED_HEADER not in delivery.wire.headers  # first sends are not
    finally:
        consumer.stop()
    assert delivery.wire.headers[REPUBLISHED_HEADER] is True
    assert app.client().flush()
    row = app.client().store.get("lost-id")
    assert (row.state, row.schedule_name) == ("PENDING", "tick")

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


def test_catch_up_by_the_api_and_a_bad_value_set_by_plain_sql(app):
    entry = app.schedules.add("billing", "tests.add", every="1h", catch_up="all",
                              catch_up_limit=24)
    assert (entry.catch_up, entry.catch_up_limit) == ("all", 24)
    assert app.schedules.edit("billing", catch_up_limit=48).catch_up_limit == 48
    with pytest.raises(ConfigurationError, match=r"^catch_up_limit: .* got -1$"):
        app.schedules.edit("billing", catch_up_limit=-1)
    with pytest.raises(ConfigurationError, match=r"^catch_up: expected one of one, all"):
        app.schedules.add("other", "tests.add", every="1h", catch_up="every")
    sql(app, "UPDATE hutch_schedules SET catch_up = 'most', next_run_at = :t", t=T0)
    beat = Beat(app.conf, app.client, clock=Clock())
    with capture_logs() as logs:
        beat.tick()
    assert runs(beat, "billing") == []
    assert [e["error"] for e in logs if "not valid" in e["event"]] == [
        "catch_up: expected one of one, all, got 'most'"]


def test_lease_must_outlast_two_polls(app):
    app.conf.beat_lease_seconds = 2.0
    with pytest.raises(ConfigurationError, match="beat_lease_seconds"):
        Beat(app.conf, app.client)


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


def test_rows_inserted_by_hand_run_and_a_row_that_cannot_be_sent_is_skipped(app):
    app.schedules.list()  # the SQLite file is migrated on first use
    # a DBA's INSERT that leaves args, kwargs, options and next_run_at out
    sql(app, "INSERT INTO hutch_schedules (name, task, kind, interval_seconds) "
             "VALUES ('by-hand', 'tests.add', 'interval', 2)")
    sql(app, "INSERT INTO hutch_schedules (name, task, kind, interval_seconds, args) "
             "VALUES ('bad-args', 'tests.add', 'interval', 2, '\"x\"')")
    # SQLite takes any text in a datetime column; this row cannot even be read
    sql(app, "INSERT INTO hutch_schedules (name, task, kind, interval_seconds, start_at) "
             "VALUES ('bad-time', 'tests.add', 'interval', 2, 'yesterday')")
    clock = Clock()
    beat = Beat(app.conf, app.client, clock=clock)
    with capture_logs() as logs:
        for _ in range(3):
            beat.tick()
            clock.advance(2)
    assert runs(beat, "by-hand") == [T0 + dt.timedelta(seconds=2), T0 + dt.timedelta(seconds=4)]
    assert runs(beat, "bad-args") == runs(beat, "bad-time") == []
    broken = {e["schedule"]: e["error"] for e in logs if "not valid" in e["event"]}
    assert sorted(broken) == ["bad-args", "bad-time"]  # once each, the others run on
    assert len([e for e in logs if "not valid" in e["event"]]) == 2
    assert broken["bad-args"].startswith("args:") and "'yesterday'" in broken["bad-time"]
    assert not [e for e in logs if "unexpectedly" in e["event"]]


def test_a_next_run_set_by_hand_in_sqlites_own_spelling_is_honoured(app):
    app.schedules.add("tick", "tests.add", every="1h", args=[1, 1])
    # datetime() writes no microseconds: the same instant, spelled differently
    sql(app, "UPDATE hutch_schedules SET next_run_at = datetime('2030-01-01 12:00:00') "
             "WHERE name = 'tick'")
    beat = Beat(app.conf, app.client, clock=Clock())
    beat.tick()
    assert runs(beat, "tick") == [T0]
    assert app.schedules.get("tick").next_run_at == T0 + dt.timedelta(hours=1)


def berlin_runs(app, start, end, step=600):
    """Run a beat with a Europe/Berlin daily 02:30 job and an hourly one from ``start``
    to ``end`` (UTC), one tick every ``step`` seconds; their runs as local wall times."""
    app.conf.beat_schedule = {
        "nightly": {"task": "tests.add", "schedule": crontab(minute=30, hour=2),
                    "args": (1, 1), "timezone": "Europe/Berlin"},
        "hourly": {"task": "tests.add", "schedule": crontab(minute=0), "args": (1, 1),
                   "timezone": "Europe/Berlin"},
    }
    app.conf.result_expires = None  # keep the simulated days' run rows
    clock = Clock(start)
    beat = Beat(app.conf, app.client, clock=clock)
    beat.sync_config()
    while clock.now <= end:
        beat.tick()
        clock.advance(step)
    berlin = ZoneInfo("Europe/Berlin")
    return {name: [d.astimezone(berlin).isoformat() for d in runs(beat, name)]
            for name in ("nightly", "hourly")}


def test_spring_forward_in_berlin_runs_the_missing_time_once_at_the_first_valid_moment(app):
    # 2030-03-31 02:00 CET jumps to 03:00 CEST: 02:30 never happens that night
    fired = berlin_runs(app, utc(2030, 3, 30), utc(2030, 4, 1, 6))
    assert fired["nightly"] == ["2030-03-30T02:30:00+01:00", "2030-03-31T03:00:00+02:00",
                                "2030-04-01T02:30:00+02:00"]
    night = [w[11:16] for w in fired["hourly"] if w.startswith("2030-03-31")]
    assert len(fired["hourly"]) == len(set(fired["hourly"]))  # never twice
    # the missing 02:00 runs at 03:00, the first valid moment (one run stands for both)
    assert night == [f"{h:02}:00" for h in range(24) if h != 2]


def test_fall_back_in_berlin_runs_the_repeated_time_once(app):
    # 2030-10-27 03:00 CEST goes back to 02:00 CET: 02:00-02:59 happens twice
    fired = berlin_runs(app, utc(2030, 10, 26), utc(2030, 10, 28, 6))
    assert fired["nightly"] == ["2030-10-26T02:30:00+02:00", "2030-10-27T02:30:00+02:00",
                                "2030-10-28T02:30:00+01:00"]
    night = [w[11:16] for w in fired["hourly"] if w.startswith("2030-10-27")]
    assert night == [f"{h:02}:00" for h in range(24)]  # 02:00 once, not twice


def test_shanghai_daily_0730_is_sent_at_2330_utc(app):
    app.conf.timezone = "Asia/Shanghai"  # the default zone of config entries
    app.conf.beat_schedule = {"morning": {"task": "tests.add", "args": (1, 1),
                                          "schedule": crontab(minute=30, hour=7)}}
    clock = Clock(utc(2030, 1, 1, 12))
    beat = Beat(app.conf, app.client, clock=clock)
    beat.sync_config()
    for _ in range(3):
        beat.tick()
        clock.advance(12 * 3600)
    assert app.schedules.get("morning").timezone == "Asia/Shanghai"
    assert runs(beat, "morning") == [utc(2030, 1, 1, 23, 30)]


def test_a_restarted_beat_sends_nothing_twice(app):
    clock = Clock()
    beat = started(app, clock, 10)
    clock.advance(10)
    beat.tick()
    beat._release()  # stopped cleanly; then the same config starts again
    again = Beat(app.conf, app.client, clock=clock)
    with capture_logs() as logs:
        again.sync_config()
        again.tick()
    assert again.active and runs(again, "tick") == [T0 + dt.timedelta(seconds=10)]
    assert not [e for e in logs if e["event"] == "beat_schedule synced"]  # nothing changed
    assert app.schedules.get("tick").next_run_at == T0 + dt.timedelta(seconds=20)
    clock.advance(10)
    again.tick()
    assert runs(again, "tick") == [T0 + dt.timedelta(seconds=s) for s in (10, 20)]


def test_a_schedules_options_are_in_the_message_it_sends(app):
    app.conf.task_queues = {"reports": {"max_priority": 9}}
    app.conf.beat_schedule = {"report": {
        "task": "tests.add", "schedule": 10, "args": (1, 2), "kwargs": {},
        "options": {"queue": "reports", "priority": 7, "expires": 60,
                    "headers": {"team": "ops"}}}}
    clock = Clock()
    beat = Beat(app.conf, app.client, clock=clock)
    beat.sync_config()
    message = beat.sender.message(app.schedules.get("report"), "some-id")
    assert (message.queue, message.priority, message.headers, message.schedule_name) == (
        "reports", 7, {"team": "ops"}, "report")
    assert 59 <= (message.expires - message.sent_at).total_seconds() <= 60


def test_options_beat_could_not_send_are_refused_when_added(app):
    with pytest.raises(ConfigurationError, match="priority: queue 'celery' has no maximum"):
        app.schedules.add("p", "tests.add", every="1h", options={"priority": 5})
    app.conf.beat_schedule = {"p": {"task": "tests.add", "schedule": 10,
                                    "options": {"priority": 5}}}
    with pytest.raises(ConfigurationError, match=r"beat_schedule\['p'\]: priority"):
        Beat(app.conf, app.client).sync_config()
    assert app.schedules.list() == []


def test_the_active_beat_deletes_expired_results_and_none_keeps_them(app):
    store = app.client().store
    old = T0 - dt.timedelta(days=2)
    store.write([StateChange(task_id=f"old-{i}", state=SUCCESS, finished_at=old)
                 for i in range(5)]
                + [StateChange(task_id="retrying", state=RETRY, finished_at=old),
                   StateChange(task_id="recent", state=SUCCESS, finished_at=T0)])
    app.conf.result_expires = None
    clock = Clock()
    Beat(app.conf, app.client, clock=clock).tick()
    assert store.count() == 7  # None keeps them
    app.conf.result_expires = 86400.0
    clock.advance(1)
    # the lease's holder has stopped ticking; wait it out
    Beat(app.conf, app.client, clock=clock).tick()
    clock.advance(5)
    beat = Beat(app.conf, app.client, clock=clock)
    beat.tick()
    assert beat.active
    assert {store.get(i).state for i in ("retrying", "recent")} == {RETRY, SUCCESS}
    assert store.count() == 2  # a RETRY row is a task still to run: kept


def test_a_beat_that_cannot_publish_leaves_the_lease_to_a_standby(app):
    """Issue #17: the active beat's broker node is gone (its publishes fail), a standby's
    answers. After two lease periods (3 s each here) without a confirmed publish the
    active beat leaves the lease and stays out as long; the standby takes over and
    sends what the first could not (its unsent runs, re-claimed), then every run."""
    clock = Clock()
    app.conf.beat_schedule = {"tick": {"task": "tests.add", "schedule": 1, "args": (1, 2)}}
    cut_off = Client(conf=app.conf)

    def unreachable(*_args, **_kwargs):
        raise BrokerUnavailable("connection to amqp://guest:***@node1// lost")

    cut_off.broker.publish = unreachable
    first = Beat(app.conf, lambda: cut_off, clock=clock)
    second = Beat(app.conf, app.client, clock=clock)
    first.sync_config()
    first.tick(), second.tick()
    assert first.active and not second.active
    with capture_logs() as logs:
        for _ in range(10):
            clock.advance(1)
            first.tick(), second.tick()
    assert second.active and not first.active
    assert [e["event"] for e in logs].count(
        "beat cannot publish: leaving the lease to a standby") == 1
    for _ in range(4):  # the unsent-run sweep takes runs claimed a lease period ago
        clock.advance(1)
        second.tick()
    assert all(r.sent_at is not None for r in second.store.runs("tick", limit=100)), \
        "the runs the first beat claimed and could not publish were sent"
    assert app.client().broker.queue_stats("celery").ready >= 8
    for _ in range(8):  # past its time out, the first beat is a standby again
        clock.advance(1)
        first.tick(), second.tick()
    assert second.active and not first.active
    cut_off.close()
