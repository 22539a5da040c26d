"""The read pages in a real browser (Chromium through playwright) against a live hutch
web on RabbitMQ and PostgreSQL, with rows a real worker made (and 1,000 more written
straight to the table, spread over the last hour, for the long page and the chart):
the task list filters by state and by name through its form, a failed task's page
shows its traceback, a page of 1,000 rows renders, the overview draws its chart and
refreshes itself (hutch-live.js) when a task finishes, the queues page shows the
worker's queue. One worker and one server for the module. Screenshots: overview,
tasks, task, queues (``make screenshots`` puts them in docs/images)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from playwright.sync_api import expect

from apps.tasks import make_app
from hutch.results.records import StateChange
from hutch.web.pages import overview as overview_page
from support.browser import LiveWeb
from support.processes import WorkerProc, worker_env
from support.rabbit import delete_prefixed

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq, pytest.mark.postgres]

BULK = 1000


class Scene:
    """What the module's worker made: ``ids`` by label, and the live server's ``url``."""

    def __init__(self, app, url: str, ids: dict[str, str]) -> None:
        self.app, self.url, self.ids = app, url, ids


def _bulk_rows(now: dt.datetime) -> list[StateChange]:
    """``BULK`` finished tasks over the last hour: one in 9 failed, one in 7 retried."""
    rows = []
    for n in range(BULK):
        ended = now - dt.timedelta(seconds=3.5 * n + 5)
        state = "FAILURE" if n % 9 == 0 else "SUCCESS"
        rows.append(StateChange(task_id=f"bulk-{n:04d}", state=state, name="tests.bulk",
                                args=[n], queue="celery", worker="bulk@host:1",
                                retries=1 if n % 7 == 0 else 0,
                                created_at=ended - dt.timedelta(seconds=2),
                                received_at=ended - dt.timedelta(seconds=1.5),
                                started_at=ended - dt.timedelta(seconds=0.05 + (n % 13) / 10),
                                finished_at=ended))
    return rows


@pytest.fixture(scope="module")
def scene(amqp_url, postgres_server, postgres_template):
    prefix = f"hutchtest.{uuid.uuid4().hex[:10]}"
    url = postgres_server.create(template=postgres_template)
    app = make_app(amqp_url, url, topology_prefix=prefix)
    worker = WorkerProc(worker_env(amqp_url, url, prefix, HUTCH_WORKER_HEARTBEAT_INTERVAL="0.5"),
                        pool="threads", concurrency=2).start()
    web = None
    try:
        worker.wait_ready()
        app.client().store.write(_bulk_rows(dt.datetime.now(dt.timezone.utc)))
        t = app.tasks
        sent = {"add": t["tests.add"].delay(2, 3), "echo": t["tests.echo"].delay("needle"),
                "fail": t["tests.fail"].delay("it broke"), "retry": t["tests.retry_once"].delay(0.2)}
        for name, result in sent.items():
            result.get(timeout=20, propagate=name != "fail")
        web = LiveWeb(app).start()
        yield Scene(app, web.url, {name: r.id for name, r in sent.items()})
    finally:
        if web is not None:
            web.stop()
        worker.stop()
        app.close()
        postgres_server.drop(url)
        delete_prefixed(prefix)


def _states(page) -> set[str]:
    return set(page.locator("tr.task .state").all_inner_texts())


def test_the_task_list_filters_by_state_and_by_name(scene, browser_page, screenshot):
    page = browser_page
    page.goto(scene.url + "/tasks")
    assert page.locator("tr.task").count() == 50
    page.check("input[name=state][value=FAILURE]")
    page.fill("input[name=queue]", "celery")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/tasks?state=FAILURE*")
    assert _states(page) == {"FAILURE"}
    assert page.locator("input[name=state][value=FAILURE]").is_checked()
    assert page.locator(f"tr.task a:text-is('{scene.ids['fail']}')").count() == 1
    screenshot(page, "tasks")

    page.uncheck("input[name=state][value=FAILURE]")
    page.fill("input[name=name]", "tests.echo")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**name=tests.echo*")
    assert page.locator("tr.task td.id").all_inner_texts() == [scene.ids["echo"]]
    page.fill("input[name=finished_after]", "last tuesday")
    page.click("form.filters button[type=submit]")
    assert page.locator("#error-finished_after").inner_text() == (
        "finished_after must be a time in ISO 8601 (2026-01-31T12:00:00Z)")


def test_a_failed_task_shows_its_traceback(scene, browser_page, screenshot):
    page = browser_page
    page.goto(scene.url + "/tasks?state=FAILURE&name=tests.fail")
    page.click(f"tr.task a:text-is('{scene.ids['fail']}')")
    page.wait_for_url(f"**/tasks/{scene.ids['fail']}")
    traceback = page.locator("pre.traceback").inner_text()
    assert traceback.startswith("Traceback (most recent call last):") and "it broke" in traceback
    assert "CustomError" in page.locator("p.exception").inner_text()
    screenshot(page, "task")


def test_a_page_of_a_thousand_rows_renders(scene, browser_page):
    page = browser_page
    answer = page.goto(scene.url + "/tasks?limit=1000&name=tests.bulk&sort=-finished")
    assert answer is not None and answer.status == 200
    assert page.locator("tr.task").count() == BULK
    assert page.locator("tr.task td.id").first.inner_text() == "bulk-0000"
    assert page.locator("tr.task td.id").last.inner_text() == f"bulk-{BULK - 1:04d}"
    assert page.locator("a.next").count() == 0, "all of them on one page"


def test_the_overview_draws_its_chart_and_refreshes_itself(scene, browser_page, screenshot,
                                                          monkeypatch):
    monkeypatch.setattr(overview_page, "LIVE_SECONDS", 2)
    errors: list[str] = []
    page = browser_page
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(scene.url + "/")
    assert page.locator("figure.chart svg polyline").count() == 3
    assert page.locator("figure.chart svg rect.slot").count() == 60
    assert page.locator("figure.chart svg polyline.series-succeeded").get_attribute("points")
    assert page.locator("[data-field=workers-online]").inner_text() == "1"
    finished = int(page.locator("[data-field=finished]").inner_text())
    assert finished >= BULK + 4
    screenshot(page, "overview")

    scene.app.tasks["tests.add"].delay(1, 1).get(timeout=20)
    expect(page.locator("[data-field=finished]")).to_have_text(str(finished + 1),
                                                               timeout=10_000)
    assert errors == [], "the CSP let the script run"
    page.click("text=last day, per 15 minutes")
    assert page.locator("figure.chart svg rect.slot").count() == 96


def test_the_queues_page_shows_the_workers_queue(scene, browser_page, screenshot):
    page = browser_page
    page.goto(scene.url + "/queues")
    default = scene.app.conf.task_default_queue
    row = page.locator("tr.queue", has=page.locator(f"td.name:text-is('{default}')"))
    cells = row.locator("td").all_inner_texts()
    assert cells[1:5] == ["0", "n/a", "1", "0"], "ready, unacked, consumers, dead letters"
    screenshot(page, "queues")
