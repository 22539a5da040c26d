"""What ``get()`` and ``result`` give back, and what the row says, on real workers
(Celery's behaviour is the reference): a task's exception with its own arguments, the
handle of a task sent with ``ignore_result``, a task waiting for its retry, and the
times a row shows after a redelivery or a retry. SQLite and PostgreSQL alike where
the row is involved."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal

import pytest

from apps.tasks import CustomError, Formatted, NeedsTwo, make_app
from hutch import AsyncClient
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture(params=["postgres", "sqlite"])
def world(request, amqp_url, topology_prefix):
    """The test app and a worker environment, both on this backend."""
    url = request.getfixturevalue(f"{request.param}_url")
    app = make_app(amqp_url, url, topology_prefix=topology_prefix)
    yield app, worker_env(amqp_url, url, topology_prefix)
    app.close()


def _row(app, task_id, state):
    """The task's row once it is in ``state``."""
    store = app.client().store
    assert eventually(lambda: (row := store.get(task_id)) is not None and row.state == state,
                      timeout=30), f"{task_id} never reached {state}"
    return store.get(task_id)


def test_an_exception_comes_back_with_its_own_arguments(world, workers):
    app, env = world
    workers(env, pool="threads", concurrency=4).wait_ready()
    raise_args = app.tasks["tests.raise_args"]
    several = raise_args.delay("ValueError", "a", "b")
    key = raise_args.delay("KeyError", "missing")
    tagged = raise_args.delay("CustomError", "x", 1, (2, 3))
    required = raise_args.delay("NeedsTwo", 404, "gone")
    formatted = raise_args.delay("Formatted", 404, "/x")
    opaque = raise_args.delay("CustomError", "bad", opaque=True)

    with pytest.raises(ValueError) as raised:
        several.get(timeout=20)
    assert raised.value.args == ("a", "b")
    assert several.result.args == ("a", "b")
    assert app.client().store.get(several.id).exception_args == ["a", "b"]  # queryable JSON

    exc = key.get(timeout=20, propagate=False)
    assert type(exc) is KeyError and exc.args == ("missing",) and str(exc) == "'missing'"
    exc = tagged.get(timeout=20, propagate=False)
    assert type(exc) is CustomError and exc.args == ("x", 1, (2, 3))
    # a constructor with two required parameters is called with both
    exc = required.get(timeout=20, propagate=False)
    assert type(exc) is NeedsTwo and exc.args == (404, "gone") and exc.code == 404
    # one that formats its arguments cannot take its args back: same type, same args
    exc = formatted.get(timeout=20, propagate=False)
    assert type(exc) is Formatted and exc.args == ("404 at /x",) and str(exc) == "404 at /x"
    # arguments JSON cannot hold: rebuilt from the message
    exc = opaque.get(timeout=20, propagate=False)
    assert type(exc) is CustomError and exc.args == ("('bad', <opaque>)",)
    assert app.client().store.get(opaque.id).exception_args is None


def test_a_handle_sent_with_ignore_result_gets_none(app, env, workers, tmp_path):
    workers(env, pool="threads").wait_ready()
    marker = tmp_path / "ran"
    sent = app.tasks["tests.count_call"].apply_async((5, str(marker)), ignore_result=True)
    assert sent.get(timeout=5) is None
    assert app.tasks["tests.noop"].delay().get(timeout=5) is None  # ignore_result=True task

    async def from_async_client():
        async with AsyncClient(conf=app.conf, app=app) as client:
            handle = await client.submit("tests.count_call", 6, str(marker),
                                         ignore_result=True)
            return await handle.get(timeout=5)

    assert asyncio.run(from_async_client()) is None
    assert eventually(lambda: marker.exists() and len(marker.read_text().splitlines()) == 2)
    # a handle made from the bare id does not know: PENDING, as in Celery
    assert app.AsyncResult(sent.id).state == "PENDING"


def test_a_task_waiting_for_its_retry_shows_the_failed_attempts_exception(app, env, workers):
    workers(env, pool="threads").wait_ready()
    r = app.tasks["tests.retry_once"].delay(120)
    _row(app, r.id, "RETRY")
    exc = r.result
    assert type(exc) is CustomError and exc.args == ("not yet", 0)
    assert r.info is not None and "CustomError: ('not yet', 0)" in r.traceback


def test_a_redelivered_task_ends_with_the_times_of_its_last_run(world, workers, tmp_path):
    app, env = world
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    r = app.tasks["tests.sleep"].delay(3, str(tmp_path / "ran"))
    first = _row(app, r.id, "STARTED")
    os.kill(int(first.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    killed_at = dt.datetime.now(dt.timezone.utc)
    assert r.get(timeout=60) == 3
    row = app.client().store.get(r.id)
    assert row.received_at > killed_at and row.started_at > killed_at
    assert row.received_at <= row.started_at <= row.finished_at
    assert row.worker != first.worker


def test_a_retried_task_ends_with_the_times_of_its_last_attempt(world, workers):
    app, env = world
    workers(env, pool="threads").wait_ready()
    sent_at = dt.datetime.now(dt.timezone.utc)
    r = app.tasks["tests.retry_once"].delay(1)
    assert r.get(timeout=30) == 1
    row = app.client().store.get(r.id)
    retry_due = sent_at + dt.timedelta(seconds=1)  # a retry never runs early
    assert row.retries == 1 and row.received_at >= retry_due and row.started_at >= retry_due
