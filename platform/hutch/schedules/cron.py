"""Crontab schedules in Celery's syntax, evaluated in a time zone with zoneinfo.

``crontab(minute="*/15", hour="9-17", day_of_week="mon-fri")``: each field is
``*``, a number, a name (``mon``, ``jan``), a range ``a-b``, a step ``*/n`` or
``a-b/n``, or a comma-separated list of those; ints, and sets or lists of ints,
are accepted too. As in Celery, ``day_of_week`` counts from Sunday = 0 (7 is
also Sunday) and a time must match *both* ``day_of_month`` and ``day_of_week``.

Local times that a DST change skips (02:30 on a spring-forward night in
Europe/Berlin) fire at the first valid moment after them (03:00); local times
that happen twice (02:30 on a fall-back night) fire on their first occurrence
only. So a job fires once per intended local time and is never lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import ConfigurationError

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun",
               "jul", "aug", "sep", "oct", "nov", "dec")

SEARCH_YEARS = 8
"""How far ahead a next fire time is looked for (Feb 29 on a Monday recurs within 28
years, but nobody schedules that; an impossible spec such as Feb 30 ends the search)."""

DST_MARGIN = dt.timedelta(hours=2)
"""More than any DST shift (one hour almost everywhere, two at most in history)."""


@dataclass(frozen=True)
class Field:
    """How one crontab field is read: its name, bounds and the names it accepts."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    def parse(self, value: Any) -> frozenset[int]:
        """The set of values ``value`` stands for; ConfigurationError names the field."""
        if isinstance(value, bool):
            raise self.error(value, "expected a number or a crontab expression")
        if isinstance(value, int):
            return self._wrap({self._check(value, value)})
        if isinstance(value, (set, frozenset, list, tuple, range)):
            items = list(value)
            if not items:
                raise self.error(value, "an empty list matches nothing")
            return self._wrap({v for item in items for v in self.parse(item)})
        if not isinstance(value, str) or not value.strip():
            raise self.error(value, "expected a number or a crontab expression")
        found: set[int] = set()
        for part in value.replace(" ", "").lower().split(","):
            found.update(self._part(part, value))
        return self._wrap(found)

    def _wrap(self, values: set[int]) -> frozenset[int]:
        """Day 7 of the week is Sunday, like day 0."""
        if self.name == "day_of_week" and 7 in values:
            values = (values - {7}) | {0}
        return frozenset(values)

    def _part(self, part: str, whole: Any) -> Iterable[int]:
        if not part:
            raise self.error(whole, "empty list item")
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise self.error(whole, f"step {step_text!r} is not a whole number >= 1")
            step = int(step_text)
        if span == "*":
            start, end = self.low, self.high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = self._number(first, whole), self._number(last, whole)
            if start > end:
                raise self.error(whole, f"range {span!r} runs backwards")
        else:
            start = self._number(span, whole)
            end = self.high if step_text else start
        return range(self._check(start, whole), self._check(end, whole) + 1, step)

    def _number(self, text: str, whole: Any) -> int:
        if text.isdigit():
            return int(text)
        if text.isalpha() and text[:3] in self.names:  # "mon", "monday": Celery reads 3 letters
            return self.names.index(text[:3]) + self.name_base
        raise self.error(whole, f"{text!r} is not a number"
                         + (f" or a name ({', '.join(self.names)})" if self.names else ""))

    def _check(self, number: int, whole: Any) -> int:
        if not self.low <= number <= self.high:
            raise self.error(whole, f"{number} is outside {self.low}-{self.high}")
        return number

    def error(self, value: Any, why: str) -> ConfigurationError:
        return ConfigurationError(f"crontab {self.name}: {value!r}: {why}")


MINUTE = Field("minute", 0, 59)
HOUR = Field("hour", 0, 23)
DAY_OF_WEEK = Field("day_of_week", 0, 7, DAY_NAMES)
DAY_OF_MONTH = Field("day_of_month", 1, 31)
MONTH_OF_YEAR = Field("month_of_year", 1, 12, MONTH_NAMES, name_base=1)


class crontab:  # noqa: N801 - Celery's spelling, so beat_schedule configs carry over
    """A crontab schedule; the fields default to ``*`` (every value)."""

    def __init__(self, minute: Any = "*", hour: Any = "*", day_of_week: Any = "*",
                 day_of_month: Any = "*", month_of_year: Any = "*") -> None:
        self.fields = {"minute": minute, "hour": hour, "day_of_week": day_of_week,
                       "day_of_month": day_of_month, "month_of_year": month_of_year}
        self.minutes = sorted(MINUTE.parse(minute))
        self.hours = sorted(HOUR.parse(hour))
        self.days_of_week = DAY_OF_WEEK.parse(day_of_week)
        self.days_of_month = DAY_OF_MONTH.parse(day_of_month)
        self.months = MONTH_OF_YEAR.parse(month_of_year)

    @classmethod
    def from_string(cls, text: str) -> crontab:
        """Five cron fields: ``"minute hour day_of_month month_of_year day_of_week"``."""
        parts = str(text).split()
        if len(parts) != 5:
            raise ConfigurationError(
                f"crontab: {text!r}: expected 5 fields (minute hour day_of_month "
                f"month_of_year day_of_week), got {len(parts)}")
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        return cls(minute, hour, day_of_week, day_of_month, month_of_year)

    def to_string(self) -> str:
        """The cron form stored in ``hutch_schedules.crontab``."""
        f = {k: _text(v) for k, v in self.fields.items()}
        return " ".join((f["minute"], f["hour"], f["day_of_month"], f["month_of_year"],
                         f["day_of_week"]))

    # -- evaluation ---------------------------------------------------------------
    def next_after(self, after: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """The first fire time strictly after ``after`` (aware), in UTC; None if never."""
        after = after.astimezone(dt.timezone.utc)
        start = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        for wall in self._walls_from(start):
            instant = resolve_local(wall, zone)
            if instant > after:
                return instant
        return None

    def last_before(self, before: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """The last fire time strictly before ``before`` (aware), in UTC; None if none in
        the searched years."""
        return next(self.fires_before(before, zone), None)

    def fires_before(self, before: dt.datetime, zone: ZoneInfo) -> Iterator[dt.datetime]:
        """The fire times strictly before ``before``, latest first, in UTC (the mirror of
        :meth:`next_after`; ``catch_up="all"`` walks back from now). Fire times resolve to
        instants in the order of their local walls, so walking the walls back yields
        them in order, a DST gap's walls repeating one instant (yielded once); the walk
        starts two hours of wall time late, past any DST shift, since a wall after
        ``before``'s own may resolve earlier (fall back)."""
        before = before.astimezone(dt.timezone.utc)
        start = (before.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
                 + DST_MARGIN)
        last: dt.datetime | None = None
        for wall in self._walls_back_from(start):
            instant = resolve_local(wall, zone)
            if instant < before and instant != last:
                last = instant
                yield instant

    def _walls_back_from(self, start: dt.datetime) -> Iterator[dt.datetime]:
        """Matching local wall-clock times from ``start`` back, latest first."""
        day = start.date()
        for _ in range(SEARCH_YEARS * 366):
            if self._day_matches(day):
                for hour in reversed(self.hours):
                    for minute in reversed(self.minutes):
                        wall = dt.datetime(day.year, day.month, day.day, hour, minute)
                        if wall <= start:
                            yield wall
            day -= dt.timedelta(days=1)

    def _walls_from(self, start: dt.datetime) -> Iterator[dt.datetime]:
        """Matching local wall-clock times from ``start`` on, in order."""
        day = start.date()
        for _ in range(SEARCH_YEARS * 366):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = dt.datetime(day.year, day.month, day.day, hour, minute)
                        if wall >= start:
                            yield wall
            day += dt.timedelta(days=1)

    def _day_matches(self, day: dt.date) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python counts from Monday = 0
        return (day.month in self.months and day.day in self.days_of_month
                and weekday in self.days_of_week)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other.to_string() == self.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())

    def __repr__(self) -> str:
        return f"<crontab: {self.to_string()}>"


def resolve_local(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of local time ``wall`` (naive) in ``zone``.

    A time that happens twice (DST ends) is its first occurrence; a time that never
    happens (DST starts) is the moment the clocks jump, the first valid one after it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.timezone.utc)
    if _wall_of(first, zone) == wall:
        return first
    # In a gap, fold=1 reads the time with the offset after the jump: an instant just
    # before the jump. Search between the two readings for the jump itself.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(dt.timezone.utc)
    low, high = min(low, first), max(low, first)
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if _wall_of(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _wall_of(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.replace(" ", "").lower()
    if isinstance(value, int):
        return str(value)
    return ",".join(str(v) for v in sorted(value))
