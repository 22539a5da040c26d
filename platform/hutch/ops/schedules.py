"""The beat schedules as the dashboard shows and changes them (its pages and its JSON
API alike): each schedule with its next runs in its own zone and in UTC, its run
history, and every change made through ``app.schedules`` (hutch.beat.api, which
validates and stores it: the running beat applies it at its next poll) and written
to ``hutch_audit``, whether it worked or not.

Refusals are hutch's query errors, naming the field at fault: InvalidQuery (400)
for a value :func:`hutch.schedules.entry.build` or the beat API refuses, NotFound
(404) for an unknown schedule. No HTTP here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..beat.api import Schedules
from ..beat.store import Run
from ..errors import ConfigurationError, InvalidQuery, NotFound
from ..schedules.entry import Schedule
from ..schedules.triggers import load_zone
from .audit import Actor, AuditLog, entry

T = TypeVar("T")

NEXT_RUNS = 5
"""How many coming runs a schedule's detail shows."""
RUNS_SHOWN = 20
"""How many of its latest runs (newest first)."""
TRIGGER_FIELDS = {"interval": "every", "crontab": "cron", "clocked": "at"}
"""Each kind and the field that gives its trigger (the beat API's keywords)."""

_FIELD_OF = {"interval": "every", "crontab": "cron", "schedule": "kind", "tz": "timezone",
             "--tz": "timezone"}
_PREFIX = re.compile(r"^(--)?([A-Za-z_-]+)(\[['\"]?(\w+)['\"]?\])?(?: \w+)?:")


def field_of(error: Exception) -> str | None:
    """The field a ConfigurationError of the schedule code names (its text starts
    ``field: ...``, ``options['queue']: ...``, ``crontab minute: ...`` or, from the CLI's
    parsing, ``--start-at: ...``), as the dashboard's forms and API call it."""
    match = _PREFIX.match(str(error))
    if match is None:
        return None
    name = match.group(2).replace("-", "_")
    if name == "options" and match.group(4) == "queue":
        return "queue"
    return _FIELD_OF.get(name, name)


@dataclass(frozen=True)
class When:
    """An instant in UTC and in a schedule's zone (``local`` None if the zone is unknown)."""

    utc: dt.datetime
    local: dt.datetime | None
    zone: str

    def as_dict(self) -> dict[str, Any]:
        return {"utc": self.utc.isoformat(), "timezone": self.zone,
                "local": self.local.isoformat() if self.local else None}


def when(value: dt.datetime | None, zone: str) -> When | None:
    return None if value is None else at(value, zone)


def at(value: dt.datetime, zone: str) -> When:
    try:
        local: dt.datetime | None = value.astimezone(load_zone(zone))
    except (ConfigurationError, OverflowError):
        local = None
    return When(value.astimezone(dt.timezone.utc), local, zone)


def next_runs(schedule: Schedule, count: int = NEXT_RUNS) -> list[When]:
    """The next ``count`` runs of an enabled schedule, from its ``next_run_at`` on (what
    beat will send if nothing changes and no beat is down meanwhile)."""
    found: list[When] = []
    due = schedule.next_run_at if schedule.enabled else None
    while due is not None and len(found) < count:
        found.append(at(due, schedule.timezone))
        try:
            due, _ = schedule.run_after(due, due)
        except (ConfigurationError, OverflowError):  # a row edited by hand into nonsense
            break
    return found


def public(schedule: Schedule) -> dict[str, Any]:
    """A schedule as JSON: its columns (times in ISO 8601, UTC), ``schedule`` (described
    in words), and ``next_run`` (in UTC and in its zone)."""
    row = {k: _json_safe(v) for k, v in schedule.to_row().items()}
    next_run = when(schedule.next_run_at, schedule.timezone)
    return {**row, "schedule": schedule.describe(),
            "next_run": next_run.as_dict() if next_run else None}


def run_record(run: Run, zone: str) -> dict[str, Any]:
    """One claimed run as JSON: ``manual`` for a run now, else sent by beat."""
    due = when(run.due_at, zone)
    return {"due_at": due.as_dict() if due else None, "task_id": run.task_id,
            "claimed_at": run.claimed_at.isoformat(),
            "sent_at": run.sent_at.isoformat() if run.sent_at else None,
            "manual": run.manual}


class ScheduleDesk:
    """The schedules of one app, read and changed on behalf of an :class:`Actor`."""

    def __init__(self, schedules: Schedules, audit: AuditLog) -> None:
        self.schedules = schedules
        self.audit = audit

    # -- reading ---------------------------------------------------------------------
    def listing(self) -> tuple[list[Schedule], dict[str, str]]:
        """Every readable schedule, and why each unreadable one (edited by hand) is not."""
        return self.schedules.store.readable()

    def require(self, name: str) -> Schedule:
        found = self.schedules.get(name)
        if found is None:
            raise NotFound(f"no schedule named {name!r}", "name")
        return found

    def runs(self, name: str, limit: int = RUNS_SHOWN) -> list[Run]:
        return self.schedules.store.runs(name, limit=limit)

    # -- acting (each audited) ---------------------------------------------------------
    def create(self, actor: Actor, name: str, fields: Mapping[str, Any]) -> Schedule:
        """``app.schedules.add(name, **fields)``; ``task`` is one of the fields."""
        def work() -> Schedule:
            values = dict(fields)
            if not isinstance(values.get("task"), str):
                raise InvalidQuery("task: required (a task name such as tasks.add)", "task")
            return self.schedules.add(name, values.pop("task"), **values)

        return self._act(actor, "schedule.create", name, work,
                         lambda made: {"definition": _definition(made)})

    def update(self, actor: Actor, name: str, fields: Mapping[str, Any]) -> Schedule:
        """``app.schedules.edit(name, **fields)``; the audit keeps what changed."""
        old = self._existing(actor, "schedule.update", name)

        def changes(new: Schedule) -> dict[str, Any]:
            before, after = _definition(old), _definition(new)
            return {"changed": {k: [before[k], v] for k, v in after.items() if before[k] != v}}

        return self._act(actor, "schedule.update", name,
                         lambda: self.schedules.edit(name, **fields), changes)

    def enable(self, actor: Actor, name: str, enabled: bool = True) -> Schedule:
        action = "schedule.enable" if enabled else "schedule.disable"
        self._existing(actor, action, name)
        return self._act(actor, action, name,
                         lambda: self.schedules.edit(name, enabled=enabled),
                         lambda s: {"next_run_at": _json_safe(s.next_run_at)})

    def run_now(self, actor: Actor, name: str) -> str:
        """Send one run now (recorded in ``hutch_schedule_runs`` as a manual run, its
        task carrying the schedule's name); answers its task id."""
        self._existing(actor, "schedule.run", name)
        return self._act(actor, "schedule.run", name,
                         lambda: self.schedules.run_now(name).id,
                         lambda task_id: {"task_id": task_id})

    def delete(self, actor: Actor, name: str) -> None:
        old = self._existing(actor, "schedule.delete", name)
        self._act(actor, "schedule.delete", name, lambda: self.schedules.remove(name),
                  lambda _: {"definition": _definition(old)})

    def _existing(self, actor: Actor, action: str, name: str) -> Schedule:
        return self._act(actor, action, name, lambda: self.require(name), lambda _: None,
                         record_ok=False)

    def _act(self, actor: Actor, action: str, target: str, work: Callable[[], T],
             detail: Callable[[T], dict[str, Any] | None], *, record_ok: bool = True) -> T:
        """Run ``work``; write the audit entry (``detail`` of its value, or the error);
        refusals of the schedule code become InvalidQuery naming the field."""
        try:
            done = work()
        except (ConfigurationError, InvalidQuery, NotFound, OverflowError) as exc:
            self._record(actor, action, target, False, {"error": str(exc)})
            raise _refusal(exc) from None
        except Exception as exc:
            self._record(actor, action, target, False, {"error": type(exc).__name__})
            raise
        if record_ok:
            self._record(actor, action, target, True, detail(done))
        return done

    def _record(self, actor: Actor, action: str, target: str, ok: bool,
                detail: dict[str, Any] | None) -> None:
        self.audit.record(entry(actor, action, target, ok=ok, detail=detail))


def _refusal(exc: Exception) -> InvalidQuery | NotFound:
    if isinstance(exc, (InvalidQuery, NotFound)):
        return exc
    if isinstance(exc, OverflowError):
        return InvalidQuery("a time or interval too far in the future", None)
    if str(exc).startswith("name: no schedule named"):
        return NotFound(str(exc), "name")
    return InvalidQuery(str(exc), field_of(exc))


def _definition(schedule: Schedule) -> dict[str, Any]:
    return {k: _json_safe(v) for k, v in schedule.definition().items()}


def _json_safe(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value
