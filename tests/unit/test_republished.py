"""Copies published again after a crash (hutch.messages.republished) on memory:// +
SQLite: a copy runs only if no worker has received its task id yet."""

import uuid

import pytest

from apps.tasks import make_app
from hutch.call_options import build_message
from hutch.messages import republished
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    yield app
    app.close()


def publish_copy(app, task_id, args):
    copy = build_message("tests.sleep", args, {}, {"task_id": task_id}, app.conf)
    app.client().broker.publish([("celery", republished(copy.encode()))])


def test_a_copy_of_a_running_task_is_acknowledged_without_running(app, tmp_path):
    marker = tmp_path / "runs"
    store = app.client().store
    with running_worker(app, concurrency=2):
        first = app.tasks["tests.sleep"].apply_async((1.0, str(marker)))
        assert eventually(lambda: getattr(store.get(first.id), "state", None) == "STARTED"), \
            "the first copy never started"
        publish_copy(app, first.id, (1.0, str(marker)))
        after = app.tasks["tests.sleep"].apply_async((0, str(marker)))
        assert after.get(timeout=10) == 0  # the copy was taken (and dropped) before it
        assert first.get(timeout=10) == 1.0
    assert marker.read_text().count("\n") == 2  # the first and the one after; not the copy


def test_a_copy_of_a_task_no_worker_received_runs(app, tmp_path):
    marker = tmp_path / "runs"
    task_id = uuid.uuid4().hex  # the first copy was lost: no row, no message
    with running_worker(app, concurrency=1):
        publish_copy(app, task_id, (0, str(marker)))
        assert app.AsyncResult(task_id).get(timeout=10) == 0
    assert marker.read_text().count("\n") == 1
