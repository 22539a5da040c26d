"""Next-run computation with an injected clock: no sleeping, no database."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from hutch.errors import ConfigurationError
from hutch.schedules.cron import crontab, resolve_local
from hutch.schedules.entry import build, from_config
from hutch.schedules.triggers import parse_at, parse_every

UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def fires(spec: crontab, after: dt.datetime, zone: str = "UTC", count: int = 5) -> list:
    out, at = [], after
    for _ in range(count):
        at = spec.next_after(at, ZoneInfo(zone))
        out.append(at)
    return out


# -- crontab fields -------------------------------------------------------------------

def test_every_fifteen_minutes():
    assert fires(crontab(minute="*/15"), utc(2030, 1, 1, 10, 7), count=3) == [
        utc(2030, 1, 1, 10, 15), utc(2030, 1, 1, 10, 30), utc(2030, 1, 1, 10, 45)]


def test_strictly_after_a_fire_time():
    assert crontab(minute=0).next_after(utc(2030, 1, 1, 10, 0), UTC) == utc(2030, 1, 1, 11, 0)


def test_ranges_lists_and_steps():
    spec = crontab(minute="0,30", hour="9-17/4")
    assert [f.hour for f in fires(spec, utc(2030, 1, 1), count=6)] == [9, 9, 13, 13, 17, 17]


def test_mon_fri_and_day_names():
    # 2030-01-05 is a Saturday
    days = [f.date() for f in fires(crontab(minute=0, hour=8, day_of_week="mon-fri"),
                                    utc(2030, 1, 5), count=3)]
    assert [d.isoformat() for d in days] == ["2030-01-07", "2030-01-08", "2030-01-09"]
    assert crontab(day_of_week="sunday").days_of_week == {0}
    assert crontab(day_of_week=7).days_of_week == {0}
    assert crontab(day_of_week="sat,sun").days_of_week == {0, 6}


def test_celery_monday_morning():
    spec = crontab(hour=7, minute=30, day_of_week=1)
    assert spec.next_after(utc(2030, 1, 1), UTC) == utc(2030, 1, 7, 7, 30)  # a Monday


def test_day_of_month_and_month_both_apply():
    spec = crontab(minute=0, hour=0, day_of_month="1", month_of_year="jan,jul")
    assert fires(spec, utc(2030, 2, 1), count=2) == [utc(2030, 7, 1), utc(2031, 1, 1)]
    # Celery ANDs day_of_month and day_of_week: the 13th only when it is a Friday
    friday13 = crontab(minute=0, hour=0, day_of_month=13, day_of_week="fri")
    assert friday13.next_after(utc(2030, 1, 1), UTC) == utc(2030, 9, 13)


def test_impossible_date_never_fires():
    assert crontab(minute=0, hour=0, day_of_month=30, month_of_year=2).next_after(
        utc(2030, 1, 1), UTC) is None


def test_from_string_is_cron_order():
    spec = crontab.from_string("30 7 * * 1")
    assert spec == crontab(minute=30, hour=7, day_of_week=1)
    assert spec.to_string() == "30 7 * * 1"


@pytest.mark.parametrize("kwargs, field", [
    ({"minute": "61"}, "minute"), ({"hour": "*/0"}, "hour"), ({"day_of_week": "funday"},
                                                                "day_of_week"),
    ({"day_of_month": "0"}, "day_of_month"), ({"month_of_year": "13"}, "month_of_year"),
    ({"minute": "5-1"}, "minute"), ({"minute": ""}, "minute"), ({"hour": True}, "hour"),
])
def test_bad_fields_are_named(kwargs, field):
    with pytest.raises(ConfigurationError, match=f"crontab {field}"):
        crontab(**kwargs)


def test_bad_cron_string():
    with pytest.raises(ConfigurationError, match="expected 5 fields"):
        crontab.from_string("* * *")


# -- time zones and DST --------------------------------------------------------------

def test_shanghai_0730_fires_at_2330_utc():
    spec = crontab(minute=30, hour=7)
    assert spec.next_after(utc(2030, 1, 1, 12), ZoneInfo("Asia/Shanghai")) == utc(2030, 1, 1, 23, 30)


def test_spring_forward_missing_hour_runs_at_first_valid_moment():
    # Europe/Berlin 2030-03-31: 02:00 CET jumps to 03:00 CEST (01:00 UTC)
    spec = crontab(minute=30, hour=2)
    first, second = fires(spec, utc(2030, 3, 30, 12), "Europe/Berlin", count=2)
    assert first == utc(2030, 3, 31, 1, 0)  # 03:00 CEST, just after the gap
    assert first.astimezone(BERLIN).strftime("%H:%M") == "03:00"
    assert second.astimezone(BERLIN).isoformat() == "2030-04-01T02:30:00+02:00"


def test_spring_forward_every_15_minutes_skips_nothing_and_repeats_nothing():
    spec = crontab(minute="*/15")
    walls = [f.astimezone(BERLIN).strftime("%H:%M")
             for f in fires(spec, utc(2030, 3, 31, 0, 40), "Europe/Berlin", count=4)]
    assert walls == ["01:45", "03:00", "03:15", "03:30"]


def test_fall_back_repeated_hour_fires_once():
    # Europe/Berlin 2030-10-27: 03:00 CEST goes back to 02:00 CET
    spec = crontab(minute=30, hour=2)
    first, second = fires(spec, utc(2030, 10, 26, 12), "Europe/Berlin", count=2)
    assert first == utc(2030, 10, 27, 0, 30)  # the first 02:30 (CEST)
    assert second.astimezone(BERLIN).isoformat() == "2030-10-28T02:30:00+01:00"


def test_fall_back_hourly_is_not_doubled():
    spec = crontab(minute=0)
    walls = [f.astimezone(BERLIN).strftime("%H:%M%z")
             for f in fires(spec, utc(2030, 10, 26, 23, 30), "Europe/Berlin", count=4)]
    assert walls == ["02:00+0200", "03:00+0100", "04:00+0100", "05:00+0100"]


def test_resolve_local_plain_time():
    assert resolve_local(dt.datetime(2030, 6, 1, 12), BERLIN) == utc(2030, 6, 1, 10)


# -- schedules: interval, clocked, one-off, start/end --------------------------------

NOW = utc(2030, 1, 1, 12)


def test_interval_first_and_following():
    entry = build("tick", "tasks.add", dt.timedelta(seconds=30))
    assert entry.first_run(NOW) == NOW + dt.timedelta(seconds=30)
    assert entry.run_after(NOW, NOW + dt.timedelta(seconds=1)) == (
        NOW + dt.timedelta(seconds=30), 0)


def test_interval_after_downtime_runs_once_and_keeps_its_rhythm():
    entry = build("tick", "tasks.add", 10)
    after, skipped = entry.run_after(NOW, NOW + dt.timedelta(seconds=95))
    assert (after, skipped) == (NOW + dt.timedelta(seconds=100), 9)


def test_crontab_after_downtime_counts_missed_runs():
    entry = build("q", "tasks.add", crontab(minute="*/15"))
    after, skipped = entry.run_after(NOW, NOW + dt.timedelta(hours=1, minutes=1))
    assert (after, skipped) == (NOW + dt.timedelta(hours=1, minutes=15), 4)


def test_clocked_runs_once_even_when_late():
    at = dt.datetime(2030, 1, 1, 20, 0)  # naive: read in the schedule's zone
    entry = build("once", "tasks.add", at, timezone="Asia/Shanghai")
    assert entry.kind == "clocked" and entry.clocked_at == utc(2030, 1, 1, 12)
    assert entry.first_run(NOW + dt.timedelta(hours=5)) == utc(2030, 1, 1, 12)
    assert entry.run_after(utc(2030, 1, 1, 12), NOW) == (None, 0)
    entry.total_run_count = 1
    assert entry.finished and entry.first_run(NOW) is None


def test_one_off_interval_runs_once():
    entry = build("one", "tasks.add", 60, one_off=True)
    assert entry.first_run(NOW) == NOW + dt.timedelta(seconds=60)
    assert entry.run_after(NOW, NOW) == (None, 0)


def test_start_at_delays_the_first_run():
    start = NOW + dt.timedelta(hours=2)
    assert build("i", "t.a", 60, start_at=start).first_run(NOW) == start
    cron = build("c", "t.a", crontab(minute=0), start_at=start + dt.timedelta(minutes=1))
    assert cron.first_run(NOW) == NOW + dt.timedelta(hours=3)


def test_end_at_stops_runs():
    entry = build("e", "t.a", 60, end_at=NOW + dt.timedelta(seconds=90))
    assert entry.run_after(NOW, NOW) == (NOW + dt.timedelta(seconds=60), 0)
    assert entry.run_after(NOW + dt.timedelta(seconds=60), NOW)[0] is None
    with pytest.raises(ConfigurationError, match="end_at"):
        build("e", "t.a", 60, start_at=NOW, end_at=NOW - dt.timedelta(seconds=1))


# -- catch_up="all": the backlog of missed runs -------------------------------------------

def chain(entry, due, until):
    """Every due time of a crontab from ``due`` to ``until``, walked forward one run at a
    time (the reference the backward walk of ``catch_up="all"`` must agree with)."""
    out = [due]
    while True:
        after = entry.trigger.spec.next_after(out[-1], entry.zone)
        if after is None or after > until:
            return out
        out.append(after)


def test_catch_up_all_plans_every_missed_run_oldest_first():
    entry = build("tick", "tasks.add", 10, catch_up="all")
    entry.next_run_at = NOW + dt.timedelta(seconds=10)
    plan = entry.plan(NOW + dt.timedelta(seconds=95))
    assert plan.backlog.runs == tuple(NOW + dt.timedelta(seconds=s) for s in range(10, 91, 10))
    assert plan.following == NOW + dt.timedelta(seconds=100) and plan.backlog.skipped == 0
    assert [plan.next_after(i) for i in range(2)] == [NOW + dt.timedelta(seconds=20),
                                                      NOW + dt.timedelta(seconds=30)]


def test_catch_up_all_over_its_limit_keeps_the_newest_runs():
    entry = build("tick", "tasks.add", 10, catch_up="all", catch_up_limit=4)
    entry.next_run_at = NOW + dt.timedelta(seconds=10)
    backlog = entry.plan(NOW + dt.timedelta(seconds=95)).backlog
    assert backlog.runs == tuple(NOW + dt.timedelta(seconds=s) for s in (60, 70, 80, 90))
    assert (backlog.skipped, backlog.first_skipped, backlog.last_skipped, backlog.more) == (
        5, NOW + dt.timedelta(seconds=10), NOW + dt.timedelta(seconds=50), False)


def test_catch_up_one_is_the_default_and_sends_one_run():
    entry = build("tick", "tasks.add", 10)
    entry.next_run_at = NOW + dt.timedelta(seconds=10)
    plan = entry.plan(NOW + dt.timedelta(seconds=95))
    assert entry.catch_up == "one" and entry.catch_up_limit == 100
    assert (plan.backlog.runs, plan.following, plan.folded) == (
        (NOW + dt.timedelta(seconds=10),), NOW + dt.timedelta(seconds=100), 8)


def test_catch_up_all_stops_at_end_at_and_ignores_one_off():
    entry = build("e", "tasks.add", 10, catch_up="all", end_at=NOW + dt.timedelta(seconds=35))
    entry.next_run_at = NOW + dt.timedelta(seconds=10)
    plan = entry.plan(NOW + dt.timedelta(seconds=95))
    assert plan.backlog.runs == tuple(NOW + dt.timedelta(seconds=s) for s in (10, 20, 30))
    assert plan.following is None
    once = build("o", "tasks.add", 10, catch_up="all", one_off=True)
    once.next_run_at = NOW
    assert once.plan(NOW + dt.timedelta(seconds=95)).backlog.runs == (NOW,)


@pytest.mark.parametrize("spec, zone, start, hours", [
    ("*/15 * * * *", "Europe/Berlin", utc(2030, 3, 30, 23, 50), 5),   # spring forward
    ("*/15 * * * *", "Europe/Berlin", utc(2030, 10, 26, 23, 50), 5),  # fall back
    ("0 * * * *", "Europe/Berlin", utc(2030, 10, 26, 22), 8),
    ("30 2 * * *", "Europe/Berlin", utc(2030, 3, 25), 24 * 10),
    ("0 9 * * mon-fri", "Asia/Shanghai", utc(2030, 1, 1), 24 * 30),
    ("* * * * *", "UTC", utc(2030, 1, 1), 3),
])
def test_a_crontab_backlog_is_the_forward_walk_whatever_the_limit(spec, zone, start, hours):
    entry = build("c", "tasks.add", crontab.from_string(spec), timezone=zone, catch_up="all")
    due = entry.first_run(start)
    until = start + dt.timedelta(hours=hours)
    walk = chain(entry, due, until)
    assert len(walk) == len(set(walk)) > 3
    assert entry.trigger.backlog(due, until, entry.zone, 100_000).runs == tuple(walk)
    for limit in (1, 2, len(walk) - 1):
        backlog = entry.trigger.backlog(due, until, entry.zone, limit)
        assert backlog.runs == tuple(walk[-limit:])
        assert (backlog.skipped, backlog.first_skipped, backlog.last_skipped) == (
            len(walk) - limit, walk[0], walk[-limit - 1])


def test_a_due_time_set_by_hand_off_the_crontab_is_sent_too():
    entry = build("c", "tasks.add", crontab(minute=0), catch_up="all")
    due = utc(2030, 1, 1, 10, 7)  # UPDATE ... SET next_run_at = now(): not on the hour
    backlog = entry.trigger.backlog(due, utc(2030, 1, 1, 12, 30), entry.zone, 100)
    assert backlog.runs == (due, utc(2030, 1, 1, 11), utc(2030, 1, 1, 12))


def test_a_huge_crontab_backlog_is_walked_back_only_limit_runs():
    entry = build("c", "tasks.add", crontab(minute="*"), catch_up="all", catch_up_limit=3)
    due = utc(2029, 1, 1)
    backlog = entry.trigger.backlog(due, utc(2030, 1, 1, 0, 0, 30), entry.zone, 3)
    assert backlog.runs == (utc(2029, 12, 31, 23, 58), utc(2029, 12, 31, 23, 59),
                            utc(2030, 1, 1))
    assert backlog.more and backlog.skipped == 1000  # counted up to a cap: "1000+"
    assert backlog.last_skipped == utc(2029, 12, 31, 23, 57)


# -- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("call, field", [
    (lambda: build("x", "tasks add", 5), "task"),
    (lambda: build("x", "", 5), "task"),
    (lambda: build("", "t.a", 5), "name"),
    (lambda: build("x", "t.a", 0), "interval"),
    (lambda: build("x", "t.a", "soon"), "schedule"),
    (lambda: build("x", "t.a", 5, timezone="Mars/Olympus"), "timezone"),
    (lambda: build("x", "t.a", 5, args="16"), "args"),
    (lambda: build("x", "t.a", 5, kwargs=[1]), "kwargs"),
    (lambda: build("x", "t.a", 5, kwargs={"a": object()}), "kwargs"),
    (lambda: build("x", "t.a", 5, options={"colour": 1}), "options"),
    (lambda: build("x", "t.a", 5, options={"priority": 300}), "priority"),
    (lambda: build("x", "t.a", 5, catch_up="some"), "catch_up: expected one of one, all"),
    (lambda: build("x", "t.a", 5, catch_up=None), "catch_up:"),
    (lambda: build("x", "t.a", 5, catch_up="all", catch_up_limit=0), "catch_up_limit:"),
    (lambda: build("x", "t.a", 5, catch_up_limit=10_001), "catch_up_limit:"),
    (lambda: build("x", "t.a", 5, catch_up_limit="9"), "catch_up_limit:"),
    (lambda: build("x", "t.a", 5, catch_up_limit=True), "catch_up_limit:"),
    (lambda: from_config("x", {"task": "t.a", "schedule": 5, "catch_up": "every"}, "UTC"),
     r"beat_schedule\['x'\]: catch_up:"),
    (lambda: parse_every("often"), "every"),
    (lambda: parse_every("0s"), "every"),
    (lambda: parse_at("tomorrow", ZoneInfo("UTC")), "at"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(ConfigurationError, match=field):
        call()


def test_parse_every_units():
    assert [parse_every(t) for t in ("30s", "1.5m", "2h", "1d", "45", "250ms")] == [
        30, 90, 7200, 86400, 45, 0.25]


def test_config_entry_in_celery_format():
    entry = from_config("add-every-monday-morning", {
        "task": "tasks.add", "schedule": crontab(hour=7, minute=30, day_of_week=1),
        "args": (16, 16)}, "Asia/Shanghai")
    assert (entry.kind, entry.crontab, entry.args, entry.timezone, entry.source) == (
        "crontab", "30 7 * * 1", [16, 16], "Asia/Shanghai", "config")
    with pytest.raises(ConfigurationError, match=r"beat_schedule\['bad'\]: unknown key"):
        from_config("bad", {"task": "t.a", "schedule": 5, "sched": 1}, "UTC")
