"""The schedules pages and ``/api/v1/schedules`` on the real PostgreSQL and RabbitMQ
(in process, Starlette's TestClient): a schedule created through the form, run now
from its confirm page, its task run by a real worker (the run in the history, the
task carrying the schedule's name), every change in ``hutch_audit`` as PostgreSQL
holds it; what PostgreSQL refuses (NUL characters) answered 400, never 500. The
pages' logic on memory:// and SQLite: tests/unit/test_web_schedules.py."""

from __future__ import annotations

from contextlib import closing

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from apps.tasks import make_app
from hutch.results.models import make_engine
from hutch.web.app import create_app
from support.processes import worker_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def db_app(amqp_url, fresh_postgres_url, topology_prefix):
    with closing(make_app(amqp_url, fresh_postgres_url, topology_prefix=topology_prefix)) as app:
        yield app


def test_a_schedule_made_on_the_page_runs_now_on_a_real_worker(db_app, amqp_url,
                                                               fresh_postgres_url,
                                                               topology_prefix, workers):
    worker = workers(worker_env(amqp_url, fresh_postgres_url, topology_prefix),
                     pool="threads", concurrency=1)
    with TestClient(create_app(db_app), follow_redirects=False) as http:
        http.get("/schedules")
        token = http.cookies.get("hutch_csrf")
        made = http.post("/schedules/new", data={
            "csrf_token": token, "name": "report", "task": "tests.add", "kind": "crontab",
            "cron": "0 6 * * 1-5", "args": "[20, 22]", "timezone": "America/New_York",
            "catch_up": "one", "catch_up_limit": "100", "enabled": "on"})
        assert made.status_code == 303, made.text
        page = http.get("/schedules").text
        assert "06:00:00 <span class=\"zone\">America/New_York" in page
        assert ":00:00 <span class=\"zone\">UTC" in page  # 10:00 or 11:00, by DST

        worker.wait_ready()
        confirm = http.get("/schedules/report/run").text
        assert 'action="/schedules/report/run"' in confirm
        ran = http.post("/schedules/report/run", data={"csrf_token": token})
        task_id = ran.headers["location"].split("task_id=")[1]
        assert db_app.AsyncResult(task_id).get(timeout=15) == 42
        detail = http.get("/schedules/report").text
        assert task_id in detail and "run now" in detail
        api = http.get("/api/v1/schedules/report").json()
        assert [(r["task_id"], r["manual"]) for r in api["runs"]] == [(task_id, True)]
        assert api["next_runs"][0]["local"][11:19] == "06:00:00"

        http.headers["X-CSRF-Token"] = token
        refused = http.patch("/api/v1/schedules/report", json={"description": "a\x00b"})
        assert (refused.status_code, refused.json()["field"]) == (400, "description")
        unstorable = http.patch("/api/v1/schedules/report", json={"args": ["a\x00b"]})
        assert unstorable.status_code == 400, unstorable.text
        assert http.delete("/api/v1/schedules/report").status_code == 200

    engine = make_engine(fresh_postgres_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT action, target, outcome, actor, detail FROM hutch_audit ORDER BY id")).all()
            named = conn.execute(text("SELECT schedule_name FROM hutch_tasks "
                                      "WHERE task_id = :i"), {"i": task_id}).scalar_one()
    finally:
        engine.dispose()
    assert [(r.action, r.target, r.outcome, r.actor) for r in rows] == [
        ("schedule.create", "report", "ok", "anonymous"),
        ("schedule.run", "report", "ok", "anonymous"),
        ("schedule.update", "report", "failed", "anonymous"),
        ("schedule.delete", "report", "ok", "anonymous")]
    assert rows[1].detail == {"task_id": task_id} and named == "report"
    assert worker.stop() == 0
