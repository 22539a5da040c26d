"""AsyncClient on memory:// + SQLite: awaitable submit and results."""

import asyncio
import uuid

import pytest

from apps.tasks import CustomError, make_app
from hutch import AsyncClient
from hutch.errors import TimeoutError
from support.async_workflows import WORKFLOW_RESULTS, send_and_await_workflows
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    yield app
    app.close()


def test_async_submit_and_get(app):
    async def scenario():
        async with AsyncClient(conf=app.conf) as client:
            results = await asyncio.gather(*(client.submit("tests.add", i, i) for i in range(20)))
            values = await asyncio.gather(*(r.get(timeout=10) for r in results))
            failed = await client.submit("tests.fail", "async boom")
            with pytest.raises(CustomError, match="async boom"):
                await failed.get(timeout=10)
            assert await failed.state() == "FAILURE"
            assert await client.AsyncResult(results[0].id) == 0
            return values

    with running_worker(app):
        assert asyncio.run(scenario()) == [2 * i for i in range(20)]


def test_async_get_timeout(app):
    async def scenario():
        async with AsyncClient(conf=app.conf) as client:
            r = await client.submit("tests.add", 1, 1)
            with pytest.raises(TimeoutError):
                await r.get(timeout=0.2)

    asyncio.run(scenario())


def test_async_client_sends_chain_group_and_chord(app):
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            return await send_and_await_workflows(client, app.tasks)

    with running_worker(app):
        assert asyncio.run(scenario()) == WORKFLOW_RESULTS
