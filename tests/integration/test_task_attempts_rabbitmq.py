"""A task's retried attempts (hutch_task_attempts) as a real worker records them, on
the real RabbitMQ and PostgreSQL: ``/api/v1/tasks/{id}`` lists each, and the task's
page shows each in its timeline. The rows themselves: test_task_attempts_store.py."""

from __future__ import annotations

import datetime as dt
import html
import uuid

import pytest
from starlette.testclient import TestClient

from hutch.web.app import create_app
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_a_task_retried_twice_shows_both_attempts(app, env, workers):
    queue = f"attempts-{uuid.uuid4().hex[:8]}"
    worker = workers(env, queues=(queue,), pool="threads", concurrency=1)
    worker.wait_ready()
    result = app.send_task("tests.flaky", (2,), queue=queue)
    assert result.get(timeout=20) == 2

    with TestClient(create_app(app), raise_server_exceptions=False) as http:
        detail = eventually(lambda: _finished(http, result.id), 10)
        first, second = detail["attempts"]
        assert [first["attempt"], second["attempt"]] == [0, 1]
        for number, attempt in enumerate((first, second)):
            assert attempt["exception_type"].endswith("CustomError")
            assert attempt["exception_message"] == f"attempt {number}"
            assert attempt["worker"] == detail["worker"]  # the one worker process
            started, retried, due = (dt.datetime.fromisoformat(attempt[k])
                                     for k in ("started_at", "retried_at", "eta"))
            assert started <= retried and started < due
        times = [first["retried_at"], second["started_at"], second["retried_at"],
                 detail["started_at"]]
        assert [dt.datetime.fromisoformat(t) for t in times] == sorted(
            dt.datetime.fromisoformat(t) for t in times)

        page = html.unescape(http.get(f"/tasks/{result.id}").text)
        for number in (1, 2):
            assert f'<span class="event">attempt {number} failed</span>' in page
            assert f"CustomError: attempt {number - 1}, retried (next due at " in page
        assert "by a worker (attempt 3)" in page and "not recorded" not in page


def _finished(http: TestClient, task_id: str) -> dict | None:
    detail = http.get(f"/api/v1/tasks/{task_id}").json()
    return detail if detail["state"] == "SUCCESS" else None
