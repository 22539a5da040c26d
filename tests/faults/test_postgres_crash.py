"""PostgreSQL crashed (``stop -m immediate``) and started again while a worker runs tasks
(this session's private cluster holds the results; RabbitMQ is the shared one).

Without a kill nothing may run twice: outcomes wait for the database and are committed
when it is back. With the worker SIGKILLed during the outage (issue #10, item 6), only
the tasks it was running may run again, at most ``concurrency`` of them: a worker whose
result store is unreachable starts no new tasks, so its prefetched ones are not at risk.
"""

from __future__ import annotations

import time

import pytest

from apps.faults_app import register_fault_tasks
from apps.tasks import make_app
from faults.accounting import kill_tree
from support.processes import worker_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.faults]

CONCURRENCY = 2
DOWN_SECONDS = 4.0


@pytest.mark.parametrize("kill_worker", [False, True], ids=["worker_survives", "worker_killed"])
def test_postgres_crash_while_a_worker_runs_tasks(kill_worker, amqp_url, topology_prefix,
                                                  private_postgres, private_postgres_url,
                                                  ledger, scale, fault_workers):
    db = private_postgres_url
    app = register_fault_tasks(make_app(amqp_url, db, topology_prefix=topology_prefix,
                                        task_track_pending=False))
    env = worker_env(amqp_url, db, topology_prefix)
    worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
    try:
        worker.wait_ready(count=CONCURRENCY)
        ledger.producers(app, scale.pg_tasks, threads=2, seconds=0.01)(120)  # all queued
        ledger.wait_runs(scale.pg_tasks // 4)
        private_postgres.crash()
        time.sleep(DOWN_SECONDS / 2)
        if kill_worker:
            ledger.killed.update(kill_tree(worker.proc.pid))
            worker.proc.wait(10)
        time.sleep(DOWN_SECONDS / 2)
        private_postgres.start()
        if kill_worker:  # a worker refuses to start without its database
            worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
        finished = ledger.wait_finished(db, timeout=120)
        ledger.notes["database down"] = f"{DOWN_SECONDS:g} s"
        report = ledger.account(db)
        assert finished, report.summary()
        report.assert_no_loss()
        assert report.failed == 0 and report.reruns_unexplained == 0, report.summary()
        assert report.reruns_after_kill <= CONCURRENCY, report.summary()
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        app.close()
