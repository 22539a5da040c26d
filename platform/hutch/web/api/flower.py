"""Flower's most used endpoints, in Flower's shapes, so scripts written for Flower keep
working: ``GET /api/tasks``, ``GET /api/task/info/{id}``, ``GET /api/workers`` and the
action ``POST /api/task/async-apply/{name}``.

Flower's query parameters that hutch does not support are refused with a 400 when
they would change the answer (``offset`` past 0: hutch pages by keyset, use
``/api/v1/tasks``), ignored when they cannot (``refresh``: hutch always reads its
tables). Unknown parameters are ignored, as Flower does.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ...errors import ConfigurationError, InvalidQuery, NotFound, SerializationError
from ...ops import tasks as ops
from ...ops.workers import list_workers
from ...results.records import PENDING
from . import shapes
from .params import BOOLEAN, INTEGER, STRING, Param, parse, parse_time, path_id
from .v1 import Handlers

FLOWER_TIME = "%Y-%m-%d %H:%M"
"""Flower's ``received_start``/``received_end`` format (taken as UTC here)."""
FLOWER_ETA = "%Y-%m-%d %H:%M:%S.%f"
FLOWER_SORTS = {"name": "name", "state": "state", "received": "received", "started": "started"}
DEFAULT_LIMIT = 100
"""Flower answers every task it holds; hutch a page of the newest (at most ops.MAX_LIMIT)."""

TASKS = (
    Param("limit", INTEGER, f"Maximum number of tasks (default {DEFAULT_LIMIT}, "
          f"at most {ops.MAX_LIMIT})."),
    Param("offset", INTEGER, "Only 0: hutch pages by keyset (`/api/v1/tasks`, `cursor`)."),
    Param("sort_by", STRING, "name, state, received or started; `-` before it: descending "
          "(default: newest first).",
          tuple(FLOWER_SORTS) + tuple(f"-{key}" for key in FLOWER_SORTS)),
    Param("workername", STRING, "Tasks run by this worker (`All`: any)."),
    Param("taskname", STRING, "Tasks of this name (`All`: any)."),
    Param("state", STRING, "Tasks in this state (`All`: any)."),
    Param("received_start", STRING, "Received after this time (`YYYY-MM-DD HH:MM`, UTC)."),
    Param("received_end", STRING, "Received before this time (`YYYY-MM-DD HH:MM`, UTC)."),
    Param("search", STRING, "Plain text, as `search` of `/api/v1/tasks` (Flower's "
          "`key:value` query syntax is not supported)."),
)
WORKERS = (
    Param("workername", STRING, "Only this worker (404 if unknown)."),
    Param("status", BOOLEAN, "Answer `{worker: alive}` only."),
    Param("refresh", BOOLEAN, "Ignored: hutch reads `hutch_workers`, always current."),
)
APPLY_OPTIONS = frozenset({"countdown", "eta", "expires", "queue", "priority"})
"""Call options async-apply accepts besides args and kwargs (Flower passes any to
``apply_async``; hutch keeps to these, so a request cannot set links or headers)."""


class Flower(Handlers):
    """Flower's endpoints' handlers."""

    def tasks(self, request: Request) -> dict[str, Any]:
        """Flower's ``/api/tasks``: a JSON object of tasks keyed by id, in order."""
        values = {name: value for name, value in parse(request.query_params, TASKS,
                                                        strict=False).items()
                  if value != "All"}
        if values.get("offset", 0) != 0:
            raise InvalidQuery("offset is not supported: hutch pages by keyset "
                               "(GET /api/v1/tasks with cursor)", "offset")
        if "state" in values:
            values["state"] = values["state"].upper()
        filters = ops.TaskFilters(
            states=(values["state"],) if "state" in values else (),
            name=values.get("taskname"), worker=values.get("workername"),
            received_after=_flower_time(values, "received_start"),
            received_before=_flower_time(values, "received_end"),
            search=values.get("search"))
        page = ops.list_tasks(self.client.store, filters,
                              limit=values.get("limit", DEFAULT_LIMIT),
                              sort=values.get("sort_by", ops.DEFAULT_SORT))
        return {r.task_id: shapes.flower_task(r) for r in page.items}

    def task_info(self, request: Request) -> dict[str, Any]:
        """Flower's ``/api/task/info/{id}``."""
        task_id = path_id(request, "task_id")
        record = ops.task_detail(self.client.store, task_id)
        if record is None:
            raise NotFound(f"Unknown task '{task_id}'", "task_id")
        children = ops.children_of(self.client.store, task_id)
        return {**shapes.flower_task(record, children), "task-id": task_id}

    def workers(self, request: Request) -> dict[str, Any]:
        """Flower's ``/api/workers``: workers keyed by name (``status=true``: alive only)."""
        values = parse(request.query_params, WORKERS, strict=False)
        records = list_workers(self.client.store)
        name = values.get("workername")
        if name is not None:
            records = [r for r in records if r.hostname == name]
            if not records:
                raise NotFound(f"Unknown worker '{name}'", "workername")
        if values.get("status"):
            return {r.hostname: shapes.worker_alive(r) for r in records}
        return {r.hostname: shapes.flower_worker(r) for r in records}

    async def async_apply_body(self, request: Request) -> dict[str, Any]:
        """The JSON body of an async-apply, checked (400 when it is not an object)."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise InvalidQuery("the body is not JSON", "body") from None
        if not isinstance(body, dict):
            raise InvalidQuery("the body must be a JSON object", "body")
        return body

    def async_apply(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """ADMIN ACTION (it sends a task): Flower's ``POST /api/task/async-apply/{name}``.
        Sends ``name`` with the body's ``args``, ``kwargs`` and call options through the
        app's client; answers ``{"task-id": id, "state": "PENDING"}``. Only tasks the
        web process's app registers may be sent (404 otherwise)."""
        if name not in self.app.tasks:
            raise NotFound(f"Unknown task '{name}'", "name")
        args, kwargs = body.pop("args", []), body.pop("kwargs", {})
        if not isinstance(args, list):
            raise InvalidQuery("args must be an array", "args")
        if not isinstance(kwargs, dict):
            raise InvalidQuery("kwargs must be an object", "kwargs")
        options = _apply_options(body)
        try:
            result = self.client.submit(name, *args, kwargs=kwargs, **options)
        except (ConfigurationError, SerializationError, OverflowError) as exc:
            raise InvalidQuery(str(exc), "body") from None
        return {"task-id": result.id, "state": PENDING}


def _flower_time(values: dict[str, Any], name: str) -> Any:
    raw = values.get(name)
    return None if raw is None else parse_time(raw, name, (FLOWER_TIME,))


def _apply_options(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - APPLY_OPTIONS)
    if unknown:
        raise InvalidQuery(f"unsupported option {unknown[0]!r}; async-apply takes args, "
                           f"kwargs, {', '.join(sorted(APPLY_OPTIONS))}", unknown[0])
    options = dict(body)
    for name in ("countdown", "priority"):
        if name in options and (isinstance(options[name], bool)
                                or not isinstance(options[name], (int, float))):
            raise InvalidQuery(f"{name} must be a number", name)
    if "eta" in options:
        if not isinstance(options["eta"], str):
            raise InvalidQuery("eta must be a time", "eta")
        options["eta"] = parse_time(options["eta"], "eta", (FLOWER_ETA,))
    if "expires" in options:
        expires = options["expires"]
        if isinstance(expires, str):
            options["expires"] = parse_time(expires, "expires", (FLOWER_ETA,))
        elif isinstance(expires, bool) or not isinstance(expires, (int, float)):
            raise InvalidQuery("expires must be seconds or a time", "expires")
    if "queue" in options and not isinstance(options["queue"], str):
        raise InvalidQuery("queue must be a string", "queue")
    return options
