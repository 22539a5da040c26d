"""A prefork worker whose database goes away (this session's private PostgreSQL,
stopped) stays alive, replaces no child in a storm, and works again when the database
is back (issue #11).

A child started while the database is away (here: the replacement of a child killed
during the outage) waits for it, as a running worker does, instead of failing at start
and being replaced over and over.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from apps.tasks import make_app
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.faults]

CONCURRENCY = 2
DOWN_SECONDS = 6.0


def _logged(worker, event: str) -> int:
    return sum(f'"event": "{event}' in line for line in worker.lines)


def test_prefork_worker_rides_out_a_database_outage_without_a_respawn_storm(
        private_rabbit, private_topology_prefix, private_postgres, private_postgres_url,
        fault_workers):
    app = make_app(private_rabbit.url, private_postgres_url,
                   topology_prefix=private_topology_prefix, task_track_pending=False)
    env = worker_env(private_rabbit.url, private_postgres_url, private_topology_prefix)
    worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
    try:
        worker.wait_ready(count=CONCURRENCY)
        assert app.tasks["tests.add"].delay(1, 1).get(timeout=30) == 2
        private_postgres.stop()
        results = [app.tasks["tests.add"].delay(i, 1) for i in range(6)]
        os.kill(int(worker.ready_lines()[0]["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        assert eventually(lambda: _logged(worker, "worker child exited") >= 1, timeout=30)
        time.sleep(DOWN_SECONDS)  # the outage goes on: the replacement keeps waiting
        private_postgres.start()
        assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(6)]
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert _logged(worker, "worker child exited") == 1, worker.output()[-3000:]
        assert _logged(worker, "result store unreachable: this worker process waits") == 1
        assert len(worker.ready_lines()) == CONCURRENCY + 1  # the replacement started once
        assert worker.stop() == 0
    finally:
        app.close()
