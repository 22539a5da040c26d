"""hutch web's JSON API on the real RabbitMQ and PostgreSQL (in-process, Starlette's
TestClient): a real worker runs a few tasks, one of them failing; the API lists and
filters them (hutch's shape and Flower's), shows the failure's traceback, the worker
from its heartbeat row, and each queue's depth and consumers as RabbitMQ counts them.
Every filter and bad input on memory:// and SQLite: tests/unit/test_web_api.py."""

from __future__ import annotations

import uuid

import pytest
from starlette.testclient import TestClient

from hutch.web.app import create_app
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_the_api_shows_what_a_real_worker_did(app, env, workers):
    tag = uuid.uuid4().hex[:8]
    queue, idle, node = f"api-{tag}", f"api-idle-{tag}", f"api-{tag}@test"
    worker = workers({**env, "HUTCH_WORKER_HEARTBEAT_INTERVAL": "0.5"}, queues=(queue,),
                     pool="threads", concurrency=2, extra_args=("-n", node))
    worker.wait_ready()
    app.conf.task_queues = {idle: {}}  # a declared route that nobody consumes
    sent = [app.send_task("tests.add", (2, 3), queue=queue),
            app.send_task("tests.echo", ("needle",), queue=queue),
            app.send_task("tests.fail", ("it broke",), queue=queue)]
    waiting = [app.send_task("tests.add", (1, 1), queue=idle) for _ in range(2)]

    with TestClient(create_app(app), raise_server_exceptions=False) as http:
        def done() -> list[dict] | None:
            items = http.get("/api/v1/tasks", params={"queue": queue}).json()["items"]
            finished = [i for i in items if i["state"] in ("SUCCESS", "FAILURE")]
            return items if len(finished) == 3 else None

        items = eventually(done, 20)
        assert {i["task_id"] for i in items} == {r.id for r in sent}
        assert {i["worker"].rpartition(":")[0] for i in items} == {node}, "node:pid"
        by_node = http.get("/api/v1/tasks", params={"worker": node, "queue": queue})
        assert len(by_node.json()["items"]) == 3

        failed = http.get("/api/v1/tasks", params={"queue": queue, "state": "FAILURE"})
        [failure] = failed.json()["items"]
        assert failure["task_id"] == sent[2].id and failure["exception_type"].endswith("CustomError")
        detail = http.get(f"/api/v1/tasks/{sent[2].id}").json()
        assert "it broke" in detail["traceback"]
        found = http.get("/api/v1/tasks", params={"queue": queue, "search": "needle"})
        assert [i["task_id"] for i in found.json()["items"]] == [sent[1].id]
        for sort, key in (("-created", "created_at"), ("finished", "finished_at"),
                          ("-received", "received_at"), ("name", "name")):
            expected = sorted(items, key=lambda i, k=key: (i[k], i["task_id"]),
                              reverse=sort.startswith("-"))
            assert _all_pages(http, {"queue": queue, "sort": sort, "limit": 1}) == [
                i["task_id"] for i in expected], sort

        flower = http.get("/api/tasks", params={"workername": node, "state": "SUCCESS"}).json()
        assert set(flower) == {sent[0].id, sent[1].id}
        assert flower[sent[0].id]["result"] == "5" and flower[sent[0].id]["worker"] == node
        info = http.get(f"/api/task/info/{sent[2].id}").json()
        assert info["state"] == "FAILURE" and info["exception"].startswith("CustomError(")
        stats = http.get("/api/v1/stats", params={"queue": queue}).json()["tasks"]
        assert (stats["SUCCESS"], stats["FAILURE"]) == (2, 1)

        listed = http.get("/api/v1/workers").json()["items"]
        mine = [w for w in listed if w["hostname"] == node]
        assert [(w["state"], w["queues"], w["pool"]) for w in mine] == [
            ("online", [queue], "threads")]
        assert http.get("/api/workers", params={"workername": node, "status": "true"}
                        ).json() == {node: True}

        queues = {q["name"]: q for q in http.get("/api/v1/queues").json()["items"]}
        assert queues[queue]["consumers"] >= 1 and queues[queue]["sources"] == ["worker"]
        assert (queues[queue]["ready"], queues[queue]["dead_letters"]) == (0, 0)
        assert queues[idle] == {"name": idle, "ready": len(waiting), "unacked": None,
                                "consumers": 0, "dead_letters": 0, "sources": ["task_queues"],
                                "node_down": None}
        for url, status in BAD_ON_POSTGRESQL:
            answer = http.get(url)
            assert answer.status_code == status, (url, answer.text)
            assert status == 200 or set(answer.json()) == {"error", "field"}
    assert worker.stop() == 0


def _all_pages(http, params: dict) -> list[str]:
    """Task ids of every page, following ``next_cursor``."""
    seen: list[str] = []
    cursor = None
    while True:
        body = http.get("/api/v1/tasks", params={**params, **({"cursor": cursor} if cursor
                                                               else {})}).json()
        seen += [item["task_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


BAD_ON_POSTGRESQL = [
    ("/api/v1/tasks?name=a%00b", 400),
    ("/api/v1/tasks?search=%00", 400),
    ("/api/v1/tasks/a%00b", 404),
    (f"/api/v1/tasks/{'x' * 2000}", 404),
    ("/api/v1/tasks?limit=501", 400),
    ("/api/v1/tasks?cursor=WyItY3JlYXRlZCIsIjk5OTk5LTAxLTAxIiwidCJd", 400),
    ("/api/v1/tasks?received_after=0001-01-01T00:00:00&search=%25%5C_", 200),
    ("/api/v1/tasks?finished_before=9999-12-31T23:59:59.999999%2B14:00", 200),
    ("/api/v1/tasks?sort=-name&cursor=WyItbmFtZSIsbnVsbCwiMjAyNi0wMS0wMVQwMDowMDowMCswMDowMCIsInoiXQ", 200),  # no name yet
    ("/api/task/info/%F0%9F%90%8D", 404),
]
"""Inputs PostgreSQL could refuse (NUL, far times, long ids), answered 4xx, never 5xx."""
