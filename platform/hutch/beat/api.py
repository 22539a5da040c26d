"""``app.schedules``: list and edit the schedules in the database while beat runs.

Every change is one committed statement on ``hutch_schedules`` that also sets
the row's ``next_run_at``; the running beat picks it up at its next poll
(within ``beat_poll_interval``). Nothing here needs beat to be running, except
that runs are sent only by an active beat (``run_now`` sends at once itself).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from ..client.handles import AsyncResult
from ..errors import ConfigurationError
from ..schedules.cron import crontab
from ..schedules.entry import CATCH_UP_LIMIT, DEFINITION_FIELDS, Schedule, build
from ..schedules.triggers import load_zone, parse_at, parse_every
from .sender import ClientFactory, Sender
from .store import BeatStore

if TYPE_CHECKING:
    from ..config import Settings

KIND_ARGUMENTS = ("schedule", "every", "cron", "at")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Schedules:
    """The schedules of an app's result database: ``client`` is the app's shared client,
    whose store holds them and through which ``run_now`` sends; ``conf.timezone`` is the
    zone of a schedule that names none."""

    def __init__(self, conf: Settings, client: ClientFactory) -> None:
        self.conf = conf
        self.client = client
        self.store = BeatStore(client().store)
        self.sender = Sender(client, self.store)

    # -- reading -------------------------------------------------------------------------
    def list(self) -> list[Schedule]:
        return self.store.all()

    def get(self, name: str) -> Schedule | None:
        return self.store.get(name)

    def require(self, name: str) -> Schedule:
        entry = self.store.get(name)
        if entry is None:
            raise ConfigurationError(f"name: no schedule named {name!r}")
        return entry

    # -- changing ------------------------------------------------------------------------
    def add(self, name: str, task: str, schedule: Any = None, *, every: Any = None,
            cron: str | None = None, at: Any = None, args: Any = (), kwargs: Any = None,
            options: dict[str, Any] | None = None, queue: str | None = None,
            timezone: str | None = None, enabled: bool = True, one_off: bool = False,
            start_at: dt.datetime | None = None, end_at: dt.datetime | None = None,
            description: str | None = None, catch_up: str = "one",
            catch_up_limit: int = CATCH_UP_LIMIT) -> Schedule:
        """Add a schedule: give one of ``schedule`` (timedelta, seconds, crontab or
        datetime), ``every`` ("30s", "5m" or seconds), ``cron`` ("30 7 * * 1") or
        ``at`` (a datetime or ISO text, once). ``catch_up``: after downtime, send
        ``"one"`` run for the missed ones, or ``"all"`` of them (the newest
        ``catch_up_limit``)."""
        zone_name = timezone or self.conf.timezone
        trigger = _trigger(schedule, every, cron, at, zone_name, required=True)
        entry = build(name, task, trigger, default_timezone=self.conf.timezone,
                      args=args, kwargs=kwargs, options=_options(options, queue),
                      timezone=timezone, enabled=enabled, one_off=one_off,
                      start_at=start_at, end_at=end_at, description=description,
                      catch_up=catch_up, catch_up_limit=catch_up_limit)
        self.sender.check(entry)
        now = utcnow()
        entry.next_run_at = entry.first_run(now) if entry.enabled else None
        self.store.insert(entry, now)
        return self.require(name)

    def edit(self, name: str, schedule: Any = None, *, every: Any = None,
             cron: str | None = None, at: Any = None, queue: str | None = None,
             **changes: Any) -> Schedule:
        """Change some fields of a schedule (the same keywords as :meth:`add`)."""
        unknown = sorted(set(changes) - set(DEFINITION_FIELDS) - {"source"})
        if unknown:
            raise ConfigurationError(f"unknown schedule field(s): {', '.join(unknown)}")
        old = self.require(name)
        fields = {**old.definition(), **changes}
        zone_name = fields["timezone"] or self.conf.timezone
        trigger = _trigger(schedule, every, cron, at, zone_name, required=False) \
            or old.trigger
        if queue is not None:
            fields["options"] = _options(fields.get("options"), queue)
        fields.pop("kind"), fields.pop("interval_seconds"), fields.pop("crontab")
        fields.pop("clocked_at")
        source = fields.pop("source")
        entry = build(name, fields.pop("task"), trigger, source=source,
                      default_timezone=self.conf.timezone, **fields)
        _keep_bookkeeping(entry, old)
        self.sender.check(entry)
        now = utcnow()
        values = entry.definition()
        if entry.fingerprint() != old.fingerprint():
            values["next_run_at"] = entry.first_run(now) if entry.enabled else None
        if not self.store.update(name, values, now):
            raise ConfigurationError(f"name: no schedule named {name!r}")
        return self.require(name)

    def enable(self, name: str) -> Schedule:
        return self.edit(name, enabled=True)

    def disable(self, name: str) -> Schedule:
        return self.edit(name, enabled=False)

    def remove(self, name: str) -> None:
        """Delete a schedule and its run records (its tasks' rows stay in hutch_tasks)."""
        if not self.store.delete(name):
            raise ConfigurationError(f"name: no schedule named {name!r}")

    def run_now(self, name: str) -> AsyncResult:
        """Send one run now, outside the schedule (``next_run_at`` is left alone)."""
        entry = self.require(name)
        task_id = str(uuid.uuid4())
        message = self.sender.message(entry, task_id)
        now = utcnow()
        self.store.claim(entry, now, None, task_id, now, "run-now", lease=None)
        self.sender.send(message, utcnow())
        return AsyncResult(task_id, self.client())


def _trigger(schedule: Any, every: Any, cron: str | None, at: Any, zone_name: str,
             required: bool) -> Any:
    values = (schedule, every, cron, at)
    given = [(k, v) for k, v in zip(KIND_ARGUMENTS, values, strict=True) if v is not None]
    if len(given) > 1:
        raise ConfigurationError(f"schedule: give one of {', '.join(KIND_ARGUMENTS)}, "
                                 f"not {' and '.join(k for k, _ in given)}")
    if not given:
        if required:
            raise ConfigurationError(f"schedule: give one of {', '.join(KIND_ARGUMENTS)}")
        return None
    kind, value = given[0]
    if kind == "every":
        return value if isinstance(value, (int, float, dt.timedelta)) else parse_every(value)
    if kind == "cron":
        return crontab.from_string(value)
    if kind == "at":
        return value if isinstance(value, dt.datetime) else parse_at(value, load_zone(zone_name))
    return value


def _options(options: dict[str, Any] | None, queue: str | None) -> dict[str, Any] | None:
    if queue is None:
        return options
    return {**(options or {}), "queue": queue}


def _keep_bookkeeping(entry: Schedule, old: Schedule) -> None:
    for name in ("last_run_at", "total_run_count", "next_run_at", "created_at"):
        setattr(entry, name, getattr(old, name))
