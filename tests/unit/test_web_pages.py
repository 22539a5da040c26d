"""hutch web's read pages (issue #14, "Pages") with Starlette's TestClient on memory://
and SQLite, rows written through the result store: the overview (its figures, per
bucket, and the chart), ``/api/v1/overview``, the task list (every filter the form
sends, sort links, keyset pages followed to the end, a page of 1,000 rows), one task
(traceback, timeline, workflow), the queues; bad input is a 400 page with the API's
message beside its field, an unknown task a 404, hostile text is escaped. On RabbitMQ
and PostgreSQL with a real worker: tests/integration/test_web_pages_rabbitmq.py; in a
browser: tests/browser/test_browser_pages.py."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from apps.tasks import make_app
from hutch.errors import BackendError, BrokerUnavailable
from hutch.ops import tasks as ops_tasks
from hutch.ops.overview import WINDOWS, percentiles, task_figures
from hutch.results.records import StateChange
from hutch.web.app import create_app
from hutch.workflows.plan import GroupRow

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
HOSTILE = "<script>alert('x')</script>"
SENT: list[str] = []
"""Ids of the two tasks the module's app sends to the queue ``idle`` (PENDING rows)."""


def ago(minutes: float, seconds: float = 0) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes, seconds=seconds)


def row(task_id: str, state: str, minutes: float, run: float = 1.0, **fields) -> StateChange:
    """A task finished ``minutes`` ago after running ``run`` seconds (if it ended)."""
    ended = state in ("SUCCESS", "FAILURE", "REVOKED", "RETRY")
    return StateChange(task_id=task_id, state=state, created_at=ago(minutes, run + 1),
                       received_at=ago(minutes, run + 0.5),
                       started_at=ago(minutes, run) if state != "PENDING" else None,
                       finished_at=ago(minutes) if ended else None, **fields)


ROWS = [
    row("p-ok-1", "SUCCESS", 2, 1.0, name="tests.add", args=[1, 2], result=3, queue="celery",
        worker="w1@h:11", root_id="p-ok-1"),
    row("p-ok-2", "SUCCESS", 2, 3.0, name="tests.add", args=[2, 2], result=4, queue="celery",
        worker="w1@h:11", retries=1, parent_id="p-ok-1", root_id="p-ok-1"),
    row("p-fail", "FAILURE", 10, 2.0, name="tests.fail", args=[HOSTILE], queue="other",
        worker="w2@h:12", exception_type="ValueError", exception_message="it <b>broke</b>",
        traceback="Traceback (most recent call last):\n  File \"x.py\"\nValueError: it broke",
        parent_id="p-ok-1", root_id="p-ok-1", group_id="g-chord",
        stamps={"tenant": "<acme>", "batch": [1, 2]}),
    row("p-retry", "RETRY", 10, 1.0, name="tests.flaky", kwargs={"n": 1}, queue="celery",
        worker="w1@h:11", retries=2, schedule_name="nightly", group_id="g-chord"),
    row("p-old", "SUCCESS", 120, 4.0, name="tests.add", args=[0, 0], queue="celery"),
    row("p-wait", "PENDING", 1, name="tests.echo", args=["needle"], queue="other"),
    row("p-gone", "REVOKED", 5, name="tests.sleep", queue="other"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One app for the module (memory:// broker, a SQLite file), its rows and groups."""
    folder = tmp_path_factory.mktemp("pages")
    hutch_app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{folder / 'r.sqlite'}")
    hutch_app.conf.task_queues = {"idle": {}}
    store = hutch_app.client().store
    store.write(ROWS)
    store.insert_groups([GroupRow("g-chord", ["p-fail", "p-retry"], parent_id="p-ok-1",
                                  root_id="p-ok-1", body={"task": "tests.add"},
                                  body_id="p-body")])
    SENT[:] = [hutch_app.send_task("tests.add", (1, 1), queue="idle").id for _ in range(2)]
    assert hutch_app.client().flush(), "their PENDING rows are written (they linger 50 ms)"
    yield hutch_app
    hutch_app.close()


@pytest.fixture(scope="module")
def http(app):
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        yield client


def listed(page: str) -> list[str]:
    """Task ids of the rows of a task list page, in order."""
    return re.findall(r'<tr class="task"><td class="id"><a href="[^"]+">([^<]+)</a>', page)


def ok(http, url: str, **params) -> str:
    answer = http.get(url, params=params or None)  # params={} would drop the url's query
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "style=" not in answer.text, "CSP: no inline style"
    assert all(" src=" in tag for tag in re.findall(r"<script[^>]*>", answer.text))
    return answer.text


# -- the overview ---------------------------------------------------------------------


def test_the_overview_counts_the_last_hour_per_minute(app):
    figures = task_figures(app.client().store, WINDOWS["hour"], NOW)
    assert len(figures.buckets) == 60 and figures.until == NOW
    assert figures.since == NOW.replace(second=0) - dt.timedelta(minutes=59)
    by_start = {b.start: b for b in figures.buckets}
    two_ago = by_start[ago(2).replace(second=0)]
    assert (two_ago.succeeded, two_ago.failed, two_ago.retried, two_ago.finished) == (2, 0, 1, 2)
    ten_ago = by_start[ago(10).replace(second=0)]
    assert (ten_ago.succeeded, ten_ago.failed, ten_ago.retried, ten_ago.finished) == (0, 1, 1, 1)
    assert [figures.total(k) for k in ("succeeded", "failed", "retried", "finished")] == [
        2, 1, 2, 4], "p-old is out of the hour, p-wait has not finished"
    assert figures.failure_rate == pytest.approx(1 / 3)
    assert figures.throughput == pytest.approx(4 / ((NOW - figures.since).total_seconds() / 60))
    assert figures.sampled == 3, "runs that ended in SUCCESS or FAILURE (not REVOKED, RETRY)"
    assert figures.runtime[50] == pytest.approx(2.0) and figures.runtime[99] == pytest.approx(2.98)


def test_the_day_window_has_quarter_hours_and_holds_older_tasks(app):
    figures = task_figures(app.client().store, WINDOWS["day"], NOW)
    assert len(figures.buckets) == 96
    assert {b.start.minute for b in figures.buckets} <= {0, 15, 30, 45}
    assert figures.total("succeeded") == 3 and figures.total("finished") == 5


def test_percentiles_interpolate_between_ranks():
    assert percentiles([], (50,)) == {}
    assert percentiles([4.0, 1.0, 3.0, 2.0], (0, 50, 100)) == {0: 1.0, 50: 2.5, 100: 4.0}
    assert percentiles(list(range(101)), (95, 99)) == {95: 95.0, 99: 99.0}


def test_the_overview_page_draws_the_chart_and_the_figures(http):
    page = ok(http, "/")
    assert page.count('<polyline class="series series-') == 3
    assert page.count('<rect class="slot"') == 60
    assert "succeeded 2" in page and "failed 1" in page and "retried 2" in page
    assert 'data-field="failure-rate">33.3 %' in page
    assert 'data-field="p50">2.00 s' in page and 'data-field="workers-online">0' in page
    assert '<td>idle</td><td class="num">2</td>' in page, "the queue's depth"
    assert 'href="/healthz"' in page and 'href="/readyz"' in page
    assert 'data-live="5"' in page and "hutch-live.js" in page
    day = ok(http, "/", window="day")
    assert day.count('<rect class="slot"') == 96 and "<strong>last day, per 15 minutes" in day


def test_a_bad_window_is_a_400_page(http):
    answer = http.get("/", params={"window": "week"})
    assert answer.status_code == 400
    assert "window must be one of hour, day" in answer.text


def test_the_overview_endpoint_answers_the_same_figures(http):
    body = http.get("/api/v1/overview").json()
    assert (body["window"], body["bucket_seconds"], len(body["buckets"])) == ("hour", 60, 60)
    assert body["totals"] == {"succeeded": 2, "failed": 1, "retried": 2, "finished": 4}
    assert body["runtime_seconds"]["p50"] == pytest.approx(2.0) and body["runtime_sampled"] == 3
    assert body["workers"] == {"online": 0, "stopping": 0, "offline": 0}
    idle = next(q for q in body["queues"] if q["name"] == "idle")
    assert (idle["ready"], idle["consumers"], idle["dead_letters"]) == (2, 0, 0)
    assert body["delayed"] == 0 and body["errors"] == []
    assert http.get("/api/v1/overview", params={"window": "day"}).json()["bucket_seconds"] == 900
    bad = http.get("/api/v1/overview", params={"window": "year"})
    assert bad.status_code == 400 and bad.json()["field"] == "window"
    assert http.get("/api/v1/overview", params={"x": "1"}).status_code == 400
    assert "/api/v1/overview" in http.get("/api/openapi.json").json()["paths"]


# -- the task list --------------------------------------------------------------------


def test_the_task_list_shows_every_task_newest_first(http):
    page = ok(http, "/tasks")
    newest_first = sorted(ROWS, key=lambda r: (r.created_at, r.task_id), reverse=True)
    shown = listed(page)
    assert set(shown[:2]) == set(SENT), "sent last, so newest"
    assert shown[2:] == [r.task_id for r in newest_first]
    assert 'href="/tasks/p-fail"' in page and "w2@h:12" in page
    assert 'data-live="5"' in page, "the first page refreshes itself"


@pytest.mark.parametrize(("params", "expected"), [
    ({"state": ["FAILURE", "RETRY"]}, {"p-fail", "p-retry"}),
    ({"state": "SUCCESS", "name": "tests.add"}, {"p-ok-1", "p-ok-2", "p-old"}),
    ({"queue": "other"}, {"p-fail", "p-wait", "p-gone"}),
    ({"worker": "w1@h"}, {"p-ok-1", "p-ok-2", "p-retry"}),
    ({"schedule": "nightly"}, {"p-retry"}),
    ({"root_id": "p-ok-1"}, {"p-ok-1", "p-ok-2", "p-fail"}),
    ({"group_id": "g-chord"}, {"p-fail", "p-retry"}),
    ({"parent_id": "p-ok-1"}, {"p-ok-2", "p-fail"}),
    ({"search": "needle"}, {"p-wait"}),
    ({"search": "p-old"}, {"p-old"}),
    ({"finished_after": ago(3).isoformat(), "finished_before": NOW.isoformat()},
     {"p-ok-1", "p-ok-2"}),
    ({"received_after": ago(6).strftime("%Y-%m-%dT%H:%M:%S")}, {"p-ok-1", "p-ok-2", "p-wait",
                                                                  "p-gone"}),
    ({"name": "", "queue": "other", "state": "", "search": ""}, {"p-fail", "p-wait", "p-gone"}),
])
def test_the_filters_the_form_sends_apply(http, params, expected):
    page = ok(http, "/tasks", **params)
    assert set(listed(page)) == expected
    for state in params.get("state", []) if isinstance(params.get("state"), list) else []:
        assert f'value="{state}" checked' in page, "the form keeps what was chosen"


def test_the_sort_links_keep_the_filters_and_turn_the_order(http):
    page = ok(http, "/tasks", queue="other", sort="name")
    assert 'href="/tasks?queue=other&amp;sort=-name">name ▲</a>' in page
    assert 'href="/tasks?queue=other&amp;sort=-created">created</a>' in page
    assert listed(page) == ["p-wait", "p-fail", "p-gone"], "echo, fail, sleep"
    assert listed(ok(http, "/tasks", queue="other", sort="-name")) == ["p-gone", "p-fail",
                                                                      "p-wait"]


def test_keyset_pages_walk_the_whole_list_without_repeats(http):
    seen: list[str] = []
    url = "/tasks?sort=finished&limit=2"
    for _ in range(10):
        page = ok(http, url)
        seen += listed(page)
        found = re.search(r'<a class="next" rel="next" href="([^"]+)"', page)
        if found is None:
            break
        url = html.unescape(found.group(1))
        assert "cursor=" in url and "offset" not in url
        assert "first page" in ok(http, url)
    finished = sorted((r for r in ROWS if r.finished_at), key=lambda r: (r.finished_at, r.task_id))
    unfinished = sorted(["p-wait", *SENT])
    assert seen == [r.task_id for r in finished] + unfinished, "unfinished last, by id"
    assert 'data-live' not in ok(http, url), "a later page stays as it is"


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"limit": "ten"}, "limit", "limit must be an integer"),
    ({"limit": "1001"}, "limit", "limit must be between 1 and 1000"),
    ({"state": "DONE"}, "state", "state &#39;DONE&#39; is not one of"),
    ({"finished_after": "yesterday"}, "finished_after", "finished_after must be a time in ISO 8601"),
    ({"sort": "colour"}, "sort", "sort must be one of"),
    ({"cursor": "not-a-cursor"}, "cursor", "cursor is not one this API gave out"),
    ({"colour": "red"}, "colour", "unknown parameter &#39;colour&#39;"),
    ({"name": "a\x00b"}, "name", "name must not hold a NUL character"),
])
def test_bad_filters_are_a_400_page_with_the_message(http, params, field, message):
    answer = http.get("/tasks", params=params)
    assert answer.status_code == 400, answer.text
    assert message in answer.text and "Bad request" in answer.text
    if field in ("limit", "finished_after", "name"):
        assert f'aria-describedby="error-{field}"' in answer.text, "beside its field"
    assert "Traceback" not in answer.text


def test_a_page_of_a_thousand_rows_renders(tmp_path):
    hutch_app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    try:
        hutch_app.client().store.write([row(f"k{n:04d}", "SUCCESS", n / 100, name="tests.add",
                                            args=[n]) for n in range(1001)])
        with TestClient(create_app(hutch_app)) as http:
            page = ok(http, "/tasks", limit="1000")
            ids = listed(page)
            assert len(ids) == 1000 and len(set(ids)) == 1000 and ids[0] == "k0000"
            last = re.search(r'<a class="next" rel="next" href="([^"]+)"', page)
            assert last is not None
            assert listed(ok(http, html.unescape(last.group(1)))) == ["k1000"]
    finally:
        hutch_app.close()


# -- one task -------------------------------------------------------------------------


def test_a_failed_task_shows_its_error_traceback_timeline_and_workflow(http):
    page = ok(http, "/tasks/p-fail")
    assert '<pre class="traceback">Traceback (most recent call last):' in page
    assert "<strong>ValueError</strong>: it &lt;b&gt;broke&lt;/b&gt;" in page
    assert "w2@h:12" in page
    for event in ("sent", "received", "started", "finished"):
        assert f'<span class="event">{event}</span>' in page
    assert 'parent: <a href="/tasks/p-ok-1">p-ok-1</a>' in page
    assert "member of" in page and "chord <code>g-chord</code>: 2 tasks" in page
    assert 'body <a href="/tasks/p-body">p-body</a>' in page
    assert '<li class="this"><a href="/tasks/p-fail">' in page
    assert 'href="/tasks/p-retry">p-retry</a> tests.flaky' in page


def test_the_task_page_shows_its_stamps_or_says_it_has_none(http):
    page = ok(http, "/tasks/p-fail")
    assert ('<tr><th>stamps</th><td class="stamps"><code>batch</code>: <code>[1, 2]</code>, '
            '<code>tenant</code>: <code>"\\u003cacme\\u003e"</code></td></tr>') in page
    assert '<tr><th>stamps</th><td class="stamps">none</td></tr>' in ok(http, "/tasks/p-ok-1")


def test_a_parent_lists_its_children_and_the_chord_it_started(http):
    page = ok(http, "/tasks/p-ok-1")
    assert "children: 2" in page
    assert 'href="/tasks/p-ok-2">p-ok-2</a> tests.add <span class="state state-success">' in page
    assert "started" in page and "chord <code>g-chord</code>" in page
    assert "<pre class=\"value result\">3</pre>" in page


def test_a_retried_task_says_what_is_known_of_its_attempts(http):
    page = ok(http, "/tasks/p-retry")
    assert "2 earlier attempts: times not recorded" in page  # no RETRY of theirs was written
    assert '<span class="event">attempt 3 failed</span>' in page
    assert "attempt 4, not received yet" in page
    assert 'href="/tasks?schedule=nightly"' in page


def test_hostile_text_is_escaped_everywhere(http):
    for url in ("/tasks/p-fail", "/tasks?queue=other", f"/tasks?name={HOSTILE}"):
        page = http.get(url).text
        assert "<script>alert" not in page, url
    assert "&lt;script&gt;alert(" in http.get("/tasks/p-fail").text


def test_a_task_id_with_url_characters_links_to_its_page(memory_app):
    odd = "a/b?c#d %e&f\"<g>"
    memory_app.client().store.write([StateChange(task_id=odd, state="SUCCESS", name="x")])
    with TestClient(create_app(memory_app)) as http:
        href = re.search(r'<td class="id"><a href="([^"]+)"', ok(http, "/tasks")).group(1)
        assert href == "/tasks/a/b%3Fc%23d%20%25e%26f%22%3Cg%3E"
        assert f"<h1>Task <code>{escape(odd)}</code></h1>" in ok(http, href)


def test_an_unknown_task_is_a_404_page(http):
    for task_id in ("no-such-task", "a%00b"):
        answer = http.get(f"/tasks/{task_id}")
        assert answer.status_code == 404, task_id
        assert "Not found" in answer.text and "no task" in answer.text
        assert answer.headers["content-type"].startswith("text/html")


# -- queues ---------------------------------------------------------------------------


def test_the_queues_page_lists_every_route_with_its_depth(http):
    page = ok(http, "/queues")
    rows = re.findall(r'<tr class="queue"><td class="name">([^<]+)</td><td class="num">(\d+)</td>'
                      r'<td class="num">([^<]+)</td><td class="num">(\d+)</td>'
                      r'<td class="num">(\d+)</td><td>([^<]+)</td>', page)
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["idle"] == ("2", "0", "0", "0", "task_queues")
    assert by_name["celery"][3:] == ("0", "default")
    assert '<strong class="delayed">0</strong>' in page
    assert 'href="/tasks?queue=idle"' in page
    assert http.get("/queues", params={"x": "1"}).status_code == 400


# -- sources that fail ----------------------------------------------------------------


def test_a_broker_that_fails_leaves_the_queues_out_of_the_overview(app, http, monkeypatch):
    def down(*_):
        raise BrokerUnavailable("connection refused by amqp://guest:secret@10.0.0.9")

    monkeypatch.setattr(type(app.client().broker), "queue_stats", down)
    page = ok(http, "/")
    assert "the broker is unavailable: queues left out" in page and "succeeded 2" in page
    assert "secret" not in page and "10.0.0.9" not in page
    body = http.get("/api/v1/overview").json()
    assert body["queues"] is None and body["errors"] == ["the broker is unavailable: queues left out"]
    answer = http.get("/queues")
    assert answer.status_code == 503 and "the broker is unavailable" in answer.text
    assert "secret" not in answer.text


def test_a_database_that_fails_is_a_503_page(http, monkeypatch):
    def down(*_, **__):
        raise BackendError("could not connect to postgresql://u:secret@db.internal/hutch")

    monkeypatch.setattr(ops_tasks, "list_tasks", down)
    answer = http.get("/tasks")
    assert answer.status_code == 503
    assert "the result database is unavailable" in answer.text and "secret" not in answer.text
