"""Workflows sent through an AsyncClient, shared by the memory:// and RabbitMQ tests."""

import pytest

from apps.tasks import CustomError
from hutch import chain, chord, group
from hutch.client.aio import AsyncGroupResult


async def send_and_await_workflows(client, t):
    """A chain, a group, a chord and a chain whose middle step fails, sent through an
    AsyncClient: the results ``Client`` gives for the same workflows."""
    chained = await client.apply_workflow(chain(t["tests.add"].s(1, 2), t["tests.mul"].s(10)))
    grouped = await client.apply_workflow(group(t["tests.add"].s(i, i) for i in range(5)))
    chorded = await client.apply_workflow(
        chord((t["tests.add"].s(i, 1) for i in range(4)), t["tests.xsum"].s()))
    broken = await client.apply_workflow(
        chain(t["tests.add"].s(1, 1), t["tests.fail"].s(), t["tests.add"].s(1)))
    values = (await chained.get(timeout=30), await grouped, await chorded.get(timeout=30))
    with pytest.raises(CustomError):  # the failed middle step, as Client's get() raises it
        await broken.get(timeout=30)
    assert isinstance(grouped, AsyncGroupResult) and len(grouped) == 5
    assert isinstance(chorded.parent, AsyncGroupResult)
    assert await chained.parent.get(timeout=30) == 3
    return values


WORKFLOW_RESULTS = (30, [0, 2, 4, 6, 8], 10)

