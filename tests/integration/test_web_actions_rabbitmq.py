"""hutch web's actions through its JSON API on the real RabbitMQ and PostgreSQL, with
one real prefork worker for the module: revoke with terminate stops a running task
and its row becomes REVOKED; retrying a FAILURE runs a new task with the same
arguments; replaying a dead letter runs its task; purge empties the dead-letter
queue; the worker answers pool_grow and rate_limit; each action is a hutch_audit
row. The pages and bad input on memory:// and SQLite: tests/unit/test_web_actions.py."""

from __future__ import annotations

import uuid

import pytest
from starlette.testclient import TestClient

from hutch.messages import TaskMessage
from hutch.ops.audit import AuditLog
from hutch.web.app import create_app
from support.waiting import eventually
from support.web_worker import module_prefix, node, web_app, web_worker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]
FIXTURES = (module_prefix, node, web_app, web_worker)
"""support.web_worker's fixtures, for this module's tests."""

@pytest.fixture(scope="module")
def app(web_app):
    return web_app


@pytest.fixture(scope="module")
def http(app, web_worker):
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        client.headers["X-CSRF-Token"] = client.get("/api/v1/auth/me").json()["csrf_token"]
        yield client


def state_of(app, task_id: str) -> str | None:
    record = app.client().store.get(task_id)
    return record.state if record else None


def audited(app, target: str) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) for e in AuditLog(app.client().store).entries(target=target)]


def test_revoke_with_terminate_stops_a_running_task(app, http, node):
    running = app.send_task("tests.sleep", (60,))
    assert eventually(lambda: state_of(app, running.id) == "STARTED", 20)
    answer = http.post(f"/api/v1/tasks/{running.id}/revoke", json={"terminate": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "task.terminate"
    assert eventually(lambda: state_of(app, running.id) == "REVOKED", 20)
    active = app.control.inspect([node], timeout=1).active() or {}
    assert running.id not in {t["id"] for t in active.get(node, [])}
    assert audited(app, running.id) == [("task.terminate", "ok")]


def test_retry_of_a_failure_runs_a_new_task_with_the_same_arguments(app, http):
    message = f"it broke {uuid.uuid4().hex[:6]}"
    failed = app.send_task("tests.fail", (message,))
    assert eventually(lambda: state_of(app, failed.id) == "FAILURE", 20)
    answer = http.post(f"/api/v1/tasks/{failed.id}/retry")
    assert answer.status_code == 200, answer.text
    new_id = answer.json()["new_task_id"]
    assert eventually(lambda: state_of(app, new_id) == "FAILURE", 20)
    new = app.client().store.get(new_id)
    assert (new.name, new.args, new.parent_id, new.exception_message) == (
        "tests.fail", [message], failed.id, message)
    assert audited(app, failed.id) == [("task.retry", "ok")]


def test_replaying_a_dead_letter_runs_its_task(app, http):
    task_id = str(uuid.uuid4())
    wire = TaskMessage(task="tests.add", id=task_id, args=(20, 22), queue="celery").encode()
    app.client().broker.publish_dead("celery", wire)
    listed = http.get("/api/v1/deadletters", params={"queue": "celery"}).json()["items"]
    assert task_id in [d["key"] for d in listed]
    shown = http.get(f"/api/v1/deadletters/celery/{task_id}").json()
    assert shown["body"]["args"] == [20, 22] and shown["task"] == "tests.add"
    answer = http.post("/api/v1/deadletters/celery/replay", json={"key": task_id})
    assert answer.status_code == 200 and answer.json()["replayed"] == 1, answer.text
    assert eventually(lambda: state_of(app, task_id) == "SUCCESS", 20)
    assert app.client().store.get(task_id).result == 42
    assert audited(app, task_id) == [("deadletter.replay", "ok")]


def test_purge_empties_the_dead_letter_queue(app, http):
    broker = app.client().broker
    for n in range(2):
        broker.publish_dead("celery", TaskMessage(task="tests.add", id=str(uuid.uuid4()),
                                                  args=(n, n), queue="celery").encode())
    assert broker.dead_letter_count("celery") == 2
    answer = http.post("/api/v1/deadletters/celery/purge")
    assert answer.status_code == 200 and answer.json()["purged"] == 2, answer.text
    assert broker.dead_letter_count("celery") == 0
    assert audited(app, "celery")[:1] == [("deadletter.purge", "ok")]


def test_the_worker_answers_pool_grow_and_rate_limit(app, http, node):
    grown = http.post(f"/api/v1/workers/{node}/pool_grow", json={"n": 1})
    assert grown.status_code == 200, grown.text
    assert grown.json()["reply"] == {"ok": "pool will grow"}
    limited = http.post(f"/api/v1/workers/{node}/rate_limit",
                        json={"task_name": "tests.add", "rate_limit": "100/s"})
    assert limited.status_code == 200, limited.text
    assert limited.json()["message"] == f"worker {node}: new rate limit set successfully"
    refused = http.post(f"/api/v1/workers/{node}/rate_limit",
                        json={"task_name": "tests.nope", "rate_limit": "1/s"})
    assert refused.status_code == 409 and "unknown task" in refused.json()["error"]
    assert audited(app, node) == [("worker.rate_limit", "failed"), ("worker.rate_limit", "ok"),
                                  ("worker.pool_grow", "ok")]
    trail = http.get("/api/v1/audit", params={"target": node}).json()["items"]
    assert trail[0]["detail"]["task_name"] == "tests.nope" and "unknown task" in trail[0][
        "detail"]["error"]


@pytest.mark.parametrize(("method", "url", "status"), [
    ("get", "/api/v1/deadletters?queue=%F0%9F%90%8D", 200),
    ("get", "/api/v1/deadletters?queue=a.b*%23c", 200),
    ("get", "/api/v1/deadletters/never-declared/k", 404),
    ("post", "/api/v1/deadletters/never-declared/purge", 200),
    ("post", "/api/v1/deadletters/never-declared/replay", 400),
    ("get", f"/api/v1/deadletters?queue={'q' * 300}", 400),
    ("get", "/deadletters?queue=never-declared", 200),
    ("get", "/deadletters/never-declared/k", 404),
    ("get", "/api/v1/audit?target=%00", 400),
])
def test_odd_queues_on_rabbitmq_are_answered_never_a_500(http, method, url, status):
    answer = http.request(method, url, json={} if method == "post" else None)
    assert answer.status_code == status, answer.text
