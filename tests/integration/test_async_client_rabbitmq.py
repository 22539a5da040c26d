"""AsyncClient on the real RabbitMQ (aio-pika, confirms) with results in PostgreSQL."""

import asyncio

import pytest

from apps.tasks import CustomError, make_app
from hutch import AsyncClient
from support.async_workflows import WORKFLOW_RESULTS, send_and_await_workflows
from support.processes import WorkerProc, worker_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_async_client_submits_and_awaits_results(amqp_url, postgres_url, topology_prefix):
    worker = WorkerProc(worker_env(amqp_url, postgres_url, topology_prefix), pool="asyncio",
                        concurrency=8).start()

    async def scenario():
        async with AsyncClient(broker=amqp_url, backend=postgres_url,
                               topology_prefix=topology_prefix) as client:
            results = await asyncio.gather(*(client.submit("tests.add", i, 1) for i in range(50)))
            values = await asyncio.gather(*(r.get(timeout=30) for r in results))
            slow = await client.submit("tests.asleep", 0.2)
            assert await slow == 0.2
            failed = await client.submit("tests.fail", "over amqp")
            with pytest.raises(CustomError, match="over amqp"):
                await failed.get(timeout=30)
            return values

    try:
        worker.wait_ready()
        assert asyncio.run(scenario()) == [i + 1 for i in range(50)]
    finally:
        worker.stop()


def test_async_client_sends_workflows(amqp_url, postgres_url, topology_prefix):
    """A chain, a group and a chord from an AsyncClient, run by a live prefork worker,
    give the results Client gives (support/async_workflows.py)."""
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    worker = WorkerProc(worker_env(amqp_url, postgres_url, topology_prefix), pool="prefork",
                        concurrency=2).start()

    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            return await send_and_await_workflows(client, app.tasks)

    try:
        worker.wait_ready(count=2)
        assert asyncio.run(scenario()) == WORKFLOW_RESULTS
    finally:
        worker.stop()
        app.close()
