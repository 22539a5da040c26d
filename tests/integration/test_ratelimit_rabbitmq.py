"""rate_limit on the real RabbitMQ: tasks are spaced, others are not held up, long waits
sit in the delay ladder rather than in the worker, prefork children share the rate."""

from __future__ import annotations

import pytest

from support.processes import WorkerProc, worker_env
from support.rabbit import in_ladder_only, queue_counts
from support.waiting import eventually
from support.workers import running_worker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _starts(app, results) -> list[float]:
    """Start times (seconds after the first) of finished tasks, in order."""
    rows = app.client().store.get_many([r.id for r in results])
    stamps = sorted(row.started_at.timestamp() for row in rows.values())
    return [s - stamps[0] for s in stamps]


def test_rate_limited_tasks_are_spaced_and_do_not_block_others(app):
    limited, add = app.tasks["tests.limited"], app.tasks["tests.add"]  # limited: "2/s"
    with running_worker(app, pool="threads", concurrency=2):
        results = [limited.delay(i) for i in range(6)]
        other = add.delay(1, 1)
        assert other.get(timeout=20) == 2
        assert sorted(r.get(timeout=30) for r in results) == list(range(6))
    starts = _starts(app, results)
    # the k-th start is due k half-seconds after the first; a start the machine delayed
    # leaves the next one's time as it was, so one gap may be shorter than 0.5 s
    assert all(start >= 0.5 * k - 0.05 for k, start in enumerate(starts)), starts
    assert starts[-1] >= 2.45, starts
    # the unlimited task, sent after all six, did not queue behind them: it finished
    # before the last limited one began (waiting in a pool slot it would finish after)
    rows = app.client().store.get_many([r.id for r in results])
    first = min(row.started_at for row in rows.values())
    done = app.client().store.get(other.id).finished_at
    assert (done - first).total_seconds() < starts[-1], (done, first, starts)


def test_a_long_wait_goes_through_the_ladder_unacknowledged_nowhere(app, topology_prefix):
    # "6/m": one every 10 s, so the copy waits long enough in the ladder for a slow
    # rabbitmqctl (seconds under a loaded suite) to see it there
    slow = app.tasks["tests.limited_slow"]
    with running_worker(app, pool="threads", concurrency=2):
        first, second = slow.delay(1), slow.delay(2)
        assert first.get(timeout=20) == 1
        # the copy's publish is confirmed before the original is acked: the second one
        # waits in the ladder, nowhere else
        assert eventually(lambda: in_ladder_only(topology_prefix)), \
            queue_counts(topology_prefix)
        row = app.client().store.get(second.id)
        assert row.state in ("PENDING", "RECEIVED") and row.started_at is None, row
        assert second.get(timeout=20) == 2
    starts = _starts(app, [first, second])
    assert starts[1] >= 9.95, starts


def test_prefork_children_share_the_rate(app, amqp_url, postgres_url, topology_prefix):
    """-c 2 with "2/s": each child has 1/s, so at most one start per child in the first
    second and the worker as a whole keeps to 2/s."""
    proc = WorkerProc(worker_env(amqp_url, postgres_url, topology_prefix), pool="prefork",
                      concurrency=2).start()
    try:
        proc.wait_ready(count=2)
        results = [app.tasks["tests.limited"].delay(i) for i in range(6)]
        assert sorted(r.get(timeout=30) for r in results) == list(range(6))
    finally:
        assert proc.stop() == 0
    starts = _starts(app, results)
    assert sum(s < 0.9 for s in starts) <= 2, starts
    assert starts[-1] >= 1.9, starts

