"""hutch web's actions on memory:// and SQLite (Starlette's TestClient): the confirm
page, its POST with the CSRF token, the 303 back to the page with the result shown,
the hutch_audit row, bad input shown beside its field, a read-only user who sees no
button and whose POST is refused; the workers and dead-letter pages; the JSON API of
every action. With a real worker on RabbitMQ and PostgreSQL:
tests/integration/test_web_actions_rabbitmq.py; in a browser:
tests/browser/test_browser_actions.py."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from apps.tasks import make_app
from hutch.messages import TaskMessage, refused
from hutch.ops.audit import AuditLog
from hutch.results.records import StateChange
from hutch.results.workers import WorkerBeat, WorkerStore
from hutch.web import actions
from hutch.web.app import create_app
from hutch.web.pages.render import Pages
from hutch.web.passwords import hash_password
from support.waiting import eventually

PASSWORDS = {"viewer": "read-pw", "ann": "admin-pw"}


@pytest.fixture(scope="module")
def users() -> dict[str, dict[str, str]]:
    return {"viewer": {"password_hash": hash_password(PASSWORDS["viewer"]), "role": "read"},
            "ann": {"password_hash": hash_password(PASSWORDS["ann"]), "role": "admin"}}


def basic(user: str) -> dict[str, str]:
    secret = f"{user}:{PASSWORDS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(secret).decode()}


@pytest.fixture
def http(memory_app):
    with TestClient(create_app(memory_app), raise_server_exceptions=False) as client:
        yield client


def csrf(client: TestClient, headers: dict[str, str] | None = None) -> str:
    return client.get("/api/v1/auth/me", headers=headers or {}).json()["csrf_token"]


def audit_of(app) -> list:
    return AuditLog(app.client().store).entries()


def row(app, task_id: str, state: str, **values) -> None:
    app.client().store.write([StateChange(task_id=task_id, state=state, **values)])


def beat(app, hostname: str = "w1@host") -> None:
    WorkerStore(app.client().store).beat(WorkerBeat(
        hostname=hostname, pid=42, version="1", pool="prefork", concurrency=2, processes=2,
        queues=("celery",), prefetch=4, state="online", heartbeat_interval=60.0,
        started_at=dt.datetime.now(dt.timezone.utc), processed=7, succeeded=5, failed=2,
        loadavg_1=0.5, loadavg_5=0.25, loadavg_15=0.125, rss_bytes=50 * 2**20))


def dead_letter(app, task_id: str = "d1", args=(2, 3)) -> None:
    wire = TaskMessage(task="tests.add", id=task_id, args=args, queue="celery").encode()
    app.client().broker.publish_dead("celery", refused(wire, "hutch.errors.NotRegistered: "
                                                             "no task named tests.add", "w@h:1"))


def flash(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_the_confirm_page_asks_and_its_post_revokes_redirects_back_and_audits(memory_app, http):
    row(memory_app, "t1", "PENDING", name="tests.add")
    asked = http.get("/actions/task.revoke", params={"target": "t1", "next": "/workers?x=1"})
    assert asked.status_code == 200
    assert "Revoke task t1?" in asked.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', asked.text).group(1)
    assert token == csrf(http)
    done = http.post("/actions/task.revoke", data={"csrf_token": token, "target": "t1",
                                                   "next": "/workers?x=1"},
                     follow_redirects=False)
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("/actions/task.revoke/result?")
    assert flash(location)["next"] == "/workers?x=1"
    assert "t1 revoked" in flash(location)["done"]
    assert memory_app.client().store.get("t1").state == "REVOKED"
    [entry] = audit_of(memory_app)
    assert (entry.actor, entry.role, entry.action, entry.target, entry.outcome) == (
        "anonymous", "admin", "task.revoke", "t1", "ok")
    assert entry.client == "testclient" and entry.detail["marked"] == ["t1"]
    shown = http.get(location)
    assert 'class="flash done"' in shown.text and "t1 revoked" in shown.text
    assert '<a class="back" href="/workers?x=1">Back</a>' in shown.text


def test_a_post_without_the_csrf_token_is_refused_and_nothing_is_done(memory_app, http):
    row(memory_app, "t1", "PENDING", name="tests.add")
    refused_post = http.post("/actions/task.revoke", data={"target": "t1"})
    assert refused_post.status_code == 403
    assert memory_app.client().store.get("t1").state == "PENDING"
    assert audit_of(memory_app) == []


def test_bad_input_is_shown_beside_its_field_and_not_audited(memory_app, http):
    token = csrf(http)
    bad = http.post("/actions/worker.pool_grow", data={
        "csrf_token": token, "target": "w1@host", "n": "many", "next": "/workers"})
    assert bad.status_code == 400
    assert re.search(r'<span class="error"[^>]*>Processes must be a whole number', bad.text)
    assert 'value="many"' in bad.text
    signal = http.get("/actions/task.terminate", params={"target": "t1", "signal": "NOPE"})
    assert signal.status_code == 200 and "unknown signal" in signal.text
    unknown = http.get("/actions/task.explode", params={"target": "t1"})
    assert unknown.status_code == 404 and "no action" in unknown.text
    no_target = http.post("/actions/task.retry", data={"csrf_token": token})
    assert no_target.status_code == 400 and "task_id is required" in no_target.text
    assert audit_of(memory_app) == []


@pytest.mark.parametrize("next_page", ["//evil.example/x", "/\t/evil.example", "https://e.x/",
                                       "/\\evil.example", ""])
def test_a_next_page_on_another_site_is_replaced_by_the_landing_page(memory_app, http,
                                                                     next_page):
    row(memory_app, "t1", "PENDING", name="tests.add")
    done = http.post("/actions/task.revoke", data={
        "csrf_token": csrf(http), "target": "t1", "next": next_page}, follow_redirects=False)
    assert done.status_code == 303 and flash(done.headers["location"])["next"] == "/"
    assert '<a class="back" href="/">' in http.get(done.headers["location"]).text
    forged = http.get("/actions/task.revoke/result", params={"next": next_page, "done": "x"})
    assert '<a class="back" href="/">' in forged.text


def test_the_actions_work_under_a_url_prefix(memory_app):
    row(memory_app, "t1", "FAILURE", name="tests.add", args=[1, 2], kwargs={})
    with TestClient(create_app(memory_app, url_prefix="/hutch")) as client:
        asked = client.get("/hutch/actions/task.retry", params={"target": "t1",
                                                                "next": "/hutch/"})
        assert 'action="/hutch/actions/task.retry"' in asked.text
        token = client.get("/hutch/api/v1/auth/me").json()["csrf_token"]
        done = client.post("/hutch/actions/task.retry", follow_redirects=False, data={
            "csrf_token": token, "target": "t1", "next": "//elsewhere"})
        location = done.headers["location"]
        assert location.startswith("/hutch/actions/task.retry/result?")
        assert flash(location)["next"] == "/hutch/"
        new_task = flash(location)["new_task"]
        shown = client.get(location)
        assert f'href="/hutch/tasks/{new_task}"' in shown.text  # the task page
        assert '<a class="back" href="/hutch/">' in shown.text


def test_retry_sends_a_new_task_linked_to_the_old_and_a_refusal_is_shown(memory_app, http):
    row(memory_app, "old", "FAILURE", name="tests.add", args=[2, 3], kwargs={"z": 1},
        queue="celery", exception_type="ValueError", exception_message="boom")
    row(memory_app, "fine", "SUCCESS", name="tests.add", args=[1, 1], kwargs={})
    page = http.get("/tasks/old").text  # the task page includes templates/actions/task.html
    assert re.findall(r'data-action="([^"]+)"', page) == ["task.retry"]
    token = csrf(http)
    done = http.post("/actions/task.retry", data={"csrf_token": token, "target": "old",
                                                  "next": "/workers"}, follow_redirects=False)
    new_id = flash(done.headers["location"])["new_task"]
    new = eventually(lambda: memory_app.client().store.get(new_id))  # written after the send
    assert (new.name, new.args, new.kwargs, new.parent_id, new.root_id, new.queue) == (
        "tests.add", [2, 3], {"z": 1}, "old", "old", "celery")
    assert memory_app.client().broker.queue_stats("celery").ready == 1
    shown = http.get(done.headers["location"])
    assert f"Open the new task {new_id}" in shown.text
    failed = http.post("/actions/task.retry", data={"csrf_token": token, "target": "fine",
                                                    "next": "/workers"}, follow_redirects=False)
    message = flash(failed.headers["location"])["failed"]
    assert "fine is SUCCESS: only a FAILURE or REVOKED task can be retried" in message
    assert 'class="flash failed"' in http.get(failed.headers["location"]).text
    entries = audit_of(memory_app)
    assert [(e.action, e.target, e.outcome) for e in entries] == [
        ("task.retry", "fine", "failed"), ("task.retry", "old", "ok")]
    assert "only a FAILURE" in entries[0].detail["error"]
    assert entries[1].detail["new_task_id"] == new_id


def test_the_task_partial_offers_the_actions_that_make_sense():
    pages = Pages("proj")
    pages.env.globals.update(path_for=lambda name, **p: f"/{name}", task_href=lambda i: i)
    request = SimpleNamespace(url=SimpleNamespace(path="/tasks/t", query=""),
                              query_params={})
    partial = pages.env.get_template("actions/task.html")

    def offered(state: str, can_act: bool = True) -> list[str]:
        html = partial.render(task=SimpleNamespace(task_id="t", state=state),
                              can_act=can_act, request=request)
        return re.findall(r'data-action="([^"]+)"', html)

    assert offered("PENDING") == ["task.revoke"]
    assert offered("STARTED") == ["task.revoke", "task.terminate"]
    assert offered("FAILURE") == ["task.retry"]
    assert offered("REVOKED") == ["task.retry"]
    assert offered("SUCCESS") == []
    assert offered("STARTED", can_act=False) == []


def test_the_workers_pages_show_the_table_and_the_actions(memory_app, http, monkeypatch):
    monkeypatch.setattr("hutch.web.pages.workers.LIVE_TIMEOUT", 0.05)
    monkeypatch.setattr(actions, "WORKER_TIMEOUT", 0.05)
    beat(memory_app)
    listed = http.get("/workers")
    assert listed.status_code == 200
    assert 'data-worker="w1@host"' in listed.text and "no reply" in listed.text
    assert "50.0 MiB" in listed.text and "0.50 0.25 0.12" in listed.text
    assert 'data-action="worker.shutdown"' in listed.text
    one = http.get("/workers/w1@host")
    assert one.status_code == 200
    for name in ("worker.pool_grow", "worker.pool_shrink", "worker.add_consumer",
                 "worker.rate_limit", "worker.cancel_consumer", "worker.shutdown"):
        assert f'data-action="{name}"' in one.text, name
    assert http.get("/workers/nobody@host").status_code == 404
    nobody = http.post("/actions/worker.pool_grow", data={
        "csrf_token": csrf(http), "target": "w1@host", "n": "2", "next": "/workers/w1@host"},
        follow_redirects=False)
    assert "did not answer pool_grow" in flash(nobody.headers["location"])["failed"]
    [entry] = audit_of(memory_app)
    assert (entry.action, entry.outcome, entry.detail["n"]) == ("worker.pool_grow", "failed", 2)


def test_the_dead_letter_pages_list_show_replay_and_purge(memory_app, http):
    dead_letter(memory_app, "d1")
    dead_letter(memory_app, "d2", args=(5, 5))
    broker = memory_app.client().broker
    listed = http.get("/deadletters")
    assert listed.status_code == 200
    assert 'data-key="d1"' in listed.text and "NotRegistered" in listed.text
    assert http.get("/deadletters", params={"reason": "expired"}).text.count("data-key=") == 0
    shown = http.get("/deadletters/celery/d1")
    assert shown.status_code == 200
    assert re.search(r"\"args\": \[\s+2,\s+3\s+\]", shown.text), shown.text
    assert "dead_reason" in shown.text
    assert http.get("/deadletters/celery/nope").status_code == 404
    assert http.get("/deadletters", params={"queue": "x" * 300}).status_code == 400
    token = csrf(http)
    replayed = http.post("/actions/deadletter.replay", data={
        "csrf_token": token, "target": "celery", "key": "d1", "next": "/deadletters"},
        follow_redirects=False)
    assert "d1 replayed" in flash(replayed.headers["location"])["done"]
    assert broker.dead_letter_count("celery") == 1 and broker.queue_stats("celery").ready == 1
    assert memory_app.client().store.get("d1").state == "PENDING"
    purged = http.post("/actions/deadletter.purge", data={
        "csrf_token": token, "target": "celery", "next": "/deadletters"},
        follow_redirects=False)
    assert flash(purged.headers["location"])["done"] == "purged 1 dead letter(s) of celery"
    assert broker.dead_letter_count("celery") == 0
    assert [(e.action, e.target) for e in audit_of(memory_app)] == [
        ("deadletter.purge", "celery"), ("deadletter.replay", "d1")]


def test_a_read_only_user_sees_no_button_and_cannot_act(memory_app, users, monkeypatch):
    monkeypatch.setattr("hutch.web.pages.workers.LIVE_TIMEOUT", 0.05)
    memory_app.conf.web_users = users
    row(memory_app, "t1", "FAILURE", name="tests.add", args=[1], kwargs={})
    beat(memory_app)
    dead_letter(memory_app)
    with TestClient(create_app(memory_app), raise_server_exceptions=False) as client:
        viewer = basic("viewer")
        for page in ("/workers", "/workers/w1@host", "/deadletters", "/deadletters/celery/d1",
                     "/tasks/t1"):
            shown = client.get(page, headers=viewer)
            assert shown.status_code == 200 and "data-action" not in shown.text, page
        confirm = client.get("/actions/task.retry", params={"target": "t1"}, headers=viewer)
        assert confirm.status_code == 403 and "needs the admin role" in confirm.text
        assert "<button" not in confirm.text
        token = csrf(client, viewer)
        forged = client.post("/actions/task.retry", headers=viewer,
                             data={"csrf_token": token, "target": "t1"})
        assert forged.status_code == 403
        api = client.post("/api/v1/deadletters/celery/purge", json={},
                          headers={**viewer, "X-CSRF-Token": token})
        assert api.status_code == 403 and set(api.json()) == {"error", "field"}
        assert memory_app.client().broker.dead_letter_count("celery") == 1
        assert audit_of(memory_app) == []
        ann = basic("ann")
        assert 'data-action="worker.shutdown"' in client.get("/workers", headers=ann).text
        done = client.post("/api/v1/tasks/t1/retry", json={},
                           headers={**ann, "X-CSRF-Token": csrf(client, ann)})
        assert done.status_code == 200 and done.json()["retry_of"] == "t1"
        [entry] = audit_of(memory_app)
        assert (entry.actor, entry.role, entry.action) == ("ann", "admin", "task.retry")


@pytest.fixture
def api(http):
    http.headers["X-CSRF-Token"] = csrf(http)
    return http


def test_the_api_acts_and_answers_each_outcome(memory_app, api, monkeypatch):
    monkeypatch.setattr(actions, "WORKER_TIMEOUT", 0.05)
    row(memory_app, "t1", "STARTED", name="tests.add")
    row(memory_app, "t2", "REVOKED", name="tests.add", args=[4], kwargs={})
    dead_letter(memory_app, "d1")
    beat(memory_app)
    row(memory_app, "a/b?c", "PENDING", name="tests.add")
    odd = api.post("/api/v1/tasks/a%2Fb%3Fc/revoke").json()  # an id with URL characters
    assert odd["target"] == "a/b?c" and odd["marked"] == ["a/b?c"]
    answer = api.post("/api/v1/tasks/t1/revoke", json={"terminate": True, "signal": "kill"})
    assert answer.status_code == 200
    assert answer.json()["action"] == "task.terminate" and answer.json()["signal"] == "SIGKILL"
    retried = api.post("/api/v1/tasks/t2/retry").json()
    new = eventually(lambda: memory_app.client().store.get(retried["new_task_id"]))
    assert new.parent_id == "t2"
    letters = api.get("/api/v1/deadletters", params={"reason": "notregistered"}).json()
    assert [d["key"] for d in letters["items"]] == ["d1"] and letters["queue"] == "celery"
    one = api.get("/api/v1/deadletters/celery/d1").json()
    assert one["body"]["args"] == [2, 3] and one["headers"]["dead_by"] == "w@h:1"
    assert api.post("/api/v1/deadletters/celery/replay", json={"all": True}).json()[
        "replayed"] == 1
    assert api.post("/api/v1/deadletters/celery/purge").json()["purged"] == 0
    silent = api.post("/api/v1/workers/w1@host/rate_limit",
                      json={"task_name": "tests.add", "rate_limit": "10/m"})
    assert silent.status_code == 504 and "did not answer" in silent.json()["error"]
    trail = api.get("/api/v1/audit", params={"action": "task.terminate"}).json()["items"]
    assert [(e["target"], e["outcome"], e["actor"]) for e in trail] == [("t1", "ok", "anonymous")]
    assert len(api.get("/api/v1/audit").json()["items"]) == 6


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory):
    """One app and client for the table of bad inputs (none changes a task, queue or worker)."""
    path = tmp_path_factory.mktemp("bad-api") / "r.sqlite"
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{path}")
    row(app, "done", "SUCCESS", name="tests.add", args=[], kwargs={})
    beat(app)
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        client.headers["X-CSRF-Token"] = csrf(client)
        yield client
    app.close()


@pytest.mark.parametrize(("method", "url", "body", "status", "field"), [
    ("post", "/api/v1/tasks/t1/revoke", {"signal": "KILL"}, 400, "signal"),
    ("post", "/api/v1/tasks/t1/revoke", {"terminate": "yes"}, 400, "terminate"),
    ("post", "/api/v1/tasks/t1/revoke", {"terminate": True, "signal": "NOPE"}, 400, "signal"),
    ("post", "/api/v1/tasks/t1/revoke", [], 400, "body"),
    ("post", "/api/v1/tasks/t1/revoke", {"what": 1}, 400, "what"),
    ("post", "/api/v1/tasks/t1/revoke", {"signal": "x" * 70_000}, 400, "body"),
    ("post", f"/api/v1/tasks/{'x' * 200}/revoke", {}, 400, "task_id"),
    ("post", "/api/v1/tasks/nope/retry", {}, 404, "task_id"),
    ("post", "/api/v1/tasks/done/retry", {}, 409, "task_id"),
    ("post", "/api/v1/deadletters/celery/replay", {}, 400, "key"),
    ("post", "/api/v1/deadletters/celery/replay", {"key": "d9", "all": True}, 400, "key"),
    ("post", "/api/v1/deadletters/celery/replay", {"key": "d9"}, 404, "key"),
    ("post", "/api/v1/deadletters/celery/replay", {"all": "maybe"}, 400, "all"),
    ("post", "/api/v1/workers/w1@host/explode", {}, 404, "command"),
    ("post", "/api/v1/workers/nobody@host/shutdown", {}, 404, "hostname"),
    ("post", "/api/v1/workers/w1@host/pool_grow", {"n": 0}, 400, "n"),
    ("post", "/api/v1/workers/w1@host/pool_grow", {"n": True}, 400, "n"),
    ("post", "/api/v1/workers/w1@host/add_consumer", {}, 400, "queue"),
    ("post", "/api/v1/workers/w1@host/rate_limit", {"task_name": "a", "rate_limit": "fast"},
     400, "rate_limit"),
    ("get", "/api/v1/deadletters?limit=0", None, 400, "limit"),
    ("get", "/api/v1/deadletters?color=red", None, 400, "color"),
    ("get", "/api/v1/deadletters/celery/nope", None, 404, "key"),
    ("get", "/api/v1/deadletters/a%0Ab/k", None, 404, "key"),  # JSON even with a newline
    ("get", f"/api/v1/deadletters?queue={'q' * 300}", None, 400, "queue"),
    ("get", f"/api/v1/deadletters/{'q' * 300}/k", None, 400, "queue"),
    ("post", f"/api/v1/deadletters/{'q' * 300}/purge", {}, 400, "queue"),
    ("get", "/api/v1/audit?limit=501", None, 400, "limit"),
    ("get", "/api/v1/audit?limit=x", None, 400, "limit"),
])
def test_bad_api_input_is_a_json_error_naming_the_field(shared_api, method, url, body,
                                                        status, field):
    api = shared_api
    answer = api.request(method, url, json=body) if body is not None else api.request(method, url)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and set(answer.json()) == {"error", "field"}


def test_the_actions_are_described_in_openapi(http):
    paths = http.get("/api/openapi.json").json()["paths"]
    for path in ("/api/v1/tasks/{task_id}/revoke", "/api/v1/tasks/{task_id}/retry",
                 "/api/v1/deadletters", "/api/v1/deadletters/{queue}/{key}",
                 "/api/v1/deadletters/{queue}/replay", "/api/v1/deadletters/{queue}/purge",
                 "/api/v1/workers/{hostname}/{command}", "/api/v1/audit"):
        assert path in paths, path
    revoke = paths["/api/v1/tasks/{task_id}/revoke"]["post"]
    assert revoke["summary"].endswith("(admin action)")
    assert set(revoke["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {
        "terminate", "signal"}
    worker = paths["/api/v1/workers/{hostname}/{command}"]["post"]
    assert {"400", "404", "409", "504"} <= set(worker["responses"])
