"""hutch web's read pages on the real RabbitMQ and PostgreSQL (in-process, Starlette's
TestClient): a real worker runs tasks (one failing, one retrying, a chord); the task
list filters them, a failure's page shows its traceback, a chord member's page draws
its chord, the overview counts them per minute with the worker online, the queues
page shows RabbitMQ's consumers. Page logic on memory:// and SQLite:
tests/unit/test_web_pages.py."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from apps.tasks import make_app
from hutch import chord
from hutch.web.app import create_app
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def app(amqp_url, fresh_postgres_url, topology_prefix):
    """A database of this test's own: the overview counts every task of the last hour."""
    hutch_app = make_app(amqp_url, fresh_postgres_url, topology_prefix=topology_prefix)
    yield hutch_app
    hutch_app.close()


@pytest.fixture
def env(amqp_url, fresh_postgres_url, topology_prefix):
    return worker_env(amqp_url, fresh_postgres_url, topology_prefix)


def _ids(page: str) -> set[str]:
    return set(re.findall(r'<tr class="task"><td class="id"><a href="[^"]+">([^<]+)</a>', page))


def test_the_pages_show_what_a_real_worker_did(app, env, workers):
    worker = workers({**env, "HUTCH_WORKER_HEARTBEAT_INTERVAL": "0.5"}, pool="threads",
                     concurrency=2)
    worker.wait_ready()
    t = app.tasks
    added = t["tests.add"].delay(2, 3)
    failed = t["tests.fail"].delay("it broke")
    retried = t["tests.retry_once"].delay(0.2)
    together = chord([t["tests.add"].s(1, 1), t["tests.add"].s(2, 2)], t["tests.xsum"].s())()
    assert together.get(timeout=20) == 6 and retried.get(timeout=20) == 1
    assert added.get(timeout=20) == 5

    with TestClient(create_app(app), raise_server_exceptions=False) as http:
        def failure_listed() -> str | None:
            page = http.get("/tasks", params={"state": "FAILURE"}).text
            return page if _ids(page) == {failed.id} else None

        eventually(failure_listed, 20)
        succeeded = http.get("/tasks", params=[("state", "SUCCESS"), ("name", "tests.add")])
        assert _ids(succeeded.text) == {added.id, *(m.id for m in together.parent.results)}

        page = http.get(f"/tasks/{failed.id}").text
        assert '<pre class="traceback">Traceback (most recent call last):' in page
        assert "it broke" in page and "CustomError" in page
        page = http.get(f"/tasks/{retried.id}").text
        assert '<span class="event">attempt 1 failed</span>' in page
        assert "by a worker (attempt 2)" in page
        member = together.parent.results[0].id
        page = http.get(f"/tasks/{member}").text
        assert f"chord <code>{together.parent.id}</code>: 2 tasks, 2 completed, 0 failed" in page
        assert f'body <a href="/tasks/{together.id}">' in page
        body = http.get(f"/tasks/{together.id}").text
        assert "the body of chord" in body

        figures = http.get("/api/v1/overview").json()
        assert figures["totals"]["failed"] == 1 and figures["totals"]["retried"] == 1
        assert figures["totals"]["succeeded"] == 5, "add, retry_once, two members, xsum"
        assert figures["workers"]["online"] >= 1 and figures["runtime_sampled"] == 6
        overview = http.get("/").text
        assert 'data-field="failure-rate">16.7 %' in overview
        queues = http.get("/queues").text
        default = app.conf.task_default_queue
        assert re.search(rf'<td class="name">{re.escape(default)}</td><td class="num">0</td>'
                         r'<td class="num">n/a</td><td class="num">[1-9]', queues)
    assert worker.stop() == 0
