"""hutch.client.aio_confirms, the asyncio tracker of submits handed over without awaiting
their confirm, with a publisher whose answers the test gives (as test_confirms.py does
for the synchronous one): confirmed, dropped (published again with the call's retry
policy), refused, out of retries, a full window. On RabbitMQ:
tests/integration/test_async_confirm_later_rabbitmq.py."""

from __future__ import annotations

import asyncio

import pytest

from hutch.client import aio_confirms
from hutch.client.aio_confirms import AsyncConfirmTracker
from hutch.errors import BrokerUnavailable, PublishError
from hutch.messages import TaskMessage, is_republished


class AnsweringPublisher:
    """publish_later answers are futures the test settles; publish (the republish)
    raises ``republish_errors`` in turn, then succeeds."""

    def __init__(self, republish_errors: list[BaseException] = ()) -> None:
        self.handed: list[asyncio.Future[None]] = []
        self.republished: list[list] = []
        self._errors = list(republish_errors)

    async def publish_later(self, routed, events=()):
        answer = asyncio.get_running_loop().create_future()
        self.handed.append(answer)
        return answer

    async def publish(self, routed, timeout=None, events=()):
        self.republished.append(routed)
        if self._errors:
            raise self._errors.pop(0)


def message(i: int) -> TaskMessage:
    return TaskMessage(task="t.add", id=f"id-{i}", args=(i,))


def tracker(publisher: AnsweringPublisher, confirmed: list) -> AsyncConfirmTracker:
    async def get():
        return publisher
    return AsyncConfirmTracker(get, confirmed.append, confirm_timeout=0.2)


async def hand_over(t: AsyncConfirmTracker, i: int, pauses=()):
    return await t.hand_over([("celery", message(i).encode())], [message(i)], iter(pauses))


def test_a_confirmed_submit_settles_and_reports_once():
    async def scenario():
        publisher, confirmed = AnsweringPublisher(), []
        t = tracker(publisher, confirmed)
        entry = await hand_over(t, 1)
        assert await entry.confirmed(0) is False and t.outstanding == 1
        assert not await t.flush(0.01)
        publisher.handed[0].set_result(None)
        assert await entry.confirmed(1) is True and [e.task_ids for e in confirmed] == [["id-1"]]
        assert await t.flush(0) and t.outstanding == 0

    asyncio.run(scenario())


def test_a_dropped_connection_publishes_again_with_the_retry_policy():
    async def scenario():
        publisher = AnsweringPublisher(republish_errors=[BrokerUnavailable("still down")])
        confirmed: list = []
        t = tracker(publisher, confirmed)
        entry = await hand_over(t, 2, [0, 0, 0])
        publisher.handed[0].set_exception(BrokerUnavailable("connection lost"))
        assert await entry.confirmed(5) is True and t.republished == 1
        assert len(publisher.republished) == 2, "one failed attempt, then the one that worked"
        assert all(is_republished(r[0][1]) for r in publisher.republished), \
            "marked as copies: a worker drops one whose id it has received"
        assert [e.task_ids for e in confirmed] == [["id-2"]]

    asyncio.run(scenario())


def test_out_of_retries_refused_or_cancelled_is_an_error_on_the_handle_and_in_the_log(caplog):
    async def scenario():
        publisher = AnsweringPublisher(republish_errors=[BrokerUnavailable("down")] * 5)
        confirmed: list = []
        t = tracker(publisher, confirmed)
        dropped, refused, cancelled = [await hand_over(t, i, [0]) for i in (3, 4, 5)]
        publisher.handed[0].set_exception(BrokerUnavailable("connection lost"))
        publisher.handed[1].set_exception(PublishError("broker nacked message 'id-4'"))
        publisher.handed[2].cancel()
        with pytest.raises(BrokerUnavailable, match="out of publish retries"):
            await dropped.confirmed(5)
        with pytest.raises(PublishError, match="nacked"):
            await refused.confirmed(5)
        with pytest.raises(PublishError, match="cancelled"):
            await cancelled.confirmed(5)
        assert confirmed == [] and await t.flush(1)

    asyncio.run(scenario())
    assert caplog.text.count("not accepted by the broker") == 3
    assert all(f"id-{i}" in caplog.text for i in (3, 4, 5))


def test_a_full_window_makes_the_next_submit_wait_then_fail(monkeypatch):
    monkeypatch.setattr(aio_confirms, "WINDOW", 2)

    async def scenario():
        publisher, confirmed = AnsweringPublisher(), []
        t = tracker(publisher, confirmed)
        for i in range(2):
            await hand_over(t, i)
        with pytest.raises(PublishError, match="waited 0.2s"):
            await hand_over(t, 9)
        asyncio.get_running_loop().call_later(0.05, publisher.handed[0].set_result, None)
        await hand_over(t, 10)  # room again
        assert t.outstanding == 2

    asyncio.run(scenario())


def test_a_call_cut_short_by_its_connection_closing_counts_as_unavailable():
    """aiormq cancels a call whose connection closes under it and raises a bare Exception
    from that cancel (seen declaring an exchange as the connection was closed): the
    publisher takes it as a lost connection, so the submit is published again."""
    import aiormq

    from hutch.brokers.amqp.aio import _connection_lost

    def raised_from(cause: BaseException | None) -> Exception:
        try:
            raise Exception() from cause
        except Exception as exc:  # noqa: BLE001 - the shape aiormq raises
            return exc

    assert _connection_lost(raised_from(asyncio.CancelledError()))
    assert _connection_lost(asyncio.CancelledError())
    assert _connection_lost(aiormq.exceptions.AMQPConnectionError("reset"))
    assert not _connection_lost(raised_from(None))
    assert not _connection_lost(raised_from(ValueError("a refused declare")))
    assert not _connection_lost(aiormq.exceptions.ChannelClosed(404, "no exchange"))
