"""Workers SIGKILLed under load: no confirmed task is lost, a finished id never runs
again, and only tasks a killed process was running (or had run without committing
their outcome yet) run twice."""

from __future__ import annotations

import random
import time

import pytest

from faults.accounting import kill_tree

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

CONCURRENCY = 2


def test_prefork_workers_sigkilled_under_load(fault_world, ledger, scale, fault_workers):
    app, db, env = fault_world.app, fault_world.db, fault_world.env
    worker = fault_workers(env, pool="prefork", concurrency=CONCURRENCY)
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
    finished = ledger.wait_finished(db, timeout=120)
    ledger.notes["kills"] = scale.kill_rounds
    report = ledger.account(db)
    assert finished, report.summary()
    report.assert_no_loss()
    assert report.reruns_unexplained == 0, report.summary()
    assert worker.proc.poll() is None, worker.output()[-3000:]
