"""hutch web's JSON API (issue #14, "API and metrics"), mounted at ``/api``.

- ``/api/v1/...``: hutch's own read endpoints (tasks with filters and keyset pages,
  one task, workers, queues, stats): :mod:`.v1`.
- ``/api/tasks``, ``/api/task/info/{id}``, ``/api/workers``,
  ``/api/task/async-apply/{name}``: Flower's, in Flower's shapes: :mod:`.flower`.
- ``/api/openapi.json`` and ``/api/docs``: the description (:mod:`.openapi`).

Every answer is JSON; errors are ``{"error": ..., "field": ...}`` (:mod:`.answers`).
The data comes from hutch.ops.tasks and hutch.ops.queues, which the HTML pages
share. :func:`api_routes` is the one list of endpoints; the routes named in
:data:`ADMIN_ACTIONS` change something and need the admin role once authentication
is wired.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

from . import actions
from .answers import Json, answer, http_error
from .flower import TASKS as FLOWER_TASKS
from .flower import WORKERS as FLOWER_WORKERS
from .flower import Flower
from .openapi import Operation, document, page
from .overview import OVERVIEW_PARAMS, OverviewHandler
from .params import PAGING, TASK_FILTERS, WORKER_FILTERS, path_id
from .schedules import ADMIN_ROUTES as SCHEDULE_ACTIONS
from .schedules import OPERATIONS as SCHEDULE_OPERATIONS
from .schedules import routes as schedule_routes
from .v1 import V1

if TYPE_CHECKING:
    from ...app import Hutch

PREFIX = "/api"

OPERATIONS = (
    Operation("/api/v1/tasks", "get", "Tasks matching the filters, a page at a time "
              "(follow next_cursor).", TASK_FILTERS + PAGING),
    Operation("/api/v1/tasks/{task_id}", "get", "One task: its whole row, its retried "
              "attempts and its children.",
              path_params=("task_id",), found=True),
    Operation("/api/v1/workers", "get", "Workers with their effective state, and counts.",
              WORKER_FILTERS),
    Operation("/api/v1/queues", "get", "Every known route: ready, unacked, consumers, "
              "dead letters; and the delayed messages."),
    Operation("/api/v1/stats", "get", "Tasks by state (with the task filters), workers by "
              "state.", TASK_FILTERS),
    Operation("/api/v1/overview", "get", "The overview: tasks succeeded, failed, retried per "
              "bucket, throughput, failure rate, run time percentiles, workers, queues.",
              OVERVIEW_PARAMS),
    Operation("/api/tasks", "get", "Flower-compatible task list, keyed by task id.",
              FLOWER_TASKS),
    Operation("/api/task/info/{task_id}", "get", "Flower-compatible task info.",
              path_params=("task_id",), found=True),
    Operation("/api/workers", "get", "Flower-compatible worker list, keyed by name.",
              FLOWER_WORKERS, found=True),
    Operation("/api/task/async-apply/{name}", "post", "Flower-compatible: send a task; "
              "answers {\"task-id\": ..., \"state\": \"PENDING\"}.",
              path_params=("name",), body=True, admin=True, found=True),
    *SCHEDULE_OPERATIONS,
    *actions.OPERATIONS,  # revoke, retry, dead letters, worker commands, audit
)

ADMIN_ACTIONS = (frozenset({"api-flower-async-apply"}) | SCHEDULE_ACTIONS
                 | actions.ADMIN_ACTIONS)
"""Names of the routes of :func:`api_routes` that act (the rest only read)."""


def api_routes(hutch_app: Hutch) -> list[BaseRoute]:
    """Every endpoint of the API, paths relative to ``/api``. The one list: to protect
    the actions, wrap the routes named in :data:`ADMIN_ACTIONS`."""
    v1, flower = V1(hutch_app), Flower(hutch_app)
    figures = OverviewHandler(hutch_app)

    async def async_apply(request: Request) -> Any:
        """ADMIN ACTION: sends a task (Flower's async-apply)."""
        body = await flower.async_apply_body(request)
        return await run_in_threadpool(flower.async_apply, path_id(request, "name"), body)

    return [
        *actions.routes(hutch_app),  # ahead of /v1/tasks/{task_id:path}
        Route("/v1/tasks", answer(v1.tasks), name="api-tasks"),
        Route("/v1/tasks/{task_id:path}", answer(v1.task), name="api-task"),
        Route("/v1/workers", answer(v1.workers), name="api-workers"),
        Route("/v1/queues", answer(v1.queues), name="api-queues"),
        Route("/v1/stats", answer(v1.stats), name="api-stats"),
        Route("/v1/overview", answer(figures.overview), name="api-overview"),
        Route("/tasks", answer(flower.tasks), name="api-flower-tasks"),
        Route("/task/info/{task_id:path}", answer(flower.task_info), name="api-flower-task"),
        Route("/workers", answer(flower.workers), name="api-flower-workers"),
        Route("/task/async-apply/{name:path}", answer(async_apply), methods=["POST"],
              name="api-flower-async-apply"),
        *schedule_routes(hutch_app),
        Route("/openapi.json", openapi_json, name="api-openapi"),
        Route("/docs", docs, name="api-docs"),
    ]


async def openapi_json(request: Request) -> Json:
    server = request.scope.get("root_path", "").removesuffix(PREFIX) or "/"
    return Json(document(OPERATIONS, server))


async def docs(_: Request) -> HTMLResponse:
    return HTMLResponse(page(OPERATIONS))


def routes(hutch_app: Hutch) -> list[BaseRoute]:
    """The API mounted at ``/api`` (for hutch.web.app.create_app): a Starlette app of
    its own, so that even its "no such endpoint" and "method not allowed" are JSON."""
    api = Starlette(routes=api_routes(hutch_app),
                    exception_handlers={HTTPException: http_error})
    mount = Mount(PREFIX, app=api, name="api")
    # a newline inside a path (%0A) must reach the API's JSON 404 too: Starlette's "."
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return [mount]
