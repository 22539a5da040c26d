"""A soak (2,000 tasks in ``make test``, 50,000 in ``make faults``) through a prefork
worker with no fault at all: the baseline the other scenarios are read against, and the
worker's memory before and after."""

from __future__ import annotations

import pytest

from faults.accounting import process_tree, rss_mb

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

CONCURRENCY = 2


def test_soak(fault_world, ledger, scale, fault_workers):
    app, db = fault_world.app, fault_world.db
    worker = fault_workers(fault_world.env, pool="prefork", concurrency=CONCURRENCY)
    worker.wait_ready(count=CONCURRENCY)
    join = ledger.producers(app, scale.soak_tasks, threads=4)
    ledger.wait_runs(scale.soak_tasks // 10, timeout=120)  # warmed up
    before = rss_mb(process_tree(worker.proc.pid))
    join(3600)
    finished = ledger.wait_finished(db, timeout=max(120, scale.soak_tasks / 50))
    after = rss_mb(process_tree(worker.proc.pid))
    ledger.notes.update({"worker RSS MB before": before, "worker RSS MB after": after})
    report = ledger.account(db)
    assert finished, report.summary()
    report.assert_no_loss()
    assert report.run_twice == 0 and report.failed == 0, report.summary()
    assert after <= 1.5 * before + 30, f"worker memory grew from {before} to {after} MB"
