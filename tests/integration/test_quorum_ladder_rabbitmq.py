"""The quorum delay ladder on the real RabbitMQ (issue #17): ``delay_queue_type=quorum``
(or ``task_queue_type=quorum``, which it follows) declares ``P.delay.quorum.*`` as
quorum queues; countdowns wait in them, are never early and run within a second of
due; the dashboard's delayed count sees them; the classic ladder is not declared."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from apps.tasks import make_app
from support.processes import WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def queue_types(prefix: str) -> dict[str, str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "type",
                          "--no-table-headers"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return {name: kind for name, kind in (line.split() for line in out.splitlines())
            if name.startswith(prefix + ".")}


def test_countdowns_wait_in_quorum_queues_and_run_on_time(amqp_url, postgres_url,
                                                          topology_prefix):
    """(That task_queue_type=quorum alone gives the quorum ladder: tests/unit/test_ladder.py.)"""
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix,
                   delay_queue_type="quorum")
    env = {"HUTCH_DELAY_QUEUE_TYPE": "quorum"}
    worker = WorkerProc(worker_env(amqp_url, postgres_url, topology_prefix, **env),
                        pool="threads", concurrency=4).start()
    try:
        worker.wait_ready()
        broker = app.client().broker
        broker.declare(["celery"])
        types = queue_types(topology_prefix)
        ladder = {name: kind for name, kind in types.items() if ".delay." in name}
        assert len(ladder) == 71 and set(ladder.values()) == {"quorum"}
        assert all(name.startswith(f"{topology_prefix}.delay.quorum.") for name in ladder)
        sent = [(dt.datetime.now(dt.timezone.utc), countdown,
                 app.tasks["tests.add"].apply_async((i, i), countdown=countdown))
                for i, countdown in enumerate([0.3, 1.3, 2.5, 2.5])]
        assert eventually(lambda: broker.delayed_count() >= 1, 2), "counted while waiting"
        for before, countdown, r in sent:
            r.get(timeout=30)
            row = app.client().store.get(r.id)
            assert (row.started_at - before).total_seconds() >= countdown, "never early"
            lateness = (row.started_at - row.eta).total_seconds()
            assert 0 <= lateness < 1.0, (countdown, lateness)
        assert broker.delayed_count() == 0
    finally:
        worker.stop()
        app.close()
