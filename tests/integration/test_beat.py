"""Beat against real RabbitMQ and each database: config sync, runtime edits by CLI and
plain SQL, two beats with takeover after SIGKILL (also in the middle of a catch-up), a
beat that cannot renew its lease, and ``worker -B``."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager

import pika
import pytest
from sqlalchemy import text, update

from apps.tasks import make_app
from hutch.beat.models import beat_lease, schedules
from hutch.brokers.amqp.params import pika_parameters
from hutch.config import Settings
from hutch.results.migrate import upgrade
from hutch.results.models import make_engine
from support.processes import TESTS_DIR, BeatProc, as_datetime, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

FAST = {"HUTCH_BEAT_POLL_INTERVAL": "0.5", "HUTCH_BEAT_LEASE_SECONDS": "3"}
LEASE, POLL = 5.0, 1.0
"""The defaults of beat_lease_seconds and beat_poll_interval."""
TAKEOVER_BOUND = LEASE + POLL
"""docs/beat.md: a standby takes over at most lease + poll after the active beat dies."""
TAKEOVER_WITHIN = TAKEOVER_BOUND + 2.0
"""The bound with slack for a loaded machine."""
TICK = {"tick": {"task": "tests.add", "every": 1, "args": [1, 2]}}
EVERY = {"every": {"task": "tests.add", "every": 1, "args": [3, 4], "catch_up": "all"}}


@pytest.fixture
def beat_env(amqp_url, store_url, topology_prefix):
    def make(schedule=None, *, settings=FAST, **extra):
        return worker_env(amqp_url, store_url, topology_prefix, **settings,
                          HUTCH_TEST_BEAT_SCHEDULE=json.dumps(schedule or {}), **extra)
    return make


@pytest.fixture
def app(amqp_url, store_url, topology_prefix):
    app = make_app(amqp_url, store_url, topology_prefix=topology_prefix)
    yield app
    app.close()


@pytest.fixture
def db(store_url):
    upgrade(store_url)  # SQLite files start empty; PostgreSQL ones are migrated already
    engine = make_engine(store_url)

    def query(sql, **params):
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return result.all() if result.returns_rows else None

    yield query
    engine.dispose()


@pytest.fixture
def beats():
    started: list[BeatProc] = []

    def start(env, *args) -> BeatProc:
        proc = BeatProc(env, *args).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


APPLIES_WITHIN = 5.0
"""The issue's bound: a change by any path takes effect in the running beat within 5 s
(at the default ``beat_poll_interval`` of 1 s)."""
STOP_WATCHED = 3.0
"""How long after a disable the test watches for runs claimed too late."""


def utcnow():
    return dt.datetime.now(dt.timezone.utc)


def sent(db, name):
    """Tasks in hutch_tasks sent by schedule ``name``."""
    return db("SELECT count(*) FROM hutch_tasks WHERE schedule_name = :n", n=name)[0][0]


def sent_args(db, name):
    """The args of every task schedule ``name`` sent (as lists)."""
    rows = db("SELECT args FROM hutch_tasks WHERE schedule_name = :n", n=name)
    return [json.loads(a) if isinstance(a, str) else a for (a,) in rows]


def assert_stops_within_5s(db, name, changed_at):
    """After a disable committed at ``changed_at``: no run of ``name`` is claimed later
    than 1 s after it, watched for STOP_WATCHED s (a broken disable would claim two or
    three runs of an every-second schedule by then), and every run claimed reached
    hutch_tasks. Stricter than the 5 s the issue allows, and as sure: a claim's UPDATE
    requires ``enabled`` (BeatStore.claim), so a disabled row cannot be claimed at all."""
    time.sleep(max(0.0, (changed_at - utcnow()).total_seconds() + STOP_WATCHED))
    claimed = [as_datetime(c) for (c,) in db(
        "SELECT claimed_at FROM hutch_schedule_runs WHERE schedule_name = :n", n=name)]
    late = [c for c in claimed if c > changed_at + dt.timedelta(seconds=1.0)]
    assert late == [], f"{name} still ran {[(c - changed_at).total_seconds() for c in late]} s " \
                       "after it was disabled"
    assert sent(db, name) == len(claimed)


def set_next_run(store_url, name, when):
    """``UPDATE hutch_schedules SET next_run_at = ...`` with the column's own type."""
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(schedules).where(schedules.c.name == name)
                         .values(next_run_at=when))
    finally:
        engine.dispose()


def hutch(env, *args):
    return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.beat_app", *args],
                          env=env, capture_output=True, text=True, timeout=60,
                          cwd=TESTS_DIR.parent)


def test_config_sync_and_history_by_schedule_name(app, beat_env, beats, workers, db):
    app.schedules.add("runtime-kept", "tests.add", every="1h")
    app.schedules.add("was-in-config", "tests.add", every="1h")
    db("UPDATE hutch_schedules SET source = 'config' WHERE name = 'was-in-config'")
    env = beat_env(TICK)
    worker = workers(env, pool="threads", concurrency=2)
    beat = beats(env)
    beat.wait_for("beat active")
    assert eventually(lambda: db("SELECT count(*) FROM hutch_tasks WHERE schedule_name = 'tick'"
                                 " AND state = 'SUCCESS'")[0][0] >= 2, 15)
    rows = {e.name: e for e in app.schedules.list()}
    assert rows["tick"].source == "config" and rows["tick"].enabled
    assert rows["runtime-kept"].enabled
    assert not rows["was-in-config"].enabled and rows["was-in-config"].source == "config-removed"
    assert "no longer in beat_schedule" in beat.output()
    assert app.AsyncResult(db("SELECT task_id FROM hutch_tasks WHERE schedule_name = 'tick' "
                              "AND state = 'SUCCESS'")[0][0]).get(timeout=5) == 3
    assert beat.stop() == 0

    # a restart with the same config changes nothing and sends nothing twice
    again = beats(env)
    again.wait_for("beat active")
    before = sent(db, "tick")
    assert eventually(lambda: sent(db, "tick") >= before + 2, 10)
    assert "beat_schedule synced" not in again.output()
    assert again.stop() == 0
    # a changed config entry is updated in place (run count kept)
    count = app.schedules.get("tick").total_run_count
    changed = beats(beat_env({"tick": {**TICK["tick"], "args": [2, 3]}}))
    changed.wait_for("beat_schedule synced")
    assert eventually(lambda: [2, 3] in sent_args(db, "tick"), 10)
    assert changed.stop() == 0 and worker.stop() == 0
    assert app.schedules.get("tick").total_run_count > count
    runs = db("SELECT count(*), count(DISTINCT task_id) FROM hutch_schedule_runs "
              "WHERE schedule_name = 'tick'")[0]
    assert runs[0] == runs[1] == sent(db, "tick")


def test_runtime_edits_by_cli_and_plain_sql_apply_within_5s(beat_env, beats, db):
    env = beat_env(settings={})  # beat_poll_interval 1 s, the default
    beat = beats(env)
    beat.wait_for("beat active")

    # the CLI: add, edit, disable
    out = hutch(env, "schedule", "add", "edited", "--task", "tests.add", "--every", "1s",
                "--args", "[2, 2]")
    assert out.returncode == 0, out.stderr
    assert eventually(lambda: sent(db, "edited") >= 1, APPLIES_WITHIN)
    out = hutch(env, "schedule", "edit", "edited", "--args", "[3, 3]")
    assert out.returncode == 0, out.stderr
    assert eventually(lambda: [3, 3] in sent_args(db, "edited"), APPLIES_WITHIN)
    out = hutch(env, "schedule", "disable", "edited")
    assert out.returncode == 0, out.stderr
    assert_stops_within_5s(db, "edited", utcnow())

    # plain SQL on hutch_schedules alone (no change-marker row): enable, edit, disable
    settled = sent(db, "edited")
    db("UPDATE hutch_schedules SET enabled = true WHERE name = 'edited'")
    assert eventually(lambda: sent(db, "edited") > settled, APPLIES_WITHIN)
    db("UPDATE hutch_schedules SET args = '[5, 5]' WHERE name = 'edited'")
    assert eventually(lambda: [5, 5] in sent_args(db, "edited"), APPLIES_WITHIN)
    changed = utcnow()
    db("UPDATE hutch_schedules SET interval_seconds = 3600 WHERE name = 'edited'")
    assert eventually(lambda: _next_run(db, "edited") > changed + dt.timedelta(minutes=59),
                      APPLIES_WITHIN)
    db("INSERT INTO hutch_schedules (name, task, kind, interval_seconds, args) "
       "VALUES ('by-hand', 'tests.add', 'interval', 1, '[7, 7]')")
    assert eventually(lambda: sent(db, "by-hand") >= 1, APPLIES_WITHIN)
    db("UPDATE hutch_schedules SET enabled = false WHERE name = 'by-hand'")
    assert_stops_within_5s(db, "by-hand", utcnow())
    assert sent_args(db, "by-hand")[0] == [7, 7]

    # run now, outside the schedule: its task has the schedule's name too
    out = hutch(env, "schedule", "run", "by-hand")
    assert out.returncode == 0, out.stderr
    task_id = out.stdout.strip()
    assert eventually(lambda: db("SELECT schedule_name FROM hutch_tasks WHERE task_id = :i",
                                 i=task_id) == [("by-hand",)], APPLIES_WITHIN)

    assert beat.stop() == 0  # CLI refusals: tests/unit/test_beat_cli.py


def test_two_beats_one_active_and_takeover_after_sigkill(beat_env, beats, db, store_url,
                                                         amqp_url, topology_prefix):
    """At the defaults (lease 5 s, poll 1 s): one beat sends; SIGKILL it and the other is
    active within lease + poll. "tick" (every second, catch_up one) sends one run for the
    seconds of the takeover; "every" (every second, catch_up all) misses none; "slow"
    (every 10 s, longer than a takeover) misses none; nothing is sent twice."""
    env = beat_env({**TICK, **EVERY, "slow": {"task": "tests.add", "every": 10,
                                              "args": [4, 4]}}, settings={})
    first, second = beats(env), beats(env)
    first.wait_for("beat ready"), second.wait_for("beat ready")
    assert eventually(lambda: sent(db, "tick") >= 2, 15)
    set_next_run(store_url, "slow", utcnow() + dt.timedelta(seconds=1))
    assert eventually(lambda: sent(db, "slow") == 1, 10)
    holder = db("SELECT holder FROM hutch_beat_lease")[0][0]
    active, standby = (first, second) if f":{first.proc.pid}:" in holder else (second, first)
    assert "beat active" not in standby.output()
    killed_at = utcnow()
    active.kill()
    assert eventually(lambda: "beat active" in standby.output(), TAKEOVER_WITHIN + 1)
    took = (standby.logged_at("beat active") - killed_at).total_seconds()
    print(f"takeover {took:.2f} s after SIGKILL ({_dialect(store_url)})")
    assert took <= TAKEOVER_WITHIN
    assert eventually(lambda: sent(db, "slow") == 2, 15)  # due 10 s after the first
    before = sent(db, "tick")
    assert eventually(lambda: sent(db, "tick") >= before + 2, 10)
    assert standby.stop() == 0

    standby_id = db("SELECT holder FROM hutch_beat_lease")[0][0]
    queued = queued_messages(amqp_url, topology_prefix)
    for name in ("tick", "every", "slow"):
        assert_each_run_sent_once(db, queued, name)
        claimers = [by for (by,) in db("SELECT claimed_by FROM hutch_schedule_runs "
                                       "WHERE schedule_name = :n ORDER BY due_at", n=name)]
        # one active beat at a time: the killed one's runs, then the standby's, never mixed
        assert claimers == sorted(claimers, key=lambda by: by == standby_id), claimers
        assert claimers[-1] == standby_id and claimers[0] != standby_id
    assert due_gaps(db, "slow") == [10.0]
    assert set(due_gaps(db, "every")) == {1.0}  # catch_up all: not one second missed
    gaps = due_gaps(db, "tick")
    # catch_up one: on the one-second grid, never twice; the runs missed during the
    # takeover are sent once (not once per second), and the log says it caught up
    assert all(g >= 1.0 and g == int(g) for g in gaps) and max(gaps) <= TAKEOVER_WITHIN + 1
    catch_ups = first.output().count("caught up") + second.output().count("caught up")
    assert 1 <= sum(1 for g in gaps if g != 1.0) <= catch_ups


def test_a_takeover_in_the_middle_of_a_catch_up_sends_each_run_once(
        beat_env, beats, db, store_url, amqp_url, topology_prefix):
    """A catch_up="all" schedule 400 runs behind; SIGKILL the active beat while it sends
    them. The standby sends the rest: every due time once, none missed, none twice."""
    backlog = 400
    env = beat_env({"every": {**EVERY["every"], "catch_up_limit": 1000}}, settings={})
    first, second = beats(env), beats(env)
    first.wait_for("beat ready"), second.wait_for("beat ready")
    assert eventually(lambda: sent(db, "every") >= 1, 15)
    start = as_datetime(db("SELECT min(due_at) FROM hutch_schedule_runs")[0][0])
    holder = db("SELECT holder FROM hutch_beat_lease")[0][0]
    active, standby = (first, second) if f":{first.proc.pid}:" in holder else (second, first)
    set_next_run(store_url, "every", start - dt.timedelta(seconds=backlog))
    assert eventually(lambda: claimed(db, "every") >= 40, 20)
    active.kill()
    by_killed = claimed(db, "every")
    assert eventually(lambda: "beat active" in standby.output(), TAKEOVER_WITHIN + 1)
    assert eventually(lambda: _next_run(db, "every") > utcnow(), 60)  # the backlog is sent
    assert eventually(lambda: unsent(db, "every") == 0, 3 * LEASE)
    assert standby.stop() == 0
    by_standby = db("SELECT count(*) FROM hutch_schedule_runs r JOIN hutch_beat_lease l "
                    "ON r.claimed_by = l.holder WHERE r.schedule_name = 'every'")[0][0]
    print(f"{by_killed} runs claimed before the SIGKILL, {by_standby} by the standby")
    assert by_killed < backlog < by_standby + by_killed  # killed in the middle of it
    assert_each_run_sent_once(db, queued_messages(amqp_url, topology_prefix), "every")
    assert set(due_gaps(db, "every")) == {1.0}  # the backlog, then on time: none missed
    dues = [as_datetime(d) for (d,) in db("SELECT due_at FROM hutch_schedule_runs")]
    assert min(dues) == start - dt.timedelta(seconds=backlog)


def test_a_beat_sends_nothing_while_it_cannot_renew(beat_env, beats, db, store_url, amqp_url,
                                                    topology_prefix):
    """At the defaults. (1) The lease row is locked for 3 s (a stalled database write):
    the active beat sends nothing meanwhile, and since 3 s < lease - poll, the standby
    does not take over. (2) A DBA gives the lease to someone else: the active beat's next
    claim fails; it stands by at once. (3) The lease expires: a beat takes over within a
    poll and catches up."""
    env = beat_env(TICK, settings={})
    first, second = beats(env), beats(env)
    first.wait_for("beat ready"), second.wait_for("beat ready")
    assert eventually(lambda: sent(db, "tick") >= 2, 15)
    holder = db("SELECT holder FROM hutch_beat_lease")[0][0]
    active = first if f":{first.proc.pid}:" in holder else second

    with lease_row_locked(store_url):
        during = claimed(db, "tick")
        time.sleep(3.0)
        assert claimed(db, "tick") == during
    assert eventually(lambda: claimed(db, "tick") > during, 2 * POLL + 1)
    assert db("SELECT holder FROM hutch_beat_lease")[0][0] == holder  # no takeover
    assert sum(b.output().count('"beat active') for b in (first, second)) == 1

    set_lease(store_url, holder="intruder", expires_at=utcnow() + dt.timedelta(hours=1))
    taken_at = utcnow()
    active.wait_for("beat lease", timeout=2 * POLL + 2)  # lost / taken: standing by
    time.sleep(2 * POLL)
    late = db("SELECT count(*) FROM hutch_schedule_runs WHERE schedule_name = 'tick' "
              "AND claimed_at > :t", t=taken_at)[0][0]
    assert late == 0

    before = claimed(db, "tick")
    set_lease(store_url, holder="intruder", expires_at=utcnow())
    assert eventually(lambda: claimed(db, "tick") > before, POLL + 2)
    assert first.stop() == 0 and second.stop() == 0
    queued = queued_messages(amqp_url, topology_prefix)
    assert assert_each_run_sent_once(db, queued, "tick") == sent(db, "tick") == len(queued)
    assert not any(again for _, _, again in queued)


@pytest.mark.parametrize("store_url, pool", [("postgres", "prefork"), ("sqlite", "threads")],
                         indirect=["store_url"])
def test_worker_with_embedded_beat_next_to_a_beat(beat_env, beats, db, pool):
    """``worker -B`` runs the schedules (and their tasks); a ``hutch beat`` started next to
    it stands by: one active beat between them."""
    env = beat_env(TICK)
    worker = beats(env, "worker", "-B", "-P", pool, "-c", "1")
    worker.wait_for("beat active")
    beat = beats(env)
    beat.wait_for("beat ready")
    assert eventually(lambda: db("SELECT count(*) FROM hutch_tasks WHERE schedule_name = "
                                 "'tick' AND state = 'SUCCESS'")[0][0] >= 3, 20), \
        worker.output()[-3000:]
    assert "beat active" not in beat.output()
    assert beat.stop() == 0 and worker.stop() == 0
    runs = db("SELECT count(*), count(DISTINCT task_id) FROM hutch_schedule_runs "
              "WHERE schedule_name = 'tick'")[0]
    assert runs[0] == runs[1] == sent(db, "tick")
    assert db("SELECT count(*) FROM hutch_beat_lease WHERE expires_at > CURRENT_TIMESTAMP")[0][0] \
        in (0, 1)


def claimed(db, name):
    return db("SELECT count(*) FROM hutch_schedule_runs WHERE schedule_name = :n", n=name)[0][0]


def unsent(db, name):
    return db("SELECT count(*) FROM hutch_schedule_runs WHERE schedule_name = :n "
              "AND sent_at IS NULL", n=name)[0][0]


def due_gaps(db, name):
    """Seconds between consecutive claimed due times of ``name``."""
    dues = [as_datetime(d) for (d,) in db(
        "SELECT due_at FROM hutch_schedule_runs WHERE schedule_name = :n ORDER BY due_at",
        n=name)]
    return [(b - a).total_seconds() for a, b in zip(dues, dues[1:], strict=False)]


def assert_each_run_sent_once(db, queued, name):
    """Every claimed run of ``name`` is in the queue once, under its own task id, and no
    message of ``name`` is there unclaimed. A copy marked ``republished`` is allowed for
    a run whose beat was killed before it recorded the broker's confirm (docs/beat.md,
    "The crash window"): the worker drops it. Counted in RabbitMQ, not in hutch_tasks,
    whose PENDING rows a SIGKILLed beat may not have written yet."""
    runs = [task_id for (task_id,) in db(
        "SELECT task_id FROM hutch_schedule_runs WHERE schedule_name = :n", n=name)]
    copies = Counter((task_id, again) for task_id, schedule, again in queued
                     if schedule == name)
    assert len(runs) == len(set(runs)) == len({task_id for task_id, _ in copies}), name
    assert {task_id for task_id, _ in copies} == set(runs), name
    assert set(copies.values()) == {1}, [key for key, n in copies.items() if n > 1]
    assert sum(again for _, again in copies) <= 1, copies  # one beat killed: one run at most
    return len(runs)


def queued_messages(amqp_url, prefix):
    """Take every message off the test's ``celery`` queue: (task id, schedule, whether
    it is a republished copy)."""
    connection = pika.BlockingConnection(pika_parameters(amqp_url, Settings(), "test"))
    try:
        channel, out = connection.channel(), []
        while True:
            method, properties, _ = channel.basic_get(f"{prefix}.celery", auto_ack=True)
            if method is None:
                return out
            headers = properties.headers or {}
            out.append((headers["id"], headers.get("schedule_name"),
                        bool(headers.get("republished"))))
    finally:
        connection.close()


def set_lease(store_url, **values):
    """``UPDATE hutch_beat_lease SET ...`` as a DBA would, with the columns' own types."""
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(beat_lease).values(**values))
    finally:
        engine.dispose()


@contextmanager
def lease_row_locked(store_url):
    """Hold the lease row's lock (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the write
    lock) in an open transaction: every lease write waits, as behind a stalled one."""
    engine = make_engine(store_url)
    try:
        sqlite = engine.dialect.name == "sqlite"
        with engine.connect() as conn, conn.execution_options(
                sqlite_begin="BEGIN IMMEDIATE").begin():
            conn.execute(text("SELECT * FROM hutch_beat_lease" + ("" if sqlite else " FOR UPDATE")))
            yield
    finally:
        engine.dispose()


def _dialect(store_url):
    return "PostgreSQL" if store_url.startswith("postgresql") else "SQLite"


def _next_run(db, name):
    return as_datetime(db("SELECT next_run_at FROM hutch_schedules WHERE name = :n",
                           n=name)[0][0])
