"""One schedule as the code sees a ``hutch_schedules`` row: validated, with its run times.

Every path that creates or edits a schedule (``beat_schedule`` in config, the
Python API, the CLI) builds a :class:`Schedule` through :func:`build`, so bad
input is refused the same way everywhere, with the field named. Rows edited by
hand in SQL are read back through :meth:`Schedule.from_row`; a row that does not
make sense is reported by beat and skipped, never guessed at.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import ConfigurationError
from .cron import crontab
from .triggers import Backlog, Clocked, Cron, Interval, as_trigger, aware, load_zone

KINDS = ("interval", "crontab", "clocked")
OPTION_KEYS = ("queue", "routing_key", "priority", "expires", "headers")
"""Call options a schedule may carry (docs/beat.md)."""
CONFIG_KEYS = frozenset({"task", "schedule", "args", "kwargs", "options", "timezone",
                         "enabled", "one_off", "start_at", "end_at", "description",
                         "catch_up", "catch_up_limit"})

CATCH_UP = ("one", "all")
"""``catch_up``: after downtime, ``one`` run for all the missed ones, or ``all`` of
them (the newest ``catch_up_limit``), oldest first."""
CATCH_UP_LIMIT = 100
"""Default ``catch_up_limit``: a burst of 100 tasks, claimed and sent in well under a
second, after any outage; set it per schedule for more."""
CATCH_UP_LIMIT_MAX = 10_000

TASK_NAME = re.compile(r"^[A-Za-z_][\w\-]*(?:[.:][A-Za-z_][\w\-]*)*$")
NAME_MAX = 200
TASK_MAX = 255

SOURCE_CONFIG = "config"
SOURCE_RUNTIME = "runtime"
SOURCE_REMOVED = "config-removed"
"""``source``: where a schedule came from. A config entry that disappears from
``beat_schedule`` is disabled and marked ``config-removed``; if it comes back it is
enabled again."""


@dataclass
class Schedule:
    """A schedule's definition plus the run bookkeeping beat keeps in its row."""

    name: str
    task: str
    kind: str
    interval_seconds: float | None = None
    crontab: str | None = None
    clocked_at: dt.datetime | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    enabled: bool = True
    one_off: bool = False
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    description: str | None = None
    catch_up: str = "one"
    catch_up_limit: int = CATCH_UP_LIMIT
    source: str = SOURCE_RUNTIME
    last_run_at: dt.datetime | None = None
    total_run_count: int = 0
    next_run_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    # -- the trigger ----------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return load_zone(self.timezone)

    @property
    def trigger(self) -> Interval | Cron | Clocked:
        if self.kind == "interval":
            return Interval(self.interval_seconds)  # type: ignore[arg-type]
        if self.kind == "crontab":
            return Cron(crontab.from_string(self.crontab or ""))
        if self.kind == "clocked":
            if self.clocked_at is None:
                raise ConfigurationError("clocked_at: a clocked schedule needs a time")
            return Clocked(self.clocked_at)
        raise ConfigurationError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def finished(self) -> bool:
        """A one-off (or clocked) schedule that has run has no further runs."""
        return (self.one_off or self.kind == "clocked") and self.total_run_count > 0

    def first_run(self, now: dt.datetime) -> dt.datetime | None:
        """When a schedule just created, edited or enabled runs first."""
        if self.finished:
            return None
        trigger = self.trigger
        if self.start_at is not None and self.start_at > now and trigger.kind != "clocked":
            if trigger.kind == "interval":
                return self._within_end(self.start_at)
            return self._within_end(trigger.first(self.start_at - dt.timedelta(microseconds=1),
                                                  self.zone))
        return self._within_end(trigger.first(now, self.zone))

    def run_after(self, due: dt.datetime, now: dt.datetime) -> tuple[dt.datetime | None, int]:
        """The run after the one due at ``due`` (sent at ``now``), and how many were
        skipped because they were missed: a late schedule runs once, not once per miss."""
        if self.one_off or self.kind == "clocked":
            return None, 0
        after, skipped = self.trigger.following(due, now, self.zone)
        return self._within_end(after), skipped

    def plan(self, now: dt.datetime) -> Plan:
        """What this schedule sends at ``now``, its ``next_run_at`` being due: one run
        (``catch_up="one"``, a clocked or one-off schedule) or the missed due times up to
        now (``"all"``), each claimed in turn; then its next run."""
        due = self.next_run_at
        if due is None:
            raise ConfigurationError("next_run_at: the schedule has no due run")
        if self.catch_up != "all" or self.one_off or self.kind == "clocked":
            following, folded = self.run_after(due, now)
            return Plan(Backlog((due,)), following, folded)
        until = now if self.end_at is None else min(now, self.end_at)
        backlog = self.trigger.backlog(due, until, self.zone, self.catch_up_limit)
        following, _ = self.run_after(backlog.runs[-1], now)
        return Plan(backlog, following)

    def _within_end(self, when: dt.datetime | None) -> dt.datetime | None:
        if when is None or (self.end_at is not None and when > self.end_at):
            return None
        return when

    # -- rows -----------------------------------------------------------------------
    def definition(self) -> dict[str, Any]:
        """The columns a user sets (not beat's bookkeeping)."""
        return {name: getattr(self, name) for name in DEFINITION_FIELDS}

    def fingerprint(self) -> str:
        """Changes when anything that decides the run times changes (beat recomputes
        ``next_run_at`` then, whoever made the change: API, CLI or plain SQL)."""
        return json.dumps([self.kind, self.interval_seconds, self.crontab,
                           _iso(self.clocked_at), self.timezone, self.enabled, self.one_off,
                           _iso(self.start_at), _iso(self.end_at)])

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        """A row as stored; NULL ``args``/``kwargs``/``options`` (a row inserted by hand
        that left them out) read as empty."""
        values = {name: row[name] for name in ROW_FIELDS}
        for name, empty in (("args", list), ("kwargs", dict), ("options", dict)):
            if values[name] is None:
                values[name] = empty()
        return cls(**values)

    def check(self) -> None:
        """Refuse a row that cannot be sent (one edited by hand into, say, ``args = '"x"'``),
        naming the column; beat reports such a row and skips it."""
        check_task(self.task)
        _args(self.args)
        _kwargs(self.kwargs)
        check_options(self.options)
        load_zone(self.timezone)
        check_catch_up(self.catch_up, self.catch_up_limit)

    def describe(self) -> str:
        """``every 30s``, ``cron 30 7 * * 1 (Asia/Shanghai)``, ``at 2030-01-31T07:30Z``."""
        if self.kind == "interval":
            return f"every {_seconds(self.interval_seconds or 0)}"
        if self.kind == "crontab":
            return f"cron {self.crontab} ({self.timezone})"
        return f"at {_iso(self.clocked_at)}"

    def describe_catch_up(self) -> str:
        """``one``, or ``all (100)``: every missed run, up to the limit."""
        return f"all ({self.catch_up_limit})" if self.catch_up == "all" else self.catch_up


@dataclass(frozen=True)
class Plan:
    """The runs a due schedule sends now (:meth:`Schedule.plan`): ``backlog.runs``,
    oldest first (each claimed with the next as the schedule's ``next_run_at``, the last
    with ``following``); ``folded``: missed runs the one run stands for (``one``)."""

    backlog: Backlog
    following: dt.datetime | None
    folded: int = 0

    def next_after(self, index: int) -> dt.datetime | None:
        """The ``next_run_at`` a claim of ``backlog.runs[index]`` sets."""
        runs = self.backlog.runs
        return runs[index + 1] if index + 1 < len(runs) else self.following


ROW_FIELDS = tuple(f.name for f in dataclasses.fields(Schedule))
BOOKKEEPING = ("last_run_at", "total_run_count", "next_run_at", "created_at", "updated_at")
DEFINITION_FIELDS = tuple(n for n in ROW_FIELDS if n not in BOOKKEEPING and n != "name")


def build(name: str, task: str, schedule: Any = None, *, default_timezone: str = "UTC",
          args: Any = (), kwargs: Any = None, options: Any = None, timezone: str | None = None,
          enabled: bool = True, one_off: bool = False, start_at: dt.datetime | None = None,
          end_at: dt.datetime | None = None, description: str | None = None,
          catch_up: str = "one", catch_up_limit: int = CATCH_UP_LIMIT,
          source: str = SOURCE_RUNTIME) -> Schedule:
    """A validated :class:`Schedule`; raises ConfigurationError naming the bad field."""
    if timezone is not None and (not isinstance(timezone, str) or not timezone.strip()):
        raise ConfigurationError(f"timezone: expected a zone name such as Europe/Berlin, "
                                 f"got {timezone!r}")
    zone_name = timezone or default_timezone
    zone = load_zone(zone_name)
    trigger = as_trigger(schedule, zone)
    entry = Schedule(
        name=check_name(name), task=check_task(task), kind=trigger.kind,
        args=_args(args), kwargs=_kwargs(kwargs), options=check_options(options),
        timezone=zone_name, enabled=_flag("enabled", enabled),
        one_off=_flag("one_off", one_off), start_at=_when("start_at", start_at, zone),
        end_at=_when("end_at", end_at, zone), description=_description(description),
        catch_up=catch_up, catch_up_limit=catch_up_limit, source=source)
    check_catch_up(entry.catch_up, entry.catch_up_limit)
    set_trigger(entry, trigger)
    if entry.start_at and entry.end_at and entry.end_at < entry.start_at:
        raise ConfigurationError("end_at: earlier than start_at")
    _check_json(entry)
    return entry


def set_trigger(entry: Schedule, trigger: Interval | Cron | Clocked) -> None:
    """Store ``trigger`` in the kind columns (the other kinds' columns are cleared)."""
    entry.kind = trigger.kind
    entry.interval_seconds = trigger.seconds if isinstance(trigger, Interval) else None
    entry.crontab = trigger.spec.to_string() if isinstance(trigger, Cron) else None
    entry.clocked_at = trigger.at if isinstance(trigger, Clocked) else None


def from_config(name: str, spec: Any, default_timezone: str) -> Schedule:
    """A ``beat_schedule`` entry (Celery's format) as a schedule."""
    where = f"beat_schedule[{name!r}]"
    if not isinstance(spec, dict):
        raise ConfigurationError(f"{where}: expected a mapping with 'task' and 'schedule'")
    unknown = sorted(set(spec) - CONFIG_KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("task", "schedule"):
        if key not in spec:
            raise ConfigurationError(f"{where}: '{key}' is required")
    try:
        return build(name, spec["task"], spec["schedule"], default_timezone=default_timezone,
                     args=spec.get("args", ()), kwargs=spec.get("kwargs"),
                     options=spec.get("options"), timezone=spec.get("timezone"),
                     enabled=spec.get("enabled", True), one_off=spec.get("one_off", False),
                     start_at=spec.get("start_at"), end_at=spec.get("end_at"),
                     description=spec.get("description"),
                     catch_up=spec.get("catch_up", "one"),
                     catch_up_limit=spec.get("catch_up_limit", CATCH_UP_LIMIT),
                     source=SOURCE_CONFIG)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX \
            or any(ord(c) < 32 for c in name):
        raise ConfigurationError(f"name: expected 1-{NAME_MAX} printable characters, got {name!r}")
    return name


def check_task(task: Any) -> str:
    if not isinstance(task, str) or len(task) > TASK_MAX or not TASK_NAME.match(task):
        raise ConfigurationError(
            f"task: {task!r} is not a task name (dotted identifiers, such as tasks.add)")
    return task


def check_options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigurationError(f"options: expected a mapping, got {options!r}")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ConfigurationError(f"options: unknown key(s) {', '.join(map(str, unknown))}; "
                                 f"known: {', '.join(OPTION_KEYS)}")
    for key in ("queue", "routing_key"):
        if key in options and (not isinstance(options[key], str) or not options[key]):
            raise ConfigurationError(f"options[{key!r}]: expected a route name")
    priority = options.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not 0 <= priority <= 255):
        raise ConfigurationError(f"options['priority']: expected 0..255, got {priority!r}")
    expires = options.get("expires")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))
                                or expires <= 0):
        raise ConfigurationError(
            f"options['expires']: expected seconds after sending (> 0), got {expires!r}")
    if "headers" in options and not isinstance(options["headers"], dict):
        raise ConfigurationError("options['headers']: expected a mapping")
    return dict(options)


def check_catch_up(catch_up: Any, limit: Any) -> None:
    if catch_up not in CATCH_UP:
        raise ConfigurationError(f"catch_up: expected one of {', '.join(CATCH_UP)}, "
                                 f"got {catch_up!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) \
            or not 1 <= limit <= CATCH_UP_LIMIT_MAX:
        raise ConfigurationError(f"catch_up_limit: expected a whole number of runs, "
                                 f"1..{CATCH_UP_LIMIT_MAX}, got {limit!r}")


def _args(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ConfigurationError(f"args: expected a list, got {value!r}")
    return list(value)


def _kwargs(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigurationError(f"kwargs: expected a mapping of names to values, got {value!r}")
    return dict(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name}: expected true or false, got {value!r}")
    return value


def _when(name: str, value: Any, zone: ZoneInfo) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ConfigurationError(f"{name}: expected a datetime, got {value!r}")
    return aware(value, zone)


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"description: expected text, got {value!r}")
    return value


def _check_json(entry: Schedule) -> None:
    """Args, kwargs and options are stored as JSON: refuse what JSON cannot hold now,
    not when beat first sends the task."""
    for name in ("args", "kwargs", "options"):
        try:
            json.dumps(getattr(entry, name))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{name}: not storable as JSON ({exc})") from None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"
