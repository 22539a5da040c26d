"""Beat against real RabbitMQ and each database: config sync, runtime edits by CLI and
plain SQL, two beats with takeover after SIGKILL, and ``worker -B``."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text, update

from apps.tasks import make_app
from hutch.beat.models import schedules
from hutch.results.migrate import upgrade
from hutch.results.models import make_engine
from support.processes import TESTS_DIR, WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

FAST = {"HUTCH_BEAT_POLL_INTERVAL": "0.5", "HUTCH_BEAT_LEASE_SECONDS": "3"}
TAKEOVER_WITHIN = 15.0
"""The issue's bound for a standby to take over from a killed beat (default settings:
lease 10 s + one poll of 1 s)."""
TICK = {"tick": {"task": "tests.add", "every": 1, "args": [1, 2]}}


class BeatProc(WorkerProc):
    """``hutch -A apps.beat_app beat`` (or a worker with -B) as a subprocess."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__(env)
        self.args = [sys.executable, "-m", "hutch", "-A", "apps.beat_app", "--log-format",
                     "json", *(args or ("beat",))]

    def wait_for(self, event: str, timeout: float = 30) -> None:
        if not eventually(lambda: any(f'"{event}' in line for line in self.lines), timeout):
            raise AssertionError(f"no {event!r} in:\n" + self.output()[-3000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


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
    than 5 s after it (watched until 1.5 s past that bound), and every run claimed
    reached hutch_tasks."""
    time.sleep(max(0.0, (changed_at - utcnow()).total_seconds() + APPLIES_WITHIN + 1.5))
    claimed = [_as_datetime(c) for (c,) in db(
        "SELECT claimed_at FROM hutch_schedule_runs WHERE schedule_name = :n", n=name)]
    late = [c for c in claimed if c > changed_at + dt.timedelta(seconds=APPLIES_WITHIN)]
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


def test_two_beats_one_active_and_takeover_after_sigkill(beat_env, beats, db, store_url):
    """At the default lease (10 s) and poll (1 s): one beat sends; SIGKILL it and the other
    is active within 15 s. "tick" (every second) is never sent twice; "slow" (every 15 s,
    longer than a takeover) misses no run at all."""
    env = beat_env({**TICK, "slow": {"task": "tests.add", "every": 15, "args": [4, 4]}},
                   settings={})
    first, second = beats(env), beats(env)
    first.wait_for("beat ready"), second.wait_for("beat ready")
    assert eventually(lambda: sent(db, "tick") >= 2, 15)
    set_next_run(store_url, "slow", utcnow() + dt.timedelta(seconds=1))
    assert eventually(lambda: sent(db, "slow") == 1, 10)
    holder = db("SELECT holder FROM hutch_beat_lease")[0][0]
    active, standby = (first, second) if f":{first.proc.pid}:" in holder else (second, first)
    assert "beat active" not in standby.output()
    active.kill()
    killed_at = time.monotonic()
    assert eventually(lambda: "beat active" in standby.output(), TAKEOVER_WITHIN)
    print(f"takeover after {time.monotonic() - killed_at:.1f} s")
    assert eventually(lambda: sent(db, "slow") == 2, 20)  # due 15 s after the first
    before = sent(db, "tick")
    assert eventually(lambda: sent(db, "tick") >= before + 2, 10)
    assert standby.stop() == 0

    standby_id = db("SELECT holder FROM hutch_beat_lease")[0][0]
    for name in ("tick", "slow"):
        runs = db("SELECT r.due_at, r.claimed_by, count(t.task_id) FROM hutch_schedule_runs r "
                  "LEFT JOIN hutch_tasks t ON t.task_id = r.task_id "
                  "WHERE r.schedule_name = :n GROUP BY r.due_at, r.claimed_by "
                  "ORDER BY r.due_at", n=name)
        assert all(count == 1 for _, _, count in runs)  # each claimed run reached hutch_tasks
        assert sent(db, name) == len(runs)              # once, and nothing went unclaimed
        claimers = [by for _, by, _ in runs]
        # one active beat at a time: the killed one's runs, then the standby's, never mixed
        assert claimers == sorted(claimers, key=lambda by: by == standby_id), claimers
        assert claimers[-1] == standby_id and claimers[0] != standby_id
    slow = [_as_datetime(due) for due, _, _ in db(
        "SELECT due_at, 1, 1 FROM hutch_schedule_runs WHERE schedule_name = 'slow' "
        "ORDER BY due_at")]
    assert [(b - a).total_seconds() for a, b in zip(slow, slow[1:], strict=False)] == [15.0]
    ticks = [_as_datetime(due) for (due,) in db(
        "SELECT due_at FROM hutch_schedule_runs WHERE schedule_name = 'tick' ORDER BY due_at")]
    gaps = [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False)]
    # on the one-second grid, never twice; the runs missed while no beat was active are
    # sent once (not once per second), and the log says it caught up
    assert all(g >= 1.0 and g == int(g) for g in gaps) and max(gaps) <= TAKEOVER_WITHIN + 1
    catch_ups = first.output().count("caught up") + second.output().count("caught up")
    assert 1 <= sum(1 for g in gaps if g != 1.0) <= catch_ups


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


def _next_run(db, name):
    return _as_datetime(db("SELECT next_run_at FROM hutch_schedules WHERE name = :n",
                           n=name)[0][0])


def _as_datetime(value):
    """A datetime column as read by plain SQL: aware on PostgreSQL, UTC text on SQLite."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
