"""The dashboard's actions in a real browser (Chromium through playwright) against a
live ``hutch web`` on the real RabbitMQ and PostgreSQL with one real prefork worker:
terminating a running task from its page, reached from the worker's (button, confirm
page, POST, the result shown back on the page), revokes its row and stops it; replaying a dead letter
from the dead-letter page runs its task; a read-only user sees no action button and
a POST forged with their credentials and CSRF token is refused. Screenshots:
workers, worker, deadletters, confirm."""

from __future__ import annotations

import uuid

import pytest

from hutch.messages import TaskMessage, refused
from hutch.ops.audit import AuditLog
from hutch.web.passwords import hash_password
from support.waiting import eventually
from support.web_worker import module_prefix, node, web_app, web_worker

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq, pytest.mark.postgres]
FIXTURES = (module_prefix, node, web_app, web_worker)
"""support.web_worker's fixtures, for this module's tests."""


def state_of(app, task_id: str) -> str | None:
    record = app.client().store.get(task_id)
    return record.state if record else None


def test_terminating_from_the_task_page_stops_the_task(web_app, web_worker, node, live_web,
                                                      browser_page, screenshot):
    running = web_app.send_task("tests.sleep", (60,))
    assert eventually(lambda: state_of(web_app, running.id) == "STARTED", 20)
    web = live_web(web_app)
    page = browser_page
    errors: list[str] = []  # the CSP holds: no inline script or style on any page
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(web.url + "/workers")
    row = page.locator(f'tr[data-worker="{node}"]')
    assert row.locator(".state").inner_text() == "online"
    screenshot(page, "workers")
    row.locator(f'a:text("{node}")').click()
    task_row = page.locator(f'tr[data-task="{running.id}"]')
    task_row.wait_for()  # the worker says it runs it
    screenshot(page, "worker")
    task_row.locator(f'a:text("{running.id}")').click()  # to the task's page
    page.locator('button[data-action="task.terminate"]').click()
    assert page.locator("p.question").inner_text().startswith(f"Terminate task {running.id}?")
    screenshot(page, "confirm")
    page.locator("button.danger").click()
    assert "revoked" in page.locator(".flash.done").inner_text()  # the result page
    page.locator("a.back").click()
    assert page.url == f"{web.url}/tasks/{running.id}"
    assert eventually(lambda: state_of(web_app, running.id) == "REVOKED", 20)
    page.reload()
    assert page.locator(".state-revoked").first.inner_text() == "REVOKED"
    assert page.locator('button[data-action="task.retry"]').count() == 1  # now it may be
    active = web_app.control.inspect([node], timeout=1).active() or {}
    assert running.id not in {t["id"] for t in active.get(node, [])}
    assert errors == []
    [entry] = AuditLog(web_app.client().store).entries(target=running.id)
    assert (entry.action, entry.outcome, entry.client) == ("task.terminate", "ok", "127.0.0.1")


def test_replaying_a_dead_letter_from_the_page_runs_its_task(web_app, web_worker, live_web,
                                                             browser_page, screenshot):
    task_id = str(uuid.uuid4())
    wire = TaskMessage(task="tests.add", id=task_id, args=(40, 2), queue="celery").encode()
    web_app.client().broker.publish_dead("celery", refused(wire, "shown: a test refusal",
                                                           "w@h:1"))
    web = live_web(web_app)
    page = browser_page
    page.goto(web.url + "/deadletters?queue=celery")
    row = page.locator(f'tr[data-key="{task_id}"]')
    assert "a test refusal" in row.inner_text()
    screenshot(page, "deadletters")
    row.locator('button[data-action="deadletter.replay"]').click()
    page.locator("button.danger").click()
    assert f"dead letter {task_id} replayed" in page.locator(".flash.done").inner_text()
    page.locator("a.back").click()
    assert page.locator(f'tr[data-key="{task_id}"]').count() == 0  # gone from the list
    assert eventually(lambda: state_of(web_app, task_id) == "SUCCESS", 20)
    assert web_app.client().store.get(task_id).result == 42


def test_a_read_only_user_cannot_act(web_app, web_worker, node, live_web, browser_page):
    failed = web_app.send_task("tests.fail", ("no retry for readers",))
    assert eventually(lambda: state_of(web_app, failed.id) == "FAILURE", 20)
    web_app.client().broker.publish_dead("celery", TaskMessage(
        task="tests.add", id=str(uuid.uuid4()), args=(1, 1), queue="celery").encode())
    web_app.conf.web_users = {"viewer": {"password_hash": hash_password("pw"), "role": "read"}}
    try:
        web = live_web(web_app)
    finally:
        web_app.conf.web_users = {}
    context = browser_page.context.browser.new_context(
        http_credentials={"username": "viewer", "password": "pw"})
    try:
        page = context.new_page()
        for path in ("/workers", f"/workers/{node}", "/deadletters?queue=celery",
                     f"/tasks/{failed.id}"):
            assert page.goto(web.url + path).status == 200, path
            assert page.locator("[data-action]").count() == 0, path
        confirm = page.goto(f"{web.url}/actions/task.retry?target={failed.id}")
        assert confirm.status == 403 and page.locator("button").count() == 0
        token = page.request.get(web.url + "/api/v1/auth/me").json()["csrf_token"]
        forged = page.request.post(f"{web.url}/actions/task.retry",
                                   form={"csrf_token": token, "target": failed.id})
        assert forged.status == 403
        assert web_app.client().store.children(failed.id) == []
        assert AuditLog(web_app.client().store).entries(target=failed.id) == []
    finally:
        context.close()
