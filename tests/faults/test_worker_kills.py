"""Workers SIGKILLed under load: no confirmed task is lost, a finished id never runs
again, and only tasks a killed process was running (or had run without committing
their outcome yet) run twice."""

from __future__ import annotations

import random
import time

import pytest

from apps.faults_app import register_fault_tasks
from apps.tasks import make_app
from faults.accounting import kill_tree
from support.processes import worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

CONCURRENCY = 2


def test_prefork_workers_sigkilled_under_load(private_rabbit, fresh_postgres_url,
                                              private_topology_prefix, ledger, scale,
                                              fault_workers):
    amqp_url, topology_prefix = private_rabbit.url, private_topology_prefix
    app = register_fault_tasks(make_app(amqp_url, fresh_postgres_url,
                                        topology_prefix=topology_prefix))
    env = worker_env(amqp_url, fresh_postgres_url, topology_prefix)
    worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
    try:
        worker.wait_ready(count=CONCURRENCY)
        join = ledger.producers(app, scale.kill_tasks, threads=2, seconds=0.005)
        per_round = scale.kill_tasks // (scale.kill_rounds + 1)
        for _ in range(scale.kill_rounds):
            ledger.wait_runs(per_round // 2)  # the worker is busy: now, mid-stream
            time.sleep(random.uniform(0, 0.2))
            ledger.killed.update(kill_tree(worker.proc.pid))
            worker.proc.wait(10)
            worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
        join(300)
        finished = ledger.wait_finished(fresh_postgres_url, timeout=120)
        ledger.notes["kills"] = scale.kill_rounds
        report = ledger.account(fresh_postgres_url)
        assert finished, report.summary()
        report.assert_no_loss()
        assert report.reruns_unexplained == 0, report.summary()
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        app.close()
