"""hutch.client.confirms, the tracker of submits handed over without waiting for their
confirm, with a broker whose answers the test gives: confirmed, dropped (published
again with the call's retry policy), refused, out of retries, a full window. On
RabbitMQ: tests/integration/test_confirm_later_rabbitmq.py."""

from __future__ import annotations

import itertools
import threading
import uuid

import pytest

from apps.tasks import make_app
from hutch.brokers.base import Confirmation
from hutch.client import confirms
from hutch.client.confirms import ConfirmTracker
from hutch.errors import BrokerUnavailable, PublishError
from hutch.messages import TaskMessage, is_republished
from hutch.testing import running_worker


class AnsweringBroker:
    """publish_later answers are settled by the test; publish (the republish) answers
    from ``republish_errors`` in turn, then succeeds."""

    def __init__(self, republish_errors: list[BaseException] = ()) -> None:
        self.handed: list[Confirmation] = []
        self.republished: list[list] = []
        self._errors = list(republish_errors)

    def publish_later(self, routed):
        confirmation = Confirmation()
        self.handed.append(confirmation)
        return confirmation

    def publish(self, routed, timeout=None):
        self.republished.append(routed)
        if self._errors:
            raise self._errors.pop(0)


def message(i: int) -> TaskMessage:
    return TaskMessage(task="t.add", id=f"id-{i}", args=(i,))


def tracker(broker, confirmed: list) -> ConfirmTracker:
    return ConfirmTracker(lambda: broker, confirmed.append, confirm_timeout=0.2)


def test_a_confirmed_submit_settles_and_reports_once():
    broker, confirmed = AnsweringBroker(), []
    t = tracker(broker, confirmed)
    entry = t.hand_over([("celery", message(1).encode())], [message(1)], iter(()))
    assert entry.confirmed(0) is False and t.outstanding == 1 and not t.flush(0.01)
    broker.handed[0].settle()
    assert entry.confirmed(0) is True and [e.task_ids for e in confirmed] == [["id-1"]]
    assert t.flush(0) and t.outstanding == 0


def test_a_dropped_connection_publishes_again_with_the_retry_policy():
    broker = AnsweringBroker(republish_errors=[BrokerUnavailable("still down")])
    confirmed: list = []
    t = tracker(broker, confirmed)
    entry = t.hand_over([("celery", message(2).encode())], [message(2)], iter([0, 0, 0]))
    broker.handed[0].settle(BrokerUnavailable("connection lost"))
    assert entry.confirmed(5) is True and t.republished == 1
    assert len(broker.republished) == 2, "one failed attempt, then the one that worked"
    assert all(is_republished(r[0][1]) for r in broker.republished), \
        "marked as copies: a worker drops one whose id it has received"
    assert [e.task_ids for e in confirmed] == [["id-2"]]


def test_out_of_retries_or_refused_is_an_error_on_the_handle_and_in_the_log(caplog):
    broker = AnsweringBroker(republish_errors=[BrokerUnavailable("down")] * 5)
    confirmed: list = []
    t = tracker(broker, confirmed)
    dropped = t.hand_over([("celery", message(3).encode())], [message(3)], iter([0]))
    refused = t.hand_over([("celery", message(4).encode())], [message(4)], iter([0]))
    broker.handed[0].settle(BrokerUnavailable("connection lost"))
    broker.handed[1].settle(PublishError("broker nacked message 'id-4'"))
    with pytest.raises(BrokerUnavailable, match="out of publish retries"):
        dropped.confirmed(5)
    with pytest.raises(PublishError, match="nacked"):
        refused.confirmed(5)
    assert confirmed == [] and t.flush(1)
    assert caplog.text.count("not accepted by the broker") == 2
    assert "id-3" in caplog.text and "id-4" in caplog.text


def test_a_full_window_makes_the_next_submit_wait_then_fail(monkeypatch):
    monkeypatch.setattr(confirms, "WINDOW", 2)
    broker, confirmed = AnsweringBroker(), []
    t = tracker(broker, confirmed)
    ids = itertools.count()
    for _ in range(2):
        i = next(ids)
        t.hand_over([("celery", message(i).encode())], [message(i)], iter(()))
    with pytest.raises(PublishError, match="waited 0.2s"):
        t.hand_over([("celery", message(9).encode())], [message(9)], iter(()))
    threading.Timer(0.05, broker.handed[0].settle).start()
    t.hand_over([("celery", message(10).encode())], [message(10)], iter(()))  # room again
    assert t.outstanding == 2


def test_on_memory_the_hand_over_is_confirmed_at_once(tmp_path):
    """memory:// confirms as it queues (Transport.publish_later's default)."""
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   broker_confirm_wait=False)
    try:
        handle = app.tasks["tests.add"].delay(2, 3)
        assert handle._unconfirmed is not None and handle.confirmed(0) is True
        assert app.client().flush(5) and app.client().store.get(handle.id).state == "PENDING"
        with running_worker(app, queues=["celery"]):
            assert handle.get(timeout=10) == 5
    finally:
        app.close()
