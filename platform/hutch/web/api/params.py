"""Query parameters of the JSON API: one table per endpoint that both parses requests
and describes them in the OpenAPI document, so the two cannot disagree.

Every bad value is an :class:`InvalidQuery` naming its parameter (HTTP 400); an
empty value counts as absent, the way an HTML form sends an untouched field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ...errors import InvalidQuery, NotFound
from ...ops.tasks import DEFAULT_LIMIT, DEFAULT_SORT, MAX_LIMIT, SORTS, TaskFilters
from ...results.records import ALL_STATES
from ...results.workers import STATES as WORKER_STATES

STRING, INTEGER, DATETIME, BOOLEAN = "string", "integer", "date-time", "boolean"


@dataclass(frozen=True)
class Param:
    """One query parameter: its name, kind, meaning and, for a few, allowed values."""

    name: str
    kind: str
    description: str
    enum: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        if self.kind == DATETIME:
            return {"type": "string", "format": "date-time"}
        if self.kind == INTEGER and self.name == "limit":
            return {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
        schema: dict[str, Any] = {"type": self.kind}
        if self.enum:
            schema["enum"] = list(self.enum)
        return schema


TASK_FILTERS = (
    Param("state", STRING, "Tasks in any of these states, comma-separated "
          f"({', '.join(ALL_STATES)})."),
    Param("name", STRING, "Tasks of this name (exact)."),
    Param("queue", STRING, "Tasks sent to this queue (route)."),
    Param("worker", STRING, "Tasks run by this worker node (`name@host`)."),
    Param("root_id", STRING, "Tasks of the workflow started by this task."),
    Param("group_id", STRING, "Members of this group or chord header."),
    Param("parent_id", STRING, "Tasks started by this task."),
    Param("schedule", STRING, "Tasks sent by this beat schedule."),
    Param("received_after", DATETIME, "Received by a worker at or after this time "
          "(ISO 8601; no offset means UTC)."),
    Param("received_before", DATETIME, "Received by a worker before this time."),
    Param("finished_after", DATETIME, "Finished at or after this time."),
    Param("finished_before", DATETIME, "Finished before this time."),
    Param("search", STRING, "Text anywhere in args, kwargs, result, exception type or "
          "message (case-insensitive), or an exact task id. Slow on a big table: "
          "no index serves it, every row matching the other filters is read."),
)
PAGING = (
    Param("sort", STRING, f"Sort key, `-` before it for descending (default "
          f"`{DEFAULT_SORT}`); ties are ordered by task id.",
          tuple(sorted(SORTS)) + tuple(f"-{key}" for key in sorted(SORTS))),
    Param("cursor", STRING, "The `next_cursor` of the previous page (with the same "
          "sort and filters)."),
    Param("limit", INTEGER, f"Tasks per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
)
WORKER_FILTERS = (
    Param("state", STRING, "Workers in this effective state.", WORKER_STATES),
)


def parse(query: Mapping[str, str], params: Sequence[Param], *,
          strict: bool = True) -> dict[str, Any]:
    """The values of ``params`` given in ``query`` (absent ones left out), typed.
    ``strict``: a parameter not in ``params`` is refused (a typo filters nothing)."""
    known = {p.name: p for p in params}
    if strict:
        for name in query:
            if name not in known:
                raise InvalidQuery(f"unknown parameter {name!r}; this endpoint takes "
                                   f"{', '.join(known) or 'none'}", name)
    values: dict[str, Any] = {}
    for name, param in known.items():
        raw = query.get(name, "")
        if "\x00" in raw:  # PostgreSQL refuses NUL in any text: a 400 here, not a 503 there
            raise InvalidQuery(f"{name} must not hold a NUL character", name)
        if raw != "":
            values[name] = convert(param, raw)
    return values


def path_id(request: Request, name: str) -> str:
    """The path parameter ``name``; one no row can hold (a NUL) is unknown (404)."""
    value: str = request.path_params[name]
    if "\x00" in value:
        raise NotFound(f"no {name} {value!r}", name)
    return value


def convert(param: Param, raw: str) -> Any:
    """``raw`` as ``param``'s kind, or InvalidQuery naming it."""
    if param.kind == INTEGER:
        try:
            return int(raw)
        except ValueError:
            raise InvalidQuery(f"{param.name} must be an integer", param.name) from None
    if param.kind == DATETIME:
        return parse_time(raw, param.name)
    if param.kind == BOOLEAN:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise InvalidQuery(f"{param.name} must be true or false", param.name)
        return raw.lower() in ("true", "1", "yes")
    if param.enum and raw not in param.enum:
        raise InvalidQuery(f"{param.name} must be one of {', '.join(param.enum)}", param.name)
    return raw


def parse_time(raw: str, name: str, formats: Sequence[str] = ()) -> dt.datetime:
    """An ISO 8601 time (or one of ``formats``), aware: no offset means UTC."""
    value: dt.datetime | None = None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        for form in formats:
            try:
                value = dt.datetime.strptime(raw, form)
                break
            except ValueError:
                continue
    if value is None:
        raise InvalidQuery(f"{name} must be a time in ISO 8601 (2026-01-31T12:00:00Z)", name)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def task_filters(values: Mapping[str, Any]) -> TaskFilters:
    """The :class:`TaskFilters` of parsed :data:`TASK_FILTERS` values."""
    states = tuple(s.strip() for s in values.get("state", "").split(",") if s.strip())
    return TaskFilters(
        states=states, name=values.get("name"), queue=values.get("queue"),
        worker=values.get("worker"), root_id=values.get("root_id"),
        group_id=values.get("group_id"), parent_id=values.get("parent_id"),
        schedule_name=values.get("schedule"),
        received_after=values.get("received_after"),
        received_before=values.get("received_before"),
        finished_after=values.get("finished_after"),
        finished_before=values.get("finished_before"), search=values.get("search"))
