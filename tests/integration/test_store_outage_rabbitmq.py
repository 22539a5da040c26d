"""While the result database does not answer, a worker starts no new task (issue #10,
item 6): running tasks finish and wait to be recorded, prefetched ones wait, the
outage is logged once, and work resumes by itself when the database answers.

The outage is made on this test's own database only (``ALLOW_CONNECTIONS false`` and
its sessions terminated), so the shared PostgreSQL server keeps serving everyone else.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest
from sqlalchemy.engine import make_url

from apps.tasks import make_app, runs_of
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

TASKS = 40
SECONDS = 0.2
CONCURRENCY = 2


class Outage:
    """Makes one database refuse every connection, and answer again."""

    def __init__(self, server, url: str) -> None:
        self.server, self.name = server, make_url(url).database

    def begin(self) -> float:
        self.server._run(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false')
        self.server._run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()")
        return time.time()

    def end(self) -> None:
        self.server._run(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS true')


@pytest.fixture
def outage_world(amqp_url, fresh_postgres_url, postgres_server, topology_prefix, workers):
    app = make_app(amqp_url, fresh_postgres_url, topology_prefix=topology_prefix)
    outage = Outage(postgres_server, fresh_postgres_url)
    env = worker_env(amqp_url, fresh_postgres_url, topology_prefix)
    try:
        yield app, outage, env
    finally:
        outage.end()
        app.close()


def _logged(worker, event: str) -> list[dict]:
    lines = [json.loads(line) for line in worker.lines if line.startswith("{")]
    return [line for line in lines if line.get("event", "").startswith(event)]


def _outage_while_tasks_run(outage_world, workers, runs):
    """A prefork worker runs 40 tasks; the database goes away after a few: within 2.5 s
    (about 20 tasks' worth) at most the running ones start, and each child logs it."""
    app, outage, env = outage_world
    w = workers(env, pool="prefork", concurrency=CONCURRENCY)
    w.wait_ready(count=CONCURRENCY)
    results = [app.tasks["tests.record_run"].delay(str(runs), SECONDS) for _ in range(TASKS)]
    assert eventually(lambda: len(runs_of(runs)) >= 4, timeout=30), w.output()[-3000:]
    began = outage.begin()
    time.sleep(2.5)
    started_during = [r for r in runs_of(runs) if r[2] > began + 0.05]
    assert len(started_during) <= CONCURRENCY, started_during
    down = _logged(w, "result store unreachable")
    assert 1 <= len(down) <= CONCURRENCY, w.output()[-3000:]  # once per child process
    return w, results


def test_no_task_starts_while_the_database_is_down_and_work_resumes(outage_world, workers,
                                                                   tmp_path):
    runs = tmp_path / "runs"
    w, results = _outage_while_tasks_run(outage_world, workers, runs)
    outage_world[1].end()
    assert [r.get(timeout=60) for r in results] == [r.id for r in results]
    counts = Counter(task_id for task_id, _, _ in runs_of(runs))
    assert set(counts.values()) == {1}  # nothing ran twice: every outcome was kept
    assert 1 <= len(_logged(w, "result store answers again")) <= CONCURRENCY
    assert len(_logged(w, "result store unreachable")) <= CONCURRENCY  # not once per retry
    assert w.stop() == 0


def test_a_worker_killed_during_the_outage_repeats_at_most_its_running_tasks(
        outage_world, workers, tmp_path):
    app, outage, env = outage_world
    runs = tmp_path / "runs"
    w, results = _outage_while_tasks_run(outage_world, workers, runs)
    os.kill(w.proc.pid, signal.SIGKILL)  # its children die with it (PR_SET_PDEATHSIG)
    w.proc.wait(10)
    outage.end()
    second = workers(env, pool="prefork", concurrency=CONCURRENCY)
    second.wait_ready(count=CONCURRENCY)
    assert [r.get(timeout=60) for r in results] == [r.id for r in results]
    counts = Counter(task_id for task_id, _, _ in runs_of(runs))
    assert set(counts) == {r.id for r in results}
    repeated = [task_id for task_id, n in counts.items() if n > 1]
    # Per child: the task it was running, plus one it had finished whose outcome was
    # still in the commit the outage cut (docs/reliability.md); a busy machine makes
    # that commit slow enough to be caught. Never the prefetch (64 per child).
    assert len(repeated) <= 2 * CONCURRENCY, repeated
    assert max(counts.values()) <= 2
    assert second.stop() == 0
