"""hutch.testing's fixtures pointed at the real RabbitMQ and PostgreSQL through
``hutch_config`` (isolated by this test's topology prefix and database): the worker
thread consumes from RabbitMQ and writes its rows to PostgreSQL."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def hutch_config(amqp_url, postgres_url, topology_prefix):
    return {"broker_url": amqp_url, "result_backend": postgres_url,
            "topology_prefix": topology_prefix}


def test_the_fixtures_run_tasks_on_rabbitmq_and_postgresql(hutch_app, hutch_worker):
    @hutch_app.task(name="fixtures.add")
    def add(x, y):
        return x + y

    assert hutch_app.conf.broker_url.startswith("amqp://")
    assert hutch_app.conf.result_backend.startswith("postgresql")
    results = [add.delay(i, i) for i in range(5)]
    assert [r.get(timeout=30) for r in results] == [0, 2, 4, 6, 8]
    row = hutch_app.client().store.get(results[0].id)
    assert row.state == "SUCCESS" and row.worker == hutch_worker.name
    assert row.queue == "celery"
    assert (add.s(1, 1) | add.s(2)).delay().get(timeout=30) == 4
