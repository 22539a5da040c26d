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
from sqlalchemy import text

from apps.tasks import make_app
from hutch.results.migrate import upgrade
from hutch.results.models import make_engine
from support.processes import TESTS_DIR, WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

FAST = {"HUTCH_BEAT_POLL_INTERVAL": "0.5", "HUTCH_BEAT_LEASE_SECONDS": "3"}
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
    def make(schedule=None, **extra):
        return worker_env(amqp_url, store_url, topology_prefix, **FAST,
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


def sent(db, name):
    """Tasks in hutch_tasks sent by schedule ``name``."""
    return db("SELECT count(*) FROM hutch_tasks WHERE schedule_name = :n", n=name)[0][0]


def assert_stopped(db, name):
    """No new run of ``name`` after one poll (a run claimed just before may still land)."""
    time.sleep(1.0)
    settled = sent(db, name)
    time.sleep(1.5)
    assert sent(db, name) == settled


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
    assert beat.stop() == 0 and worker.stop() == 0


def test_runtime_edits_by_cli_and_plain_sql_apply_within_5s(beat_env, beats, db):
    env = beat_env()
    beat = beats(env)
    beat.wait_for("beat active")
    out = hutch(env, "schedule", "add", "edited", "--task", "tests.add", "--every", "1s",
                "--args", "[2, 2]")
    assert out.returncode == 0, out.stderr
    assert eventually(lambda: sent(db, "edited") >= 1, 5)

    assert hutch(env, "schedule", "disable", "edited").returncode == 0
    assert_stopped(db, "edited")

    db("UPDATE hutch_schedules SET enabled = true WHERE name = 'edited'")
    settled = sent(db, "edited")
    assert eventually(lambda: sent(db, "edited") > settled, 5)
    db("UPDATE hutch_schedules SET enabled = false WHERE name = 'edited'")
    assert_stopped(db, "edited")

    assert beat.stop() == 0  # CLI refusals and edits: tests/unit/test_beat_cli.py


def test_two_beats_one_active_and_takeover_after_sigkill(beat_env, beats, db):
    env = beat_env(TICK)
    first, second = beats(env), beats(env)
    first.wait_for("beat ready"), second.wait_for("beat ready")
    assert eventually(lambda: sent(db, "tick") >= 3, 15)
    holder = db("SELECT holder FROM hutch_beat_lease")[0][0]
    active, standby = (first, second) if f":{first.proc.pid}:" in holder else (second, first)
    assert "beat active" not in standby.output()
    active.kill()
    killed_at = time.monotonic()
    assert eventually(lambda: "beat active" in standby.output(), 15)
    print(f"takeover after {time.monotonic() - killed_at:.1f} s")
    before = sent(db, "tick")
    assert eventually(lambda: sent(db, "tick") >= before + 3, 10)
    assert standby.stop() == 0

    runs = db("SELECT r.due_at, count(t.task_id) FROM hutch_schedule_runs r LEFT JOIN "
              "hutch_tasks t ON t.task_id = r.task_id WHERE r.schedule_name = 'tick' "
              "GROUP BY r.due_at ORDER BY r.due_at")
    assert all(count == 1 for _, count in runs)  # every claimed run reached hutch_tasks once
    assert sent(db, "tick") == len(runs)          # and nothing was sent unclaimed
    dues = [_as_datetime(due) for due, _ in runs]
    gaps = [(b - a).total_seconds() for a, b in zip(dues, dues[1:], strict=False)]
    # on the one-second grid, never twice; runs missed during the takeover (or while a
    # beat on a loaded machine fell behind) are sent once, and the log says it caught up
    assert all(g >= 1.0 and g == int(g) for g in gaps) and max(gaps) <= 16
    catch_ups = first.output().count("caught up") + second.output().count("caught up")
    assert sum(1 for g in gaps if g != 1.0) <= catch_ups


@pytest.mark.parametrize("store_url, pool", [("postgres", "prefork"), ("sqlite", "threads")],
                         indirect=["store_url"])
def test_worker_with_embedded_beat(beat_env, beats, db, pool):
    env = beat_env(TICK)
    worker = beats(env, "worker", "-B", "-P", pool, "-c", "1")
    assert eventually(lambda: db("SELECT count(*) FROM hutch_tasks WHERE schedule_name = "
                                 "'tick' AND state = 'SUCCESS'")[0][0] >= 2, 20), \
        worker.output()[-3000:]
    assert worker.stop() == 0
    assert db("SELECT count(*) FROM hutch_beat_lease WHERE expires_at > CURRENT_TIMESTAMP")[0][0] \
        in (0, 1)


def _as_datetime(value):
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
