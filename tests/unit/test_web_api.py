"""hutch web's JSON API (issue #14) with Starlette's TestClient on memory:// and SQLite,
rows written through the result store: every filter of the task list, keyset pages
(no duplicate, no gap, stable on ties, nulls last), one task, workers, queues, stats,
Flower's shapes, the OpenAPI description, and a table of bad input thrown at every
endpoint (always a 4xx JSON error naming the field, never a 500). On RabbitMQ and
PostgreSQL with a real worker: tests/integration/test_web_api_rabbitmq.py."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from hutch.ops.tasks import MAX_LIMIT, TaskFilters, list_tasks
from hutch.results.records import ALL_STATES, StateChange
from hutch.results.workers import WorkerBeat, WorkerStore
from hutch.web.api import ADMIN_ACTIONS, OPERATIONS, api_routes
from hutch.web.app import create_app

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def change(task_id: str, state: str, minute: float, **fields) -> StateChange:
    received = fields.pop("received_at", at(minute + 1))
    finished = at(minute + 2) if state in ("SUCCESS", "FAILURE", "REVOKED") else None
    return StateChange(task_id=task_id, state=state, created_at=at(minute),
                       received_at=received, finished_at=fields.pop("finished_at", finished),
                       **fields)


ROWS = [
    change("t01", "SUCCESS", 0, name="tests.add", args=[1, 2], kwargs={}, result=3,
           queue="celery", worker="w1@h:101", root_id="t01"),
    change("t02", "FAILURE", 1, name="tests.fail", args=["boom"], queue="celery",
           worker="w2@h", exception_type="ValueError", exception_message="Bad 50%_off",
           traceback="Traceback (most recent call last):\n  ValueError", root_id="t01",
           parent_id="t01"),
    change("t03", "PENDING", 2, name="tests.add", args=[2, 2], queue="other", received_at=None),
    change("t04", "STARTED", 3, name="tests.sleep", args=[5], queue="other", worker="w1@h",
           group_id="g1"),
    change("t05", "SUCCESS", 3, name="tests.sleep", args=[5], queue="other", worker="w2@h:7",
           group_id="g1", result="slept"),
    change("t06", "RETRY", 5, name="tests.flaky", kwargs={"when": "Tomorrow"}, retries=1,
           queue="celery", worker="w1@h", schedule_name="nightly"),
    change("t07", "REVOKED", 6, name="tests.add", args=[0, 0], queue="celery"),
    change("t08", "SUCCESS", 7, name="tests.echo", args=["needle in args"], queue="celery",
           worker="w1@h", result={"k": "v"}, stamps={"tenant": "acme", "batch": [1, 2]}),
]
ALL_IDS = [r.task_id for r in ROWS]


@pytest.fixture
def app(memory_app):
    memory_app.client().store.write(ROWS)
    return memory_app


@pytest.fixture
def http(app):
    """As a page of the dashboard calls it: with the CSRF token of its cookie."""
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        client.headers["X-CSRF-Token"] = client.get("/api/v1/auth/me").json()["csrf_token"]
        yield client


def ids(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["task_id"] for item in answer.json()["items"]]


# -- /api/v1/tasks ------------------------------------------------------------------------


def test_the_task_list_is_newest_first_and_leaves_tracebacks_to_the_detail(http):
    answer = http.get("/api/v1/tasks")
    assert ids(answer) == ["t08", "t07", "t06", "t05", "t04", "t03", "t02", "t01"]
    body = answer.json()
    assert body["next_cursor"] is None and body["sort"] == "-created" and body["limit"] == 50
    failed = next(item for item in body["items"] if item["task_id"] == "t02")
    assert "traceback" not in failed and failed["exception_type"] == "ValueError"
    assert failed["created_at"] == "2026-01-01T12:01:00+00:00" and failed["ready"] is True


@pytest.mark.parametrize(("query", "expected"), [
    ({"state": "SUCCESS"}, {"t01", "t05", "t08"}),
    ({"state": "SUCCESS,FAILURE"}, {"t01", "t02", "t05", "t08"}),
    ({"name": "tests.add"}, {"t01", "t03", "t07"}),
    ({"queue": "other"}, {"t03", "t04", "t05"}),
    ({"worker": "w2@h"}, {"t02", "t05"}),
    ({"worker": "w2@h:7"}, {"t05"}),
    ({"worker": "w2@"}, set()),
    ({"worker": "w_@h"}, set()),
    ({"root_id": "t01"}, {"t01", "t02"}),
    ({"parent_id": "t01"}, {"t02"}),
    ({"group_id": "g1"}, {"t04", "t05"}),
    ({"schedule": "nightly"}, {"t06"}),
    ({"received_after": "2026-01-01T12:04:00Z"}, {"t04", "t05", "t06", "t07", "t08"}),
    ({"received_before": "2026-01-01T12:02:00+00:00"}, {"t01"}),
    ({"received_after": "2026-01-01T12:02:00", "received_before": "2026-01-01T12:05:00"},
     {"t02", "t04", "t05"}),
    ({"finished_after": "2026-01-01T12:05:00Z"}, {"t05", "t07", "t08"}),
    ({"finished_before": "2026-01-01T12:05:00Z"}, {"t01", "t02"}),
    ({"search": "needle"}, {"t08"}),
    ({"search": "tomorrow"}, {"t06"}),
    ({"search": "valueerror"}, {"t02"}),
    ({"search": "50%_"}, {"t02"}),
    ({"search": "%"}, {"t02"}),
    ({"search": "slept"}, {"t05"}),
    ({"search": "t07"}, {"t07"}),
    ({"state": "SUCCESS", "name": "tests.sleep", "worker": "w2@h"}, {"t05"}),
    ({"name": "no.such.task"}, set()),
])
def test_each_filter_keeps_the_tasks_it_names(http, query, expected):
    assert set(ids(http.get("/api/v1/tasks", params=query))) == expected


@pytest.mark.parametrize("sort", ["created", "-created", "received", "-received",
                                  "finished", "-finished", "name", "-name", "state", "-state",
                                  "started", "-started"])
@pytest.mark.parametrize("limit", [1, 3])
def test_pages_cover_every_task_once_in_the_order_of_one_query(http, sort, limit):
    """Keyset pages joined equal the whole list: no task twice, none skipped, whether
    the sort key ties (t04/t05 created together, names repeat) or is NULL (t03 never
    received, unfinished tasks), NULLs last either way."""
    whole = ids(http.get("/api/v1/tasks", params={"sort": sort, "limit": MAX_LIMIT}))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"sort": sort, "limit": limit, **({"cursor": cursor} if cursor else {})}
        body = http.get("/api/v1/tasks", params=params).json()
        assert len(body["items"]) <= limit
        seen += [item["task_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == whole and sorted(seen) == ALL_IDS


def test_ties_and_nulls_are_ordered_by_task_id(http):
    assert ids(http.get("/api/v1/tasks", params={"sort": "created", "limit": 8}))[3:5] == [
        "t04", "t05"]
    assert ids(http.get("/api/v1/tasks", params={"sort": "-created"}))[3:5] == ["t05", "t04"]
    by_finish = ids(http.get("/api/v1/tasks", params={"sort": "-finished"}))
    assert by_finish[-3:] == ["t06", "t04", "t03"], "unfinished last, by id descending"
    assert ids(http.get("/api/v1/tasks", params={"sort": "received"}))[-1] == "t03"


def test_a_page_filters_too_and_rows_written_meanwhile_do_not_shift_it(app, http):
    first = http.get("/api/v1/tasks", params={"state": "SUCCESS", "limit": 2}).json()
    assert [i["task_id"] for i in first["items"]] == ["t08", "t05"]
    app.client().store.write([change("t09", "SUCCESS", 9, name="tests.add")])
    rest = http.get("/api/v1/tasks", params={"state": "SUCCESS", "limit": 2,
                                              "cursor": first["next_cursor"]})
    assert ids(rest) == ["t01"] and rest.json()["next_cursor"] is None


def test_the_data_layer_refuses_a_cursor_of_another_sort(app):
    store = app.client().store
    page = list_tasks(store, TaskFilters(), limit=2)
    assert page.next_cursor is not None
    with pytest.raises(ValueError, match="cursor was made for sort"):
        list_tasks(store, TaskFilters(), after=page.next_cursor, sort="name")


# -- one task, stats, workers, queues -----------------------------------------------------


def test_one_task_has_its_whole_row_and_children(http):
    body = http.get("/api/v1/tasks/t01").json()
    assert body["task_id"] == "t01" and body["result"] == 3 and body["children"] == ["t02"]
    failed = http.get("/api/v1/tasks/t02").json()
    assert failed["traceback"].startswith("Traceback") and failed["children"] == []
    assert body["stamps"] is None
    assert http.get("/api/v1/tasks/t08").json()["stamps"] == {"tenant": "acme", "batch": [1, 2]}
    listed = http.get("/api/v1/tasks", params={"name": "tests.echo"}).json()["items"]
    assert listed[0]["stamps"] == {"tenant": "acme", "batch": [1, 2]}
    missing = http.get("/api/v1/tasks/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no task 'nope' in the result database",
                              "field": "task_id"}


def test_stats_count_tasks_by_state_with_the_filters(http):
    body = http.get("/api/v1/stats").json()
    assert body["tasks"] == {"PENDING": 1, "RECEIVED": 0, "STARTED": 1, "RETRY": 1,
                             "SUCCESS": 3, "FAILURE": 1, "REVOKED": 1, "REJECTED": 0,
                             "IGNORED": 0}
    assert list(body["tasks"]) == list(ALL_STATES)
    assert body["workers"] == {"online": 0, "stopping": 0, "offline": 0}
    assert http.get("/api/v1/stats", params={"queue": "other"}).json()["tasks"]["SUCCESS"] == 1


def _beat(app, hostname: str, queues: tuple[str, ...], state: str = "online") -> None:
    WorkerStore(app.client().store).beat(WorkerBeat(
        hostname=hostname, pid=4242, version="1.0", pool="prefork", concurrency=4,
        processes=4, queues=queues, prefetch=16, state=state, heartbeat_interval=60,
        started_at=T0, processed=7, succeeded=6, failed=1, rss_bytes=2048 * 1024))


def test_workers_and_queues_come_from_hutch_workers_and_the_broker(app, http):
    _beat(app, "w1@h", ("celery", "reports"))
    _beat(app, "w2@h", ("celery",), state="stopping")
    body = http.get("/api/v1/workers").json()
    assert [(w["hostname"], w["state"]) for w in body["items"]] == [
        ("w1@h", "online"), ("w2@h", "stopping")]
    assert body["counts"] == {"online": 1, "stopping": 1, "offline": 0}
    assert [w["hostname"] for w in http.get("/api/v1/workers?state=stopping").json()[
        "items"]] == ["w2@h"]

    app.send_task("tests.add", (1, 2), queue="reports")
    app.send_task("tests.add", (1, 2), countdown=600)
    queues = http.get("/api/v1/queues").json()
    assert queues["items"] == [
        {"name": "celery", "ready": 0, "unacked": 0, "consumers": 0, "dead_letters": 0,
         "sources": ["default", "worker"], "node_down": None},
        {"name": "reports", "ready": 1, "unacked": 0, "consumers": 0, "dead_letters": 0,
         "sources": ["worker"], "node_down": None}]
    assert queues["delayed"] == 1


# -- Flower's endpoints -------------------------------------------------------------------

FLOWER_TASK_KEYS = {
    "uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded", "failed",
    "retried", "revoked", "args", "kwargs", "eta", "expires", "retries", "worker", "result",
    "exception", "timestamp", "runtime", "traceback", "exchange", "routing_key", "clock",
    "client", "root", "root_id", "parent", "parent_id", "children"}


def test_flower_tasks_are_keyed_by_id_in_celerys_event_shape(http):
    answer = http.get("/api/tasks")
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["t08", "t07", "t06", "t05", "t04", "t03", "t02", "t01"]
    added = body["t01"]
    assert set(added) == FLOWER_TASK_KEYS
    assert (added["uuid"], added["name"], added["state"], added["args"], added["kwargs"],
            added["result"], added["worker"], added["routing_key"]) == (
        "t01", "tests.add", "SUCCESS", "[1, 2]", "{}", "3", "w1@h", "celery")
    assert added["received"] == at(1).timestamp() and added["runtime"] is None
    assert added["succeeded"] == at(2).timestamp() and added["failed"] is None
    assert body["t02"]["exception"] == "ValueError('Bad 50%_off')"
    assert body["t02"]["failed"] == at(3).timestamp() and body["t02"]["result"] is None
    assert body["t06"]["kwargs"] == "{'when': 'Tomorrow'}"


@pytest.mark.parametrize(("query", "expected"), [
    ({"state": "SUCCESS"}, ["t08", "t05", "t01"]),
    ({"state": "success"}, ["t08", "t05", "t01"]),
    ({"state": "All"}, ["t08", "t07", "t06", "t05", "t04", "t03", "t02", "t01"]),
    ({"taskname": "tests.add"}, ["t07", "t03", "t01"]),
    ({"workername": "w2@h"}, ["t05", "t02"]),
    ({"limit": "2"}, ["t08", "t07"]),
    ({"offset": "0", "limit": "1"}, ["t08"]),
    ({"sort_by": "name", "limit": "3"}, ["t01", "t03", "t07"]),
    ({"sort_by": "-received", "limit": "2"}, ["t08", "t07"]),
    ({"received_start": "2026-01-01 12:07", "received_end": "2026-01-01 12:08"}, ["t07"]),
    ({"search": "needle"}, ["t08"]),
    ({"refresh": "true", "unknown": "ignored as Flower does"}, ["t08", "t07", "t06", "t05",
                                                               "t04", "t03", "t02", "t01"]),
])
def test_flower_task_filters(http, query, expected):
    answer = http.get("/api/tasks", params=query)
    assert answer.status_code == 200, answer.text
    assert list(answer.json()) == expected


def test_flower_task_info(http):
    body = http.get("/api/task/info/t01").json()
    assert set(body) == FLOWER_TASK_KEYS | {"task-id"}
    assert body["task-id"] == body["uuid"] == "t01" and body["children"] == ["t02"]
    assert http.get("/api/task/info/t02").json()["traceback"].startswith("Traceback")
    missing = http.get("/api/task/info/nope")
    assert (missing.status_code, missing.json()) == (
        404, {"error": "Unknown task 'nope'", "field": "task_id"})


def test_flower_workers(app, http):
    _beat(app, "w1@h", ("celery", "reports"))
    body = http.get("/api/workers").json()
    assert list(body) == ["w1@h"]
    worker = body["w1@h"]
    assert [q["name"] for q in worker["active_queues"]] == ["celery", "reports"]
    assert worker["stats"]["pid"] == 4242 and worker["stats"]["prefetch_count"] == 16
    assert worker["stats"]["pool"]["max-concurrency"] == 4
    assert worker["stats"]["rusage"] == {"maxrss": 2048}
    assert worker["timestamp"] > 0 and worker["hutch"]["processed"] == 7
    assert http.get("/api/workers?status=true").json() == {"w1@h": True}
    assert list(http.get("/api/workers?workername=w1@h").json()) == ["w1@h"]
    missing = http.get("/api/workers?workername=nobody@h")
    assert (missing.status_code, missing.json()["field"]) == (404, "workername")


def test_flower_async_apply_sends_the_task(app, http):
    answer = http.post("/api/task/async-apply/tests.add",
                       json={"args": [2, 3], "kwargs": {}, "queue": "reports"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"task-id", "state"} and body["state"] == "PENDING"
    assert app.client().broker.queue_stats("reports").ready == 1
    assert app.AsyncResult(body["task-id"]).state == "PENDING"
    later = http.post("/api/task/async-apply/tests.add",
                      json={"args": [1, 1], "eta": "2030-01-01 00:00:00.000000"})
    assert later.status_code == 200 and app.client().broker.delayed_count() == 1


def test_the_admin_actions_are_async_apply_the_schedule_edits_and_the_actions():
    routes = api_routes(_app_stub())
    assert ADMIN_ACTIONS <= {route.name for route in routes}
    posting = {r.name for r in routes if "POST" in (getattr(r, "methods", None) or ())}
    assert posting <= ADMIN_ACTIONS  # every route that acts is named an admin action
    assert {op.path for op in OPERATIONS if op.admin} == {
        "/api/task/async-apply/{name}", "/api/v1/schedules", "/api/v1/schedules/{name}",
        "/api/v1/schedules/{name}/run", "/api/v1/schedules/{name}/enable",
        "/api/v1/schedules/{name}/disable", "/api/v1/tasks/{task_id}/revoke",
        "/api/v1/tasks/{task_id}/retry", "/api/v1/deadletters/{queue}/replay",
        "/api/v1/deadletters/{queue}/purge", "/api/v1/workers/{hostname}/{command}"}


def _app_stub():
    from hutch import Hutch
    return Hutch("stub", broker="memory://", backend="sqlite://")


# -- OpenAPI and the docs page -------------------------------------------------------------


def test_the_openapi_document_describes_every_endpoint_served(app, http):
    app.schedules.add("nightly", "tests.add", every="1h")
    document = http.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.") and document["servers"] == [{"url": "/"}]
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert described == {(op.path, op.method) for op in OPERATIONS}
    task_params = {p["name"] for p in document["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert {"state", "name", "queue", "worker", "search", "cursor", "limit", "sort"} <= \
        task_params
    for path, ops in document["paths"].items():
        if "get" in ops and "{key}" not in path:  # a dead letter: tests/unit/test_web_actions.py
            concrete = path.replace("{task_id}", "t01").replace("{name}", "nightly")
            assert http.get(concrete).status_code == 200, path


def test_the_docs_page_is_html_from_this_origin_only(http):
    answer = http.get("/api/docs")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "/api/v1/tasks" in answer.text and "Admin action" in answer.text
    assert not re.search(r"(src|href)=\"(https?:)?//", answer.text), "no other origin"
    assert "<script" not in answer.text
    assert http.get("/static/hutch.css").status_code == 200


def test_under_a_url_prefix(app):
    with TestClient(create_app(app, url_prefix="/hutch")) as client:
        assert ids(client.get("/hutch/api/v1/tasks", params={"limit": 1})) == ["t08"]
        assert client.get("/hutch/api/openapi.json").json()["servers"] == [{"url": "/hutch"}]


# -- bad input: always a 4xx JSON error ------------------------------------------------------

BAD = [
    ("/api/v1/tasks?limit=0", 400, "limit"),
    ("/api/v1/tasks?limit=-5", 400, "limit"),
    (f"/api/v1/tasks?limit={MAX_LIMIT + 1}", 400, "limit"),
    ("/api/v1/tasks?limit=10000000000000000000000", 400, "limit"),
    ("/api/v1/tasks?limit=ten", 400, "limit"),
    ("/api/v1/tasks?limit=1.5", 400, "limit"),
    ("/api/v1/tasks?state=DONE", 400, "state"),
    ("/api/v1/tasks?state=SUCCESS,nope", 400, "state"),
    ("/api/v1/tasks?sort=args", 400, "sort"),
    ("/api/v1/tasks?sort=--created", 400, "sort"),
    ("/api/v1/tasks?received_after=yesterday", 400, "received_after"),
    ("/api/v1/tasks?finished_before=2026-13-01", 400, "finished_before"),
    ("/api/v1/tasks?cursor=garbage", 400, "cursor"),
    ("/api/v1/tasks?cursor=%00%01", 400, "cursor"),
    ("/api/v1/tasks?cursor=WzEsMiwzXQ", 400, "cursor"),  # [1,2,3]
    ("/api/v1/tasks?cursor=eyJhIjoxfQ", 400, "cursor"),  # {"a":1}
    ("/api/v1/tasks?cursor=WyJjcmVhdGVkIiwibm90IGEgdGltZSIsInQxIl0", 400, "cursor"),
    ("/api/v1/tasks?cursor=WyJuYW1lIiwiYSIsInQxIl0", 400, "cursor"),  # made for sort=name
    ("/api/v1/tasks?stat=SUCCESS", 400, "stat"),
    ("/api/v1/tasks?name=a%00b", 400, "name"),
    ("/api/v1/tasks?search=%00", 400, "search"),
    ("/api/v1/tasks/a%00b", 404, "task_id"),
    ("/api/v1/tasks/nope", 404, "task_id"),
    (f"/api/v1/tasks/{'x' * 2000}", 404, "task_id"),
    ("/api/v1/tasks/t01?verbose=1", 400, "verbose"),
    ("/api/v1/workers?state=asleep", 400, "state"),
    ("/api/v1/queues?route=celery", 400, "route"),
    ("/api/v1/stats?state=DONE", 400, "state"),
    ("/api/v1/stats?received_after=x", 400, "received_after"),
    ("/api/v1/nothing", 404, None),
    ("/api/tasks?limit=abc", 400, "limit"),
    ("/api/tasks?limit=100000", 400, "limit"),
    ("/api/tasks?offset=10", 400, "offset"),
    ("/api/tasks?offset=x", 400, "offset"),
    ("/api/tasks?sort_by=runtime", 400, "sort_by"),
    ("/api/tasks?state=DONE", 400, "state"),
    ("/api/tasks?received_start=noon", 400, "received_start"),
    ("/api/task/info/nope", 404, "task_id"),
    ("/api/task/info/a%00b", 404, "task_id"),
    ("/api/tasks?taskname=%00", 400, "taskname"),
    ("/api/workers?status=maybe", 400, "status"),
    ("/api/workers?workername=nobody", 404, "workername"),
]
BAD_POSTS = [
    ("/api/task/async-apply/no.such.task", {}, 404, "name"),
    ("/api/task/async-apply/tests.add%00", {}, 404, "name"),
    ("/api/task/async-apply/tests.add", {"args": "1,2"}, 400, "args"),
    ("/api/task/async-apply/tests.add", {"kwargs": [1]}, 400, "kwargs"),
    ("/api/task/async-apply/tests.add", {"link": "tests.fail"}, 400, "link"),
    ("/api/task/async-apply/tests.add", {"countdown": "soon"}, 400, "countdown"),
    ("/api/task/async-apply/tests.add", {"countdown": True}, 400, "countdown"),
    ("/api/task/async-apply/tests.add", {"eta": "tomorrow"}, 400, "eta"),
    ("/api/task/async-apply/tests.add", {"eta": 5}, 400, "eta"),
    ("/api/task/async-apply/tests.add", {"expires": []}, 400, "expires"),
    ("/api/task/async-apply/tests.add", {"queue": 7}, 400, "queue"),
    ("/api/task/async-apply/tests.add", {"countdown": 1e12}, 400, "body"),
    ("/api/task/async-apply/tests.add", {"eta": "2026-01-01T00:00:00", "countdown": 1},
     400, "body"),
    ("/api/task/async-apply/tests.add", [1, 2], 400, "body"),
    ("/api/task/async-apply/tests.add", "text", 400, "body"),
]


@pytest.mark.parametrize(("url", "status", "field"), BAD)
def test_bad_input_is_a_4xx_json_error_naming_the_field(http, url, status, field):
    answer = http.get(url)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error", "field"} and body["field"] == field and body["error"]
    assert "Traceback" not in answer.text


@pytest.mark.parametrize(("url", "payload", "status", "field"), BAD_POSTS)
def test_bad_actions_are_a_4xx_json_error_and_send_nothing(app, http, url, payload, status,
                                                          field):
    answer = http.post(url, json=payload)
    assert (answer.status_code, answer.json()["field"]) == (status, field), answer.text
    assert app.client().broker.queue_stats("celery").ready == 0
    assert app.client().broker.delayed_count() == 0


def test_a_body_that_is_not_json_and_a_wrong_method_are_json_errors_too(http):
    answer = http.post("/api/task/async-apply/tests.add", content=b"{not json",
                       headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()) == (400, {"error": "the body is not JSON",
                                                         "field": "body"})
    wrong = http.post("/api/v1/tasks")
    assert (wrong.status_code, wrong.json()) == (405, {"error": "method not allowed",
                                                       "field": None})
    assert http.get("/api/task/async-apply/tests.add").status_code == 405


def test_every_get_endpoint_survives_garbage_in_every_parameter(http):
    """A cheap fuzz from the OpenAPI description: each query parameter of each endpoint
    given odd values; nothing may answer 5xx or anything but JSON."""
    document = http.get("/api/openapi.json").json()
    odd = ["", "x", "-1", "0", "9" * 30, "1e309", "NaN", "%", "\x00", "ü", "'; DROP TABLE",
           "2026-02-30T25:61:00", "true", "All", "a" * 5000]
    for path, ops in document["paths"].items():
        if "get" not in ops:
            continue
        for param in ops["get"]["parameters"]:
            target = path.replace("{task_id}", "t01")
            if param["in"] == "path":
                continue
            for value in odd:
                answer = http.get(f"{target}?{urlencode({param['name']: value})}")
                assert answer.status_code < 500, (path, param["name"], value, answer.text)
                json.loads(answer.text)
