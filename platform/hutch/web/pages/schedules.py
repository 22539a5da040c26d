"""``/schedules``: the beat schedules (issue #14, "Schedules").

The list (next run in each schedule's zone and in UTC, last run), one schedule with
its run history and next runs, a form to create or edit one (every kind's fields
shown; the chosen kind's are used; errors beside the fields, the input kept, 400),
and the actions enable, disable, run now and delete, each confirmed on a page of its
own whose form posts with the CSRF token, then answered 303 back with the result.
Everything changes through hutch.ops.schedules (``app.schedules``, audited), as the
JSON API does. Read-only users see no forms or action buttons; the forms' pages
answer them 403.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...config import mask_secrets
from ...errors import (
    BackendError,
    BrokerError,
    ConfigurationError,
    InvalidQuery,
    NotFound,
    UnstorableValue,
)
from ...logs import get_logger
from ...ops.schedules import (
    TRIGGER_FIELDS,
    ScheduleDesk,
    next_runs,
    when,
)
from ...schedules.entry import CATCH_UP, CATCH_UP_LIMIT, Schedule
from ...schedules.triggers import parse_every
from ..api.params import path_id
from ..api.schedules import desk_of, text_fields
from ..auth import ADMIN, Endpoint, actor_of, needs
from .common import problem
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch

log = get_logger("hutch.web")

ACTIONS = {
    "enable": ("Enable", "It runs again; its next run is counted from now."),
    "disable": ("Disable", "It is kept but not run until enabled again."),
    "run": ("Run now", "One run is sent now, outside the schedule (its next run stays)."),
    "delete": ("Delete", "The schedule and its run records are deleted (its tasks' rows "
               "stay); an entry of beat_schedule comes back when beat restarts."),
}
"""Each action: its button and what confirming it does."""
DONE = {
    "created": "Schedule created.", "updated": "Schedule saved.",
    "enable": "Schedule enabled.", "disable": "Schedule disabled.",
    "run": "One run sent now, task id {task_id}.", "delete": "Schedule {name} deleted.",
}
"""The result shown after a 303 (``?done=``): fixed texts, only names filled in."""
TEXT_FIELDS = ("name", "task", "every", "cron", "at", "args", "kwargs", "queue", "timezone",
               "description", "start_at", "end_at", "catch_up", "catch_up_limit")
FORM_FIELDS = (*TEXT_FIELDS, "kind")
PARSED = ("args", "kwargs", "start_at", "end_at", "catch_up_limit")
"""Form fields whose text is parsed (by ``hutch schedule``'s code) before the beat API."""
EMPTY: dict[str, Any] = {"args": [], "kwargs": {}, "start_at": None, "end_at": None,
                         "catch_up_limit": CATCH_UP_LIMIT}
"""What an empty parsed field means."""


def path_to(request: Request, route: str, name: str, **query: str) -> str:
    """The path of one schedule's page (names may hold any printable character)."""
    path = str(request.url_for(route, name=quote(name, safe="/")).path)
    return f"{path}?{urlencode(query)}" if query else path


def done_message(request: Request) -> str | None:
    text = DONE.get(request.query_params.get("done", ""))
    if text is None:
        return None
    return text.format(task_id=request.query_params.get("task_id", "?"),
                       name=request.query_params.get("name", "?"))


def form_values(schedule: Schedule | None) -> dict[str, Any]:
    """What the form shows: an existing schedule's fields as text, or the defaults."""
    if schedule is None:
        return {"kind": "interval", "enabled": True, "one_off": False, "catch_up": "one",
                "catch_up_limit": str(CATCH_UP_LIMIT), "args": "[]", "kwargs": "{}"}
    local = {k: when(getattr(schedule, k), schedule.timezone)
             for k in ("clocked_at", "start_at", "end_at")}
    text = {k: (w.local or w.utc).replace(tzinfo=None).isoformat() if w else ""
            for k, w in local.items()}
    return {"name": schedule.name, "task": schedule.task, "kind": schedule.kind,
            "every": _every(schedule.interval_seconds) if schedule.kind == "interval" else "",
            "cron": schedule.crontab or "", "at": text["clocked_at"],
            "args": json.dumps(schedule.args), "kwargs": json.dumps(schedule.kwargs),
            "queue": schedule.options.get("queue", ""), "timezone": schedule.timezone,
            "description": schedule.description or "", "start_at": text["start_at"],
            "end_at": text["end_at"], "catch_up": schedule.catch_up,
            "catch_up_limit": str(schedule.catch_up_limit), "enabled": schedule.enabled,
            "one_off": schedule.one_off}


def form_fields(form: Mapping[str, Any], default_timezone: str,
                old: Schedule | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as ``app.schedules`` keywords, and the errors found so far by field
    (each field parsed on its own, so every malformed one is reported at once)."""
    text = {k: str(form.get(k) or "").strip() for k in TEXT_FIELDS}
    errors = {k: "must not hold a NUL character" for k, v in text.items() if "\x00" in v}
    fields: dict[str, Any] = {"task": text["task"], "timezone": text["timezone"] or None,
                              "description": text["description"] or None,
                              "catch_up": text["catch_up"] or "one",
                              "enabled": "enabled" in form, "one_off": "one_off" in form}
    kind = str(form.get("kind") or "")
    if kind not in TRIGGER_FIELDS:
        errors["kind"] = f"choose one of {', '.join(TRIGGER_FIELDS)}"
    elif not text[TRIGGER_FIELDS[kind]]:
        errors[TRIGGER_FIELDS[kind]] = f"required for a {kind} schedule"
    else:
        fields[TRIGGER_FIELDS[kind]] = text[TRIGGER_FIELDS[kind]]
    zone = {"timezone": text["timezone"]} if text["timezone"] else {}
    for key in PARSED:
        if not text[key]:
            fields[key] = EMPTY[key]
            continue
        try:
            fields[key] = text_fields({key: text[key], **zone}, default_timezone)[key]
        except InvalidQuery as exc:
            errors[exc.field or key] = str(exc).split(": ", 1)[-1]
    kept = {k: v for k, v in (old.options if old else {}).items() if k != "queue"}
    fields["options"] = {**kept, **({"queue": text["queue"]} if text["queue"] else {})}
    return fields, errors


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    def desk() -> ScheduleDesk:
        return desk_of(hutch_app)

    def guarded(endpoint: Endpoint) -> Endpoint:
        """``endpoint``, its refusals and failures answered as a page saying why (an
        unknown schedule 404, a refused value 400, a database or broker away 503)."""
        @functools.wraps(endpoint)
        async def page(request: Request) -> Response:
            try:
                return await endpoint(request)
            except (NotFound, InvalidQuery, BackendError, BrokerError) as exc:
                status, title, message = _problem(exc)
                if status == 503:
                    log.warning("web page: schedules failed", path=request.url.path,
                                error=mask_secrets(str(exc)))
                return problem(pages, request, status, title, message)
        return page

    async def listing(request: Request) -> Response:
        entries, unreadable = await run_in_threadpool(lambda: desk().listing())
        rows = [{"entry": e, "next": when(e.next_run_at, e.timezone),
                 "last": when(e.last_run_at, e.timezone),
                 "path": path_to(request, "schedule", e.name),
                 "edit": path_to(request, "schedule-edit", e.name),
                 "actions": _actions(request, e)} for e in entries]
        return pages.render(request, "schedules.html", {
            "title": "schedules", "rows": rows, "unreadable": unreadable,
            "done": done_message(request)})

    async def detail(request: Request) -> Response:
        name = path_id(request, "name")

        def read() -> tuple[Schedule, list[Any]]:
            found = desk().require(name)
            return found, desk().runs(name)

        entry, runs = await run_in_threadpool(read)
        return pages.render(request, "schedule.html", {
            "title": f"schedule {name}", "entry": entry, "done": done_message(request),
            "next_runs": next_runs(entry), "last": when(entry.last_run_at, entry.timezone),
            "runs": [{"run": r, "due": when(r.due_at, entry.timezone)} for r in runs],
            "edit": path_to(request, "schedule-edit", name),
            "actions": _actions(request, entry)})

    def show_form(request: Request, values: dict[str, Any], errors: dict[str, str],
                  old: Schedule | None, status: int = 200) -> Response:
        target = path_to(request, "schedule-edit", old.name) if old else \
            str(request.url_for("schedule-new").path)
        return pages.render(request, "schedule_form.html", {
            "title": f"edit schedule {old.name}" if old else "new schedule", "old": old,
            "values": values, "errors": errors, "target": target,
            "kinds": TRIGGER_FIELDS, "catch_ups": CATCH_UP,
            "default_timezone": hutch_app.conf.timezone}, status_code=status)

    async def submit(request: Request, old: Schedule | None) -> Response:
        form = await request.form()
        values: dict[str, Any] = {k: form.get(k, "") for k in FORM_FIELDS}
        values.update(enabled="enabled" in form, one_off="one_off" in form)
        fields, errors = form_fields(form, hutch_app.conf.timezone, old)
        name = old.name if old else str(values["name"]).strip()
        if not errors:
            actor = actor_of(request)
            try:
                if old is None:
                    await run_in_threadpool(lambda: desk().create(actor, name, fields))
                else:
                    await run_in_threadpool(lambda: desk().update(actor, name, fields))
            except (InvalidQuery, NotFound) as exc:
                shown = exc.field if exc.field in FORM_FIELDS else None
                errors[shown or "form"] = str(exc).split(": ", 1)[-1] if shown else str(exc)
        if errors:
            return show_form(request, values, errors, old, 400)
        return RedirectResponse(path_to(request, "schedule", name,
                                        done="updated" if old else "created"), 303)

    @needs(ADMIN)
    async def new(request: Request) -> Response:
        if request.method == "POST":
            return await submit(request, None)
        return show_form(request, form_values(None), {}, None)

    @needs(ADMIN)
    async def edit(request: Request) -> Response:
        old = await run_in_threadpool(lambda: desk().require(path_id(request, "name")))
        if request.method == "POST":
            return await submit(request, old)
        return show_form(request, form_values(old), {}, old)

    def action_route(verb: str) -> Route:
        @needs(ADMIN)
        async def act(request: Request) -> Response:
            name = path_id(request, "name")
            if request.method == "GET":
                return await confirm(request, verb, name)
            actor = actor_of(request)
            result = await run_in_threadpool(lambda: _do(desk(), actor, verb, name))
            if verb == "delete":
                back = str(request.url_for("schedules").path) + "?" + urlencode(
                    {"done": "delete", "name": name})
            else:
                back = path_to(request, "schedule", name, done=verb,
                               **({"task_id": result} if result else {}))
            return RedirectResponse(back, 303)

        return Route(f"/schedules/{{name:path}}/{verb}", guarded(act), methods=["GET", "POST"],
                     name=f"schedule-{verb}")

    async def confirm(request: Request, verb: str, name: str) -> Response:
        entry = await run_in_threadpool(lambda: desk().require(name))
        label, explanation = ACTIONS[verb]
        return pages.render(request, "schedule_confirm.html", {
            "title": f"{label.lower()} schedule {name}", "entry": entry, "label": label,
            "explanation": explanation, "verb": verb,
            "target": path_to(request, f"schedule-{verb}", name),
            "back": path_to(request, "schedule", name)})

    return [
        Route("/schedules", guarded(listing), name="schedules"),
        Route("/schedules/new", guarded(new), methods=["GET", "POST"], name="schedule-new"),
        Route("/schedules/{name:path}/edit", guarded(edit), methods=["GET", "POST"],
              name="schedule-edit"),
        *(action_route(verb) for verb in ACTIONS),
        Route("/schedules/{name:path}", guarded(detail), name="schedule"),
    ]


def _problem(exc: Exception) -> tuple[int, str, str]:
    """The status, title and message of a page's refusal or failure (no detail of the
    database or broker: those go to the log)."""
    if isinstance(exc, NotFound):
        return 404, "Not found", str(exc)
    if isinstance(exc, UnstorableValue):
        return 400, "Bad request", "a value the result database refuses"
    if isinstance(exc, InvalidQuery):
        return 400, "Bad request", str(exc)
    if isinstance(exc, BackendError):
        return 503, "Unavailable", "the result database is unavailable"
    return 503, "Unavailable", "the broker is unavailable"


def _actions(request: Request, entry: Schedule) -> list[tuple[str, str]]:
    """(label, confirm page path) of the actions that apply to ``entry`` now."""
    verbs = [v for v in ACTIONS if v != ("disable" if not entry.enabled else "enable")]
    return [(ACTIONS[v][0], path_to(request, f"schedule-{v}", entry.name)) for v in verbs]


def _do(desk: ScheduleDesk, actor: Any, verb: str, name: str) -> str | None:
    """Perform one confirmed action; the run's task id for ``run``."""
    if verb == "run":
        return desk.run_now(actor, name)
    if verb == "delete":
        desk.delete(actor, name)
    else:
        desk.enable(actor, name, verb == "enable")
    return None


def _every(seconds: float | None) -> str:
    """An interval as the form shows it: ``30s``, ``2h`` (as described), or plain seconds
    when that text would not read back as the same interval."""
    described = Schedule(name="", task="", kind="interval",
                         interval_seconds=seconds).describe().removeprefix("every ")
    try:
        if parse_every(described) == seconds:
            return described
    except ConfigurationError:
        pass
    return repr(seconds)
