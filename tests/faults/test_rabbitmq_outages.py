"""RabbitMQ restarted or crashed under load (this session's private node), producers
submitting with retry=True throughout: no confirmed task is lost and no finished id runs
again.

Nothing is killed here, so a second run of an id can only come from the outage itself:
a publish whose confirm was lost with the connection is sent again under the same id
(at most one per producer thread and outage), or a task a child was running when its
connection dropped is delivered again before its outcome is committed (at most one per
child and outage). Such runs are reported, and bounded by that.
"""

from __future__ import annotations

import pytest

from faults.conftest import LONG_MODE

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

CONCURRENCY = 2
PRODUCERS = 2
DOWN_SECONDS = 2.0


@pytest.mark.parametrize("how", ["stop_app", "kill", *(["stop"] if LONG_MODE else [])])
def test_rabbitmq_outages_under_load(how, private_rabbit, fault_world, ledger, scale,
                                     fault_workers):
    app, db = fault_world.app, fault_world.db
    worker = fault_workers(fault_world.env, pool="prefork", concurrency=CONCURRENCY)
    worker.wait_ready(count=CONCURRENCY)
    join = ledger.producers(app, scale.outage_tasks, threads=PRODUCERS, seconds=0.005)
    per_outage = scale.outage_tasks // (scale.outages + 1)
    for _ in range(scale.outages):
        ledger.wait_runs(per_outage // 2)
        private_rabbit.outage(how, DOWN_SECONDS)
    join(300)
    finished = ledger.wait_finished(db, timeout=120)
    ledger.notes["outages"] = f"{scale.outages} x {how}"
    report = ledger.account(db)
    assert finished, report.summary()
    report.assert_no_loss()
    assert report.failed == 0, report.summary()
    bound = (PRODUCERS + CONCURRENCY) * scale.outages
    assert report.reruns_unexplained <= bound, report.summary()
    assert worker.proc.poll() is None, worker.output()[-3000:]
