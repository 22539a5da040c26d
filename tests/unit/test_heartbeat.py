"""Worker heartbeats (issue #13) without a broker: the effective state read from a row,
the outcome counts shared across processes, the writer thread on a real SQLite
database (including a database that refuses the write), and ``hutch workers``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from sqlalchemy import text

from hutch.config import Settings
from hutch.errors import ConfigurationError
from hutch.ops.workers import list_workers, state_counts
from hutch.results.records import FAILURE, RECEIVED, RETRY, REVOKED, STARTED, SUCCESS
from hutch.results.store import ResultStore
from hutch.results.workers import (
    OFFLINE,
    ONLINE,
    STOPPING,
    WorkerBeat,
    WorkerStore,
    effective_state,
)
from hutch.worker.counters import Counters, Tally
from hutch.worker.heartbeat import Heartbeat, Layout, hutch_version, rss_bytes
from support.logs import capture_logs
from support.waiting import eventually

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 6, 12, 0, tzinfo=UTC)


def after(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# -- effective state ------------------------------------------------------------------


@pytest.mark.parametrize(("stored", "silent", "expected"), [
    (ONLINE, 0.0, ONLINE),
    (ONLINE, 14.9, ONLINE),
    (ONLINE, 15.0, ONLINE),  # exactly 3 intervals: not yet
    (ONLINE, 15.1, OFFLINE),
    (STOPPING, 10.0, STOPPING),
    (STOPPING, 16.0, OFFLINE),  # killed during its warm shutdown
    (OFFLINE, 0.0, OFFLINE),
    (ONLINE, -2.0, ONLINE),  # a reader whose clock is behind
])
def test_a_worker_silent_for_three_intervals_reads_offline(stored, silent, expected):
    assert effective_state(stored, T0, 5.0, after(silent)) == expected


def test_the_interval_is_the_workers_own():
    assert effective_state(ONLINE, T0, 0.5, after(2)) == OFFLINE
    assert effective_state(ONLINE, T0, 60.0, after(120)) == ONLINE


# -- counts ---------------------------------------------------------------------------


def test_outcomes_are_counted_by_state():
    counters = Counters()
    for state in (RECEIVED, STARTED, SUCCESS, SUCCESS, FAILURE, RETRY, REVOKED):
        counters.outcome(state)
    assert counters.snapshot() == {"processed": 5, "succeeded": 2, "failed": 1, "retried": 1}


def test_children_count_into_the_supervisors_tally():
    """Each forked process adds to its own row; the parent reads the sum, and a
    replacement child goes on adding to the row of the child it replaces."""
    tally = Tally(3)
    mine = Counters(tally.row(2))
    mine.outcome(FAILURE)
    for index, states in ((0, [SUCCESS, SUCCESS, RETRY]), (1, [FAILURE]), (0, [SUCCESS])):
        pid = os.fork()
        if pid == 0:
            counters = Counters(tally.row(index))
            for state in states:
                counters.outcome(state)
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
    assert tally.totals() == {"processed": 6, "succeeded": 3, "failed": 2, "retried": 1}
    counters = Counters(tally.row(1))
    counters.add("duplicates_skipped")  # not an outcome: stays in the process
    assert tally.totals()["processed"] == 6
    tally.row(7)  # the pool grew: a new row, made before the fork, starts at zero
    assert tally.totals()["processed"] == 6


# -- the writer, on SQLite ------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        yield store


def _beat(**values) -> WorkerBeat:
    base = WorkerBeat(hostname="w@h", pid=1, version="1", pool="threads", concurrency=4,
                      processes=1, queues=["celery"], prefetch=256, state=ONLINE,
                      heartbeat_interval=5.0, started_at=T0)
    return replace(base, **values)


def test_one_row_per_worker_rewritten_by_each_heartbeat(store):
    workers = WorkerStore(store)
    workers.beat(_beat(processed=1))
    workers.beat(_beat(processed=7, state=STOPPING, queues=["a", "b"]))
    workers.beat(_beat(hostname="other@h"))
    rows = {r.hostname: r for r in workers.workers()}
    assert sorted(rows) == ["other@h", "w@h"]
    row = rows["w@h"]
    assert (row.processed, row.state, row.stored_state, list(row.queues)) == (
        7, STOPPING, STOPPING, ["a", "b"])
    assert row.last_heartbeat_age < 5 and row.last_heartbeat_at > T0
    assert json.loads(json.dumps(row.as_dict()))["started_at"] == T0.isoformat()


def test_a_silent_row_reads_offline_and_goes_after_the_retention(store):
    workers = WorkerStore(store)
    workers.beat(_beat())
    old = dt.datetime.now(UTC) - dt.timedelta(days=8)
    store.transaction("age", lambda c: c.execute(text(
        "UPDATE hutch_workers SET last_heartbeat_at = :old"), {"old": old.isoformat(" ")}))
    (row,) = list_workers(store)
    assert (row.stored_state, row.state) == (ONLINE, OFFLINE)
    assert state_counts([row]) == {ONLINE: 0, STOPPING: 0, OFFLINE: 1}
    assert list_workers(store, ONLINE) == []
    with pytest.raises(ValueError):
        list_workers(store, "asleep")
    assert workers.delete_gone(dt.datetime.now(UTC) - dt.timedelta(days=9), 10) == 0
    assert workers.delete_gone(dt.datetime.now(UTC) - dt.timedelta(days=7), 10) == 1
    assert workers.workers() == []


def _heartbeat(store, state, counts, interval=0.05) -> Heartbeat:
    return Heartbeat(store, Layout("hb@test", "threads", 2, ["q1", "q2"], 128, "proj"),
                     interval, state=lambda: state[0], counts=lambda: dict(counts))


def test_the_heartbeat_writes_online_then_stopping_then_offline(store):
    state, counts = [ONLINE], {"processed": 0}
    heartbeat = _heartbeat(store, state, counts).start()
    workers = WorkerStore(store)
    first = eventually(lambda: workers.workers(), 5)
    row = first[0]
    assert (row.hostname, row.pid, row.app, row.pool, row.concurrency, list(row.queues),
            row.prefetch, row.state, row.processes) == (
        "hb@test", os.getpid(), "proj", "threads", 2, ["q1", "q2"], 128, ONLINE, 1)
    assert row.version == hutch_version() and row.python_version and row.platform
    assert row.rss_bytes and row.rss_bytes > 1024 * 1024
    counts["processed"] = 3
    assert eventually(lambda: workers.workers()[0].processed == 3, 5)
    state[0] = STOPPING
    assert eventually(lambda: workers.workers()[0].stored_state == STOPPING, 5)
    heartbeat.stop()
    assert workers.workers()[0].stored_state == OFFLINE


def test_a_second_live_worker_with_the_same_name_is_warned_about(store):
    WorkerStore(store).beat(_beat(hostname="hb@test", pid=os.getpid() + 1))
    with capture_logs() as events:
        heartbeat = _heartbeat(store, [ONLINE], {}).start()
        assert eventually(lambda: WorkerStore(store).workers()[0].pid == os.getpid(), 5)
        heartbeat.stop()
    (warning,) = [e for e in events if "another worker" in e["event"]]
    assert warning["other_pid"] == os.getpid() + 1
    WorkerStore(store).beat(_beat(hostname="hb@test", pid=os.getpid() + 1, state=OFFLINE))
    with capture_logs() as events:  # a restart after a clean stop: no warning
        _heartbeat(store, [ONLINE], {}).start().stop()
    assert not [e for e in events if "another worker" in e["event"]]


def test_a_refused_heartbeat_is_logged_once_and_retried(store):
    """The database loses the table: the worker goes on, says so once, and its row
    comes back at the next interval once the table is back."""
    state = [ONLINE]
    workers = WorkerStore(store)
    with capture_logs() as events:
        heartbeat = _heartbeat(store, state, {}).start()
        assert eventually(lambda: workers.workers(), 5)
        store.transaction("hide", lambda c: c.execute(text(
            "ALTER TABLE hutch_workers RENAME TO workers_away")))
        assert eventually(lambda: any("not written" in e["event"] for e in events), 5)
        assert heartbeat._thread.is_alive()
        store.transaction("restore", lambda c: c.execute(text(
            "ALTER TABLE workers_away RENAME TO hutch_workers")))
        assert eventually(lambda: any("written again" in e["event"] for e in events), 5)
        heartbeat.stop()
    assert sum("not written" in e["event"] for e in events) == 1
    assert workers.workers()[0].stored_state == OFFLINE


def test_rss_of_processes_that_exist():
    assert rss_bytes([os.getpid()]) > 0
    assert rss_bytes([os.getpid(), 2**22 + 1]) > 0  # one gone meanwhile counts nothing
    assert rss_bytes([2**22 + 1]) is None


# -- settings and the CLI -------------------------------------------------------------


def test_heartbeat_settings_are_validated():
    conf = Settings()
    assert (conf.worker_heartbeat_interval, conf.worker_heartbeat_retention) == (5.0, 604800.0)
    conf.worker_heartbeat_retention = dt.timedelta(days=1)
    assert conf.worker_heartbeat_retention == 86400.0
    for bad in (0, -1, "soon", True):
        with pytest.raises(ConfigurationError, match="worker_heartbeat_interval"):
            conf.worker_heartbeat_interval = bad
    conf.apply_environment({"HUTCH_WORKER_HEARTBEAT_INTERVAL": "0.5",
                            "HUTCH_WORKER_HEARTBEAT_RETENTION": "3600"})
    assert (conf.worker_heartbeat_interval, conf.worker_heartbeat_retention) == (0.5, 3600.0)


def test_hutch_workers_lists_rows_and_exits_0(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}

    def hutch(*args):
        return subprocess.run([sys.executable, "-m", "hutch", "--backend", url, "workers",
                               *args], capture_output=True, text=True, timeout=60, env=env)

    empty = hutch()
    assert empty.returncode == 0 and "0 online, 0 stopping, 0 offline" in empty.stderr
    with ResultStore(url) as store:
        WorkerStore(store).beat(_beat(rss_bytes=3 * 1024 * 1024, loadavg_1=0.5))
    table = hutch()
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()
    assert header.split()[:3] == ["HOSTNAME", "STATE", "POOL"]
    assert line.split()[:5] == ["w@h", "online", "threads", "4", "celery"]
    assert "3.0MiB" in line and "1 online" in table.stderr
    listed = hutch("--json")
    assert listed.returncode == 0
    (row,) = json.loads(listed.stdout)
    assert (row["hostname"], row["state"], row["stored_state"], row["rss_bytes"]) == (
        "w@h", "online", "online", 3 * 1024 * 1024)
    assert json.loads(hutch("--json", "--state", "offline").stdout) == []
