"""A publish retried after the broker failed it may have been stored the first time (its
confirm lost in a RabbitMQ restart): the retry goes as a republished copy, and the task
runs once (issue #10, item 5), on memory:// and SQLite."""

import uuid

import pytest

from apps.tasks import make_app, runs_of
from hutch.brokers.memory import MemoryBroker
from hutch.errors import BrokerUnavailable
from hutch.messages import is_republished
from support.workers import running_worker

RETRY_AT_ONCE = {"max_retries": 3, "interval_start": 0, "interval_step": 0, "interval_max": 0}


class LosesFirstConfirm(MemoryBroker):
    """Stores the first publish, then fails it as a dropped connection would."""

    def __init__(self, inner: MemoryBroker) -> None:
        self.__dict__.update(inner.__dict__)
        self.published = []

    def publish(self, messages, timeout=None):
        super().publish(messages, timeout)
        self.published.append(list(messages))
        if len(self.published) == 1:
            raise BrokerUnavailable("connection lost before the confirm arrived")


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    yield app
    app.close()


def test_a_publish_stored_without_its_confirm_runs_once(app, tmp_path):
    runs = tmp_path / "runs"
    client = app.client()
    lossy = client._broker = LosesFirstConfirm(client.broker)
    with running_worker(app, concurrency=2):
        result = app.tasks["tests.record_run"].apply_async(
            (str(runs),), retry=True, retry_policy=RETRY_AT_ONCE)
        assert result.get(timeout=10) == result.id
        follower = app.tasks["tests.record_run"].apply_async((str(runs),))
        assert follower.get(timeout=10) == follower.id  # the copy was taken before it
    first, again = lossy.published[0][0][1], lossy.published[1][0][1]
    assert not is_republished(first) and is_republished(again)
    assert first.message_id == again.message_id
    assert [task_id for task_id, _, _ in runs_of(runs)] == [result.id, follower.id]
