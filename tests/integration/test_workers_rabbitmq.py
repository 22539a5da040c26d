"""Workers seen through their heartbeats (issue #13), on the real RabbitMQ and PostgreSQL.

Two prefork workers write their ``hutch_workers`` rows every 0.5 s: the rows say
what each worker is and its counts grow as its children finish tasks; a worker
killed with SIGKILL (supervisor and children at once, nothing left to write) reads
offline within about 3 intervals while the other stays online; a clean stop
writes offline itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest

from hutch.ops.workers import list_workers
from hutch.results.workers import OFFLINE, ONLINE, WorkerRecord
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

INTERVAL = 0.5


def _rows(app, *names: str) -> dict[str, WorkerRecord]:
    """The rows of these workers (the session's database holds other tests' rows too)."""
    return {r.hostname: r for r in list_workers(app.client().store) if r.hostname in names}


def _start(workers, env, name: str, queue: str, concurrency: int):
    w = workers({**env, "HUTCH_WORKER_HEARTBEAT_INTERVAL": str(INTERVAL)}, queues=(queue,),
                concurrency=concurrency, extra_args=("-n", name))
    w.wait_ready(count=concurrency)
    return w


def test_two_prefork_workers_are_seen_counted_and_go_offline(app, env, workers):
    tag = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{tag}@test", f"beta-{tag}@test"
    qa, qb = f"qa-{tag}", f"qb-{tag}"
    wa = _start(workers, env, alpha, qa, 2)
    wb = _start(workers, env, beta, qb, 1)

    rows = eventually(lambda: (r := _rows(app, alpha, beta)) and len(r) == 2 and r, 10)
    assert rows, wa.output()[-2000:]
    a, b = rows[alpha], rows[beta]
    assert (a.pool, a.concurrency, list(a.queues), a.state) == ("prefork", 2, [qa], ONLINE)
    assert (b.pool, b.concurrency, list(b.queues), b.state) == ("prefork", 1, [qb], ONLINE)
    assert a.pid == wa.proc.pid and b.pid == wb.proc.pid
    assert a.prefetch == 2 * app.conf.worker_prefetch_multiplier
    assert a.heartbeat_interval == INTERVAL and a.version and a.python_version
    assert a.rss_bytes and a.rss_bytes > 0 and a.loadavg_1 is not None
    assert eventually(lambda: _rows(app, alpha)[alpha].processes == 2, 5)

    # counts: a child's outcomes reach the supervisor's row
    done = [app.tasks["tests.add"].apply_async((i, i), queue=qa) for i in range(3)]
    failing = app.tasks["tests.fail"].apply_async(queue=qa)
    retrying = app.tasks["tests.flaky"].apply_async((1,), queue=qa)
    app.tasks["tests.add"].apply_async((5, 5), queue=qa, ignore_result=True)  # no row
    assert [r.get(timeout=30) for r in done] == [0, 2, 4]
    assert retrying.get(timeout=30) is not None
    failing.get(timeout=30, propagate=False)

    def counted():
        row = _rows(app, alpha)[alpha]
        return (row.processed, row.succeeded, row.failed, row.retried) == (7, 5, 1, 1) and row

    assert eventually(counted, 10), _rows(app, alpha)
    assert _rows(app, beta)[beta].processed == 0

    # SIGKILL of alpha's whole process group: nothing writes offline, yet it reads so
    wa.signal_group(signal.SIGKILL)
    killed = time.monotonic()
    wa.proc.wait(10)
    killed_at = _rows(app, alpha)[alpha].last_heartbeat_at
    gone = eventually(lambda: _rows(app, alpha)[alpha].state == OFFLINE, 3 * INTERVAL + 3)
    assert gone, _rows(app, alpha)
    assert time.monotonic() - killed < 3 * INTERVAL + 1  # its last write was < 1 interval old
    row = _rows(app, alpha)[alpha]
    assert row.stored_state == ONLINE and row.last_heartbeat_at == killed_at
    assert row.last_heartbeat_age > 3 * INTERVAL
    assert _rows(app, beta)[beta].state == ONLINE

    # the CLI reads the same rows
    listed = subprocess.run(
        [sys.executable, "-m", "hutch", "-A", "apps.env_app", "workers", "--json"],
        env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent, timeout=60)
    assert listed.returncode == 0, listed.stderr
    states = {w["hostname"]: w["state"] for w in json.loads(listed.stdout)}
    assert (states[alpha], states[beta]) == (OFFLINE, ONLINE)

    # a clean stop writes offline itself, at once
    assert wb.stop() == 0
    row = _rows(app, beta)[beta]
    assert (row.stored_state, row.state) == (OFFLINE, OFFLINE)


def test_a_threads_worker_writes_stopping_then_offline(app, env, workers, tmp_path):
    """A warm shutdown shows as stopping while the running task finishes."""
    name = f"threads-{uuid.uuid4().hex[:8]}@test"
    w = workers({**env, "HUTCH_WORKER_HEARTBEAT_INTERVAL": str(INTERVAL)}, pool="threads",
                concurrency=2, extra_args=("-n", name))
    w.wait_ready()
    assert eventually(lambda: _rows(app, name).get(name), 10)
    r = app.tasks["tests.sleep"].delay(3, str(tmp_path / "ran.txt"))
    store = app.client().store
    assert eventually(lambda: getattr(store.get(r.id), "state", None) == "STARTED", 20)
    w.signal(signal.SIGTERM)
    stopping = eventually(lambda: _rows(app, name)[name].stored_state == "stopping", 5)
    assert stopping, w.output()[-2000:]
    assert w.proc.wait(30) == 0
    row = _rows(app, name)[name]
    assert (row.stored_state, row.processed, row.succeeded) == (OFFLINE, 1, 1)
