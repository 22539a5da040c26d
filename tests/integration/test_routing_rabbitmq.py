"""task_routes on the real RabbitMQ and PostgreSQL: a routed task is published to its
route's queue (declared on first use), and a worker consuming only that queue runs it."""

from __future__ import annotations

import pytest

from apps.tasks import make_app
from support.rabbit import queue_counts
from support.workers import running_worker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_task_routes_send_a_task_to_its_queue_where_a_worker_runs_it(amqp_url, postgres_url,
                                                                      topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix,
                   task_routes=[lambda name, *a, **k: "ignored" if name == "x" else None,
                                {"tests.m*": {"queue": "routed"}}])
    try:
        mul = app.tasks["tests.mul"]
        waiting = mul.delay(6, 7)
        app.client().flush()
        counts = queue_counts(topology_prefix)
        assert counts[f"{topology_prefix}.routed"] == (1, 0)  # published to the route
        assert f"{topology_prefix}.celery" not in counts  # the default queue was never used
        with running_worker(app, queues=["routed"]):
            assert waiting.get(timeout=30) == 42
            assert mul.delay(2, 3).get(timeout=30) == 6
        assert app.client().store.get(waiting.id).queue == "routed"
    finally:
        app.close()
