"""A RabbitMQ restart while a client keeps submitting with retry=True loses no confirmed task.

Runs on this session's private RabbitMQ node (support.servers): the machine's
shared broker is never stopped.
"""

from __future__ import annotations

import threading
import time

import pytest

from apps.tasks import make_app
from support.processes import WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

POLICY = {"max_retries": 120, "interval_start": 0.25, "interval_step": 0.25, "interval_max": 1.0}


def test_rabbitmq_restart_loses_no_confirmed_task(private_rabbit, postgres_url,
                                                  private_topology_prefix):
    url, prefix = private_rabbit.url, private_topology_prefix
    app = make_app(url, postgres_url, topology_prefix=prefix)
    worker = WorkerProc(worker_env(url, postgres_url, prefix), pool="prefork",
                        concurrency=2).start()
    try:
        worker.wait_ready(count=2)
        confirmed: list = []
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                for i in range(400):
                    confirmed.append(app.tasks["tests.add"].apply_async(
                        (i, 1), retry=True, retry_policy=POLICY))
                    time.sleep(0.01)
            except BaseException as exc:
                errors.append(exc)

        producer = threading.Thread(target=produce)
        producer.start()
        assert eventually(lambda: len(confirmed) >= 50, 30)  # the outage comes mid-stream
        private_rabbit.stop_app()
        time.sleep(2.0)
        private_rabbit.start_app()
        producer.join(180)
        assert not errors, errors
        assert len(confirmed) == 400
        assert [r.get(timeout=120) for r in confirmed] == [i + 1 for i in range(400)]
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop(timeout=60)
        app.close()
