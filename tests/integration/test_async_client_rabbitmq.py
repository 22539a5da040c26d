"""AsyncClient on the real RabbitMQ (aio-pika, confirms) with results in PostgreSQL."""

import asyncio

import pytest

from apps.tasks import CustomError
from hutch import AsyncClient
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
