"""``/api/v1/schedules``: the beat schedules, read and changed (issue #14, "Schedules").

Reading: the list (each with its next run in its zone and in UTC), one schedule with
its latest runs and its next ones. Acting (admin; each written to ``hutch_audit``
by hutch.ops.schedules): create, edit (PATCH: the fields given), delete, run now,
enable, disable. Values are the keywords of ``app.schedules.add`` (docs/beat.md) as
JSON; a refusal names the field: ``{"error": "every: ...", "field": "every"}``.
The HTML pages (hutch.web.pages.schedules) share :func:`desk_of`, :func:`actor_of`
and :func:`text_fields`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ...errors import ConfigurationError, InvalidQuery
from ...ops.audit import AuditLog
from ...ops.schedules import ScheduleDesk, field_of, next_runs, public, run_record
from ...schedules.entry import CATCH_UP
from ...schedules.text import fields_from_text
from ..auth import actor_of
from .answers import Json, answer
from .openapi import Operation
from .params import path_id

if TYPE_CHECKING:
    from ...app import Hutch

TEXT_KEYS = ("every", "cron", "at", "queue", "timezone", "start_at", "end_at",
             "description", "name", "task")
BODY_KEYS = (*TEXT_KEYS, "args", "kwargs", "options", "enabled", "one_off", "catch_up",
             "catch_up_limit")
"""What a create or edit body may hold (``name`` only when creating)."""
_CLI_NAMES = {"args": "args_json", "kwargs": "kwargs_json"}
"""Fields whose text hutch.schedules.text parses under another name (the CLI option's)."""

_TEXT = {"type": ["string", "null"]}
SCHEDULE_BODY: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string"}, "task": {"type": "string"},
        "every": {"type": ["string", "number"], "description": "30s, 5m, 2h, 1d or seconds"},
        "cron": {"type": "string", "description": "minute hour day_of_month month "
                                                  "day_of_week"},
        "at": {"type": "string", "description": "once, at this ISO 8601 time"},
        "args": {"type": "array"}, "kwargs": {"type": "object"},
        "options": {"type": "object"}, "queue": _TEXT, "timezone": _TEXT,
        "enabled": {"type": "boolean"}, "one_off": {"type": "boolean"},
        "start_at": _TEXT, "end_at": _TEXT, "description": _TEXT,
        "catch_up": {"enum": list(CATCH_UP)},
        "catch_up_limit": {"type": "integer", "minimum": 1}}}
"""The JSON body of create (``name``, ``task`` and one of every/cron/at required) and of
edit (any of them but ``name``)."""

NAME = ("name",)
OPERATIONS = (
    Operation("/api/v1/schedules", "get", "Every beat schedule, with its next run in its "
              "time zone and in UTC."),
    Operation("/api/v1/schedules", "post", "Create a schedule (name, task and one of "
              "every, cron, at).", body=True, admin=True,
              request={**SCHEDULE_BODY, "required": ["name", "task"]}),
    Operation("/api/v1/schedules/{name}", "get", "One schedule, its latest runs and its "
              "next 5 run times.", path_params=NAME, found=True),
    Operation("/api/v1/schedules/{name}", "patch", "Change the fields given (applied by "
              "the running beat at its next poll).", path_params=NAME, body=True,
              admin=True, found=True, request=SCHEDULE_BODY),
    Operation("/api/v1/schedules/{name}", "delete", "Delete a schedule and its run "
              "records.", path_params=NAME, admin=True, found=True),
    *(Operation(f"/api/v1/schedules/{{name}}/{verb}", "post", summary, path_params=NAME,
                admin=True, found=True)
      for verb, summary in (("run", "Send one run now (recorded as a manual run)."),
                            ("enable", "Enable: the next run is counted from now."),
                            ("disable", "Disable (kept, not run)."))),
)
ADMIN_ROUTES = frozenset({"api-schedule-create", "api-schedule-edit", "api-schedule-delete",
                          "api-schedule-run", "api-schedule-enable", "api-schedule-disable"})


def desk_of(hutch_app: Hutch) -> ScheduleDesk:
    """The app's schedules, audited in its result database."""
    return ScheduleDesk(hutch_app.schedules, AuditLog(hutch_app.client().store))


def text_fields(given: Mapping[str, str], default_timezone: str) -> dict[str, Any]:
    """Text as typed in a form (JSON args and kwargs, times, a whole number of runs) as
    ``app.schedules`` keywords, parsed by ``hutch schedule``'s own code; InvalidQuery
    naming the field. ``given`` may hold ``timezone``: the zone of naive times."""
    renamed = {_CLI_NAMES.get(k, k): v for k, v in given.items()}
    try:
        return fields_from_text(renamed, default_timezone)
    except ConfigurationError as exc:
        field = field_of(exc)
        message = str(exc).split(": ", 1)[-1] if field else str(exc)
        raise InvalidQuery(f"{field}: {message}" if field else message, field) from None


def body_fields(body: Mapping[str, Any], default_timezone: str) -> dict[str, Any]:
    """A JSON body as ``app.schedules`` keywords: known keys only, text where text is
    due (the rest is checked by the beat API), times parsed in the body's zone."""
    for key, value in body.items():
        if key not in BODY_KEYS:
            raise InvalidQuery(f"unknown field {key!r}; known: {', '.join(BODY_KEYS)}", key)
        if key in TEXT_KEYS and key != "every" and not isinstance(value, (str, type(None))):
            raise InvalidQuery(f"{key}: expected text, got {json.dumps(value)[:100]}", key)
        if key == "every" and (isinstance(value, bool)
                               or not isinstance(value, (str, int, float, type(None)))):
            raise InvalidQuery(f"every: expected 30s, 5m, 2h, 1d or seconds, got "
                               f"{json.dumps(value)[:100]}", key)
        if isinstance(value, str) and "\x00" in value:
            raise InvalidQuery(f"{key}: must not hold a NUL character", key)
    fields = dict(body)
    times = {k: body[k] for k in ("start_at", "end_at") if body.get(k) is not None}
    if times:
        zone = {"timezone": body["timezone"]} if body.get("timezone") else {}
        fields.update({k: v for k, v in text_fields({**times, **zone},
                                                    default_timezone).items() if k in times})
    return fields


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        raise InvalidQuery("the body is not JSON", "body") from None
    if not isinstance(body, dict):
        raise InvalidQuery("the body must be a JSON object", "body")
    return body


class ScheduleApi:
    """The handlers, bound to one app."""

    def __init__(self, hutch_app: Hutch) -> None:
        self.app = hutch_app

    @property
    def desk(self) -> ScheduleDesk:
        return desk_of(self.app)

    def list(self, request: Request) -> dict[str, Any]:
        entries, unreadable = self.desk.listing()
        return {"items": [public(e) for e in entries], "unreadable": unreadable}

    def detail(self, request: Request) -> dict[str, Any]:
        desk = self.desk
        entry = desk.require(path_id(request, "name"))
        return {**public(entry),
                "runs": [run_record(r, entry.timezone) for r in desk.runs(entry.name)],
                "next_runs": [w.as_dict() for w in next_runs(entry)]}

    async def create(self, request: Request) -> Json:
        fields = body_fields(await json_body(request), self.app.conf.timezone)
        name = fields.pop("name", None)
        if not isinstance(name, str):
            raise InvalidQuery("name: required", "name")
        actor = actor_of(request)
        made = await run_in_threadpool(lambda: self.desk.create(actor, name, fields))
        return Json(public(made), status_code=201)

    async def edit(self, request: Request) -> dict[str, Any]:
        name = path_id(request, "name")
        fields = body_fields(await json_body(request), self.app.conf.timezone)
        if "name" in fields:
            raise InvalidQuery("name: a schedule cannot be renamed (create another)", "name")
        if not fields:
            raise InvalidQuery("give at least one field to change", "body")
        actor = actor_of(request)
        return public(await run_in_threadpool(lambda: self.desk.update(actor, name, fields)))

    def delete(self, request: Request) -> dict[str, Any]:
        name = path_id(request, "name")
        self.desk.delete(actor_of(request), name)
        return {"deleted": name}

    def run(self, request: Request) -> dict[str, Any]:
        name = path_id(request, "name")
        return {"schedule": name, "task_id": self.desk.run_now(actor_of(request), name)}

    def enable(self, request: Request) -> dict[str, Any]:
        return public(self.desk.enable(actor_of(request), path_id(request, "name")))

    def disable(self, request: Request) -> dict[str, Any]:
        return public(self.desk.enable(actor_of(request), path_id(request, "name"), False))


def routes(hutch_app: Hutch) -> list[BaseRoute]:
    """Paths relative to ``/api`` (hutch.web.api.api_routes). A name may hold ``/``: the
    action routes come first."""
    api = ScheduleApi(hutch_app)
    one = "/v1/schedules/{name:path}"
    return [
        Route("/v1/schedules", answer(api.list), name="api-schedules"),
        Route("/v1/schedules", answer(api.create), methods=["POST"],
              name="api-schedule-create"),
        *(Route(f"{one}/{verb}", answer(getattr(api, verb)), methods=["POST"],
                name=f"api-schedule-{verb}") for verb in ("run", "enable", "disable")),
        Route(one, answer(api.detail), name="api-schedule"),
        Route(one, answer(api.edit), methods=["PATCH"], name="api-schedule-edit"),
        Route(one, answer(api.delete), methods=["DELETE"], name="api-schedule-delete"),
    ]
