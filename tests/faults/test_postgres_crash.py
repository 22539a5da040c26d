"""PostgreSQL crashed (``stop -m immediate``) and started again while a worker runs tasks
(this session's private cluster holds the results).

A worker whose result store does not answer starts no new task (issue #10, item 6): at
most one per child starts once the database is gone. Without a kill nothing may run
twice: outcomes wait for the database and are committed when it is back. With the worker
SIGKILLed during the outage, what runs again is what each child was running or had run
without its outcome committed yet when the database went (one task and at most one
more, the tasks being longer than the recorder's 50 ms batching); never its prefetch.
"""

from __future__ import annotations

import time

import pytest

from apps.faults_app import register_fault_tasks
from apps.tasks import make_app
from faults.accounting import kill_tree
from support.processes import worker_env

pytestmark = [pytest.mark.faults]

CONCURRENCY = 2
DOWN_SECONDS = 4.0
TASK_SECONDS = 0.1


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kill_worker", [False, True], ids=["worker_survives", "worker_killed"])
def test_postgres_crash_while_a_worker_runs_tasks(kill_worker, private_rabbit,
                                                  private_topology_prefix, private_postgres,
                                                  private_postgres_url, ledger, scale,
                                                  fault_workers):
    amqp_url, topology_prefix = private_rabbit.url, private_topology_prefix
    db = private_postgres_url
    app = register_fault_tasks(make_app(amqp_url, db, topology_prefix=topology_prefix,
                                        task_track_pending=False))
    env = worker_env(amqp_url, db, topology_prefix)
    worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
    try:
        worker.wait_ready(count=CONCURRENCY)
        ledger.producers(app, scale.pg_tasks, threads=2, seconds=TASK_SECONDS)(120)  # queued
        ledger.wait_runs(scale.pg_tasks // 4)
        private_postgres.crash()
        crashed = time.time()
        time.sleep(DOWN_SECONDS / 2)
        if kill_worker:
            ledger.killed.update(kill_tree(worker.proc.pid))
            worker.proc.wait(10)
        time.sleep(DOWN_SECONDS / 2)
        private_postgres.start()
        if kill_worker:  # a worker refuses to start without its database
            worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
        started_down = sum(1 for r in ledger.runs() if crashed < r.started < crashed + DOWN_SECONDS)
        finished = ledger.wait_finished(db, timeout=120)
        ledger.notes.update({"database down s": DOWN_SECONDS, "runs begun while down":
                             started_down})
        report = ledger.account(db)
        assert finished, report.summary() + "\n" + worker.output()[-6000:]
        report.assert_no_loss()
        assert report.failed == 0 and report.reruns_unexplained == 0, report.summary()
        assert started_down <= CONCURRENCY, report.summary()
        assert report.reruns_after_kill <= 2 * CONCURRENCY, report.summary()
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        app.close()
