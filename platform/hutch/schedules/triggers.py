"""Schedule kinds and next-run computation: pure functions of an injected "now".

Three kinds, as in Celery: :class:`Interval` (every N seconds), crontab
(:class:`hutch.schedules.cron.crontab`) and :class:`Clocked` (once, at a datetime).
Each answers two questions: when is the *first* run of a schedule that was just
created, edited or enabled, and when is the run *after* a due run that was just
sent. The second answer never lies in the past: a schedule that missed several
runs while no beat was active runs once and then resumes its rhythm, or, with
``catch_up="all"``, sends each missed due time (:meth:`Interval.backlog`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..errors import ConfigurationError
from .cron import crontab

MISSED_COUNT_CAP = 1000
"""Missed crontab runs are counted (for the catch-up log lines) up to this many."""

ONE_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Backlog:
    """The missed runs of a late schedule that ``catch_up="all"`` sends: the newest
    ``limit`` due times up to now, oldest first, and the older ones it skips."""

    runs: tuple[dt.datetime, ...]
    skipped: int = 0
    """How many older due times are not sent (at least this many if ``more``)."""
    first_skipped: dt.datetime | None = None
    last_skipped: dt.datetime | None = None
    more: bool = False


@dataclass(frozen=True)
class Interval:
    """Every ``seconds`` seconds, anchored on the first run (no drift)."""

    seconds: float
    kind: str = "interval"

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)) \
                or not math.isfinite(self.seconds) or self.seconds <= 0:
            raise ConfigurationError(f"interval: expected seconds > 0, got {self.seconds!r}")

    def first(self, now: dt.datetime, zone: ZoneInfo) -> dt.datetime:
        return now + dt.timedelta(seconds=self.seconds)

    def following(self, due: dt.datetime, now: dt.datetime,
                  zone: ZoneInfo) -> tuple[dt.datetime, int]:
        """The next run after ``due`` that is later than ``now``, and how many runs in
        between were skipped (missed while no beat was active); the same for every kind."""
        step = dt.timedelta(seconds=self.seconds)
        after = due + step
        if after > now:
            return after, 0
        skipped = math.floor((now - due) / step)
        after = due + step * (skipped + 1)
        while after <= now:  # float rounding
            after += step
            skipped += 1
        return after, skipped

    def backlog(self, due: dt.datetime, until: dt.datetime, zone: ZoneInfo,
                limit: int) -> Backlog:
        """``due`` and the due times after it up to ``until``: the newest ``limit``."""
        step = dt.timedelta(seconds=self.seconds)
        count = max(1, math.floor((until - due) / step) + 1) if until >= due else 1
        while count > 1 and due + step * (count - 1) > until:  # float rounding
            count -= 1
        while due + step * count <= until:
            count += 1
        first = max(0, count - limit)
        runs = tuple(due + step * k for k in range(first, count))
        if not first:
            return Backlog(runs)
        return Backlog(runs, first, due, due + step * (first - 1))


@dataclass(frozen=True)
class Cron:
    """A :class:`crontab` evaluated in the schedule's time zone."""

    spec: crontab
    kind: str = "crontab"

    def first(self, now: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        return self.spec.next_after(now, zone)

    def following(self, due: dt.datetime, now: dt.datetime,
                  zone: ZoneInfo) -> tuple[dt.datetime | None, int]:
        after = self.spec.next_after(due, zone)
        skipped = 0
        while after is not None and after <= now:
            skipped += 1
            if skipped >= MISSED_COUNT_CAP:
                return self.spec.next_after(now, zone), skipped
            after = self.spec.next_after(after, zone)
        return after, skipped

    def backlog(self, due: dt.datetime, until: dt.datetime, zone: ZoneInfo,
                limit: int) -> Backlog:
        newest: list[dt.datetime] = []  # walked back from ``until``: at most ``limit`` runs
        for fire in self.spec.fires_before(until + ONE_MICROSECOND, zone):
            if fire <= due or len(newest) == limit:
                break
            newest.append(fire)
        if len(newest) < limit:  # room for ``due`` too: nothing is skipped
            return Backlog((due, *reversed(newest)))
        oldest = newest[-1]
        skipped, after = 1, self.spec.next_after(due, zone)
        while after is not None and after < oldest and skipped < MISSED_COUNT_CAP:
            skipped += 1
            after = self.spec.next_after(after, zone)
        last = self.spec.last_before(oldest, zone)
        return Backlog(tuple(reversed(newest)), skipped, due,
                       last if last is not None and last > due else due,
                       more=after is not None and after < oldest)


@dataclass(frozen=True)
class Clocked:
    """Once, at ``at`` (a run missed while no beat was active is sent when one is)."""

    at: dt.datetime
    kind: str = "clocked"

    def first(self, now: dt.datetime, zone: ZoneInfo) -> dt.datetime:
        return self.at

    def following(self, due: dt.datetime, now: dt.datetime,
                  zone: ZoneInfo) -> tuple[None, int]:
        return None, 0

    def backlog(self, due: dt.datetime, until: dt.datetime, zone: ZoneInfo,
                limit: int) -> Backlog:
        return Backlog((due,))


def as_trigger(schedule: object, zone: ZoneInfo) -> Interval | Cron | Clocked:
    """A ``beat_schedule`` value: timedelta, seconds, crontab, or datetime (clocked)."""
    if isinstance(schedule, (Interval, Cron, Clocked)):
        return schedule
    if isinstance(schedule, crontab):
        return Cron(schedule)
    if isinstance(schedule, dt.timedelta):
        return Interval(schedule.total_seconds())
    if isinstance(schedule, dt.datetime):
        return Clocked(aware(schedule, zone))
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        return Interval(float(schedule))
    raise ConfigurationError(
        f"schedule: expected a timedelta, seconds, crontab(...) or datetime, got {schedule!r}")


def aware(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A naive datetime is read in ``zone``; the result is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.timezone.utc)


def load_zone(name: str | None, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ValueError, KeyError, OSError):
        raise ConfigurationError(f"{field}: unknown time zone {name!r}") from None


_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str, field: str = "every") -> float:
    """``"30s"``, ``"1.5m"``, ``"2h"``, ``"1d"`` or plain seconds, as seconds."""
    match = _EVERY.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(f"{field}: {text!r} is not an interval such as 30s, 5m, 2h, 1d")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_at(text: str, zone: ZoneInfo, field: str = "at") -> dt.datetime:
    """An ISO 8601 datetime; without an offset it is read in ``zone``."""
    try:
        value = dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigurationError(
            f"{field}: {text!r} is not an ISO 8601 datetime such as 2030-01-31T07:30") from None
    return aware(value, zone)
