"""``AsyncClient`` with ``broker_confirm_wait=False`` on the real RabbitMQ and PostgreSQL
(issue #16): submits return before their confirm, every one is confirmed, queued, run
and gets its PENDING row; ``aclose()`` awaits the confirms; an unroutable one fails
loudly on its handle; a lost connection's messages are published again. The
synchronous client's twin: test_confirm_later_rabbitmq.py."""

from __future__ import annotations

import asyncio

import pytest

from hutch import AsyncClient, chain
from hutch.errors import UnroutableError
from hutch.results.records import PENDING, SUCCESS
from hutch.testing import running_worker
from support.rabbit import close_connections

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def app(later_app):
    return later_app  # integration/conftest.py


def test_handed_over_submits_are_confirmed_queued_and_run(app):
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            handles = [await client.submit("tests.add", i, i) for i in range(300)]
            assert all(h._unconfirmed is not None for h in handles), "none was awaited"
            assert all([await h.confirmed(30) for h in handles])
            assert await client.flush(30), "confirms and PENDING rows written"
            rows = client.store.get_many([h.id for h in handles])
            assert {r.state for r in rows.values()} == {PENDING} and len(rows) == 300
            with running_worker(app, queues=["celery"]):
                values = await asyncio.gather(*(h.get(timeout=30) for h in handles))
            assert values == [2 * i for i in range(300)]
            rows = client.store.get_many([h.id for h in handles])
            assert {r.state for r in rows.values()} == {SUCCESS} and len(rows) == 300

    asyncio.run(scenario())


def test_closing_awaits_every_confirm_and_pending_row(app):
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            handles = [await client.submit("tests.add", i, 1) for i in range(500)]
            tracker = client.confirms
        assert tracker.outstanding == 0, "the exit awaited the confirms"
        assert all([await h.confirmed(0) for h in handles])
        return [h.id for h in handles]

    ids = asyncio.run(scenario())
    rows = app.client().store.get_many(ids)
    assert {r.state for r in rows.values()} == {PENDING} and len(rows) == 500
    assert app.client().broker.queue_depths(["celery"])["celery"][0] == 500


def test_an_unroutable_submit_fails_on_its_handle_and_in_the_log(app, topology_prefix,
                                                                    caplog):
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            assert await (await client.submit("tests.add", 1, 1, queue="gone")).confirmed(30)
            broker = app.client().broker
            broker.purge("gone")
            with broker._admin_channel() as channel:  # the exchange stays, bound to nothing
                channel.queue_delete(f"{topology_prefix}.gone")
            lost = await client.submit("tests.add", 2, 2, queue="gone")
            with pytest.raises(UnroutableError, match="NO_ROUTE"):
                await lost.confirmed(30)
            with pytest.raises(UnroutableError):
                await lost.get(timeout=5)
            assert await client.flush(10)
            assert client.store.get(lost.id) is None, "no PENDING row for a task never queued"
            assert await (await client.submit("tests.add", 3, 3)).confirmed(30), "it goes on"
            return lost.id

    lost_id = asyncio.run(scenario())
    assert "not accepted by the broker" in caplog.text and lost_id in caplog.text


def test_messages_of_a_dropped_connection_are_published_again(app):
    """The async publisher's connection is closed under a stream of submits: whatever was
    not confirmed on it goes out again on the next one; every task runs once."""
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            handles = [await client.submit("tests.add", 0, 1)]
            closed = asyncio.Event()

            async def submit_until_closed() -> None:
                while not closed.is_set() or len(handles) < 600:
                    handles.append(await client.submit("tests.add", len(handles), 1))
                    await asyncio.sleep(0.002)  # a steady stream

            submitter = asyncio.create_task(submit_until_closed())
            try:
                for _ in range(5):  # until a close finds messages in flight
                    assert await asyncio.to_thread(close_connections, "async publisher"), \
                        "async publisher connection not found"
                    for _ in range(60):
                        if client.confirms.republished:
                            break
                        await asyncio.sleep(0.05)
                    if client.confirms.republished:
                        break
            finally:
                closed.set()
                await submitter
            assert all([await h.confirmed(60) for h in handles])
            assert client.confirms.republished > 0, "some were in flight when it dropped"
            with running_worker(app, queues=["celery"]):
                values = await asyncio.gather(*(h.get(timeout=60) for h in handles))
            assert values == [i + 1 for i in range(len(handles))]

    asyncio.run(scenario())


def test_workflows_and_prebuilt_sends_still_await_their_confirms(app):
    async def scenario():
        async with AsyncClient(conf=app.conf, app=app) as client:
            add = app.tasks["tests.add"]
            await client.apply_workflow(chain(add.s(1, 1), add.s(2)))
            await client.send([client.message("tests.add", (5, 5))])
            assert client._confirms is None, "nothing was handed over"
        assert app.client().broker.queue_depths(["celery"])["celery"][0] == 2

    asyncio.run(scenario())
