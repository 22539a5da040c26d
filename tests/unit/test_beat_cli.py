"""``hutch schedule ...`` in-process (memory:// + SQLite): each refusal is one line naming
the field, exit status 2, no traceback; the happy path prints what it did."""

import datetime as dt
import json
import sqlite3

import pytest

from hutch.beat.store import BeatStore, Lease
from hutch.results.store import ResultStore
from support.cli import run_main


@pytest.fixture
def database(tmp_path):
    return tmp_path / "b.sqlite"


@pytest.fixture
def run(tmp_path, capsys):
    base = ["-b", "memory://", "--backend", f"sqlite:///{tmp_path / 'b.sqlite'}"]

    def invoke(*args):
        return run_main([*base, *args], capsys)

    return invoke


@pytest.mark.parametrize("args, field", [
    (["--task", "tasks add", "--every", "3s"], "task:"),
    (["--task", "tasks.add", "--cron", "61 * * * *"], "crontab minute:"),
    (["--task", "tasks.add", "--cron", "* * *"], "crontab:"),
    (["--task", "tasks.add", "--every", "3s", "--tz", "Mars/Olympus"], "timezone:"),
    (["--task", "tasks.add", "--every", "3s", "--args", "[1,"], "--args: not valid JSON"),
    (["--task", "tasks.add", "--every", "3s", "--kwargs", "[1]"], "--kwargs: expected"),
    (["--task", "tasks.add", "--every", "soon"], "every:"),
    (["--task", "tasks.add", "--at", "tomorrow"], "at:"),
    (["--task", "tasks.add"], "--every, --cron or --at: one is required"),
    (["--task", "tasks.add", "--every", "3s", "--cron", "* * * * *"], "--every and --cron:"),
    (["--task", "tasks.add", "--every", "3s", "--tz", ""], "timezone:"),
    (["--task", "tasks.add", "--every", "3s", "--start-at", "soon"], "--start-at:"),
    (["--task", "tasks.add", "--every", "3s", "--options", "{\"priority\": \"x\"}"],
     "options['priority']"),
    (["--every", "3s"], "--task: required"),
    (["--task", "tasks.add", "--every", "3s", "--options", '{"colour": 1}'], "options:"),
    (["--task", "tasks.add", "--every", "3s", "--catch-up", "some"],
     "catch_up: expected one of one, all, got 'some'"),
    (["--task", "tasks.add", "--every", "3s", "--catch-up", "all", "--catch-up-limit", "x"],
     "--catch-up-limit: expected a whole number, got 'x'"),
    (["--task", "tasks.add", "--every", "3s", "--catch-up", "all", "--catch-up-limit", "0"],
     "catch_up_limit: expected a whole number of runs, 1..10000, got 0"),
])
def test_bad_input_is_refused_in_one_line(run, args, field):
    code, out, err = run("schedule", "add", "x", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and field in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_add_list_edit_show_disable_run_remove(run):
    code, out, _ = run("schedule", "add", "weekly", "--task", "tasks.add", "--cron", "30 7 * * 1",
                       "--tz", "Asia/Shanghai", "--args", "[16, 16]", "--description", "demo")
    assert code == 0 and "cron 30 7 * * 1 (Asia/Shanghai)" in out and "T23:30:00+00:00" in out
    code, out, _ = run("schedule", "list")
    header, row = out.splitlines()
    assert code == 0 and header.split()[:3] == ["NAME", "STATE", "TASK"]
    assert row.split()[:3] == ["weekly", "enabled", "tasks.add"]
    assert run("schedule", "edit", "weekly", "--every", "1h", "--queue", "reports")[0] == 0
    code, out, _ = run("schedule", "show", "weekly")
    shown = json.loads(out)
    assert (shown["kind"], shown["interval_seconds"], shown["options"], shown["args"]) == (
        "interval", 3600.0, {"queue": "reports"}, [16, 16])
    assert run("schedule", "disable", "weekly")[1] == "disabled weekly\n"
    code, out, _ = run("schedule", "run", "weekly")
    assert code == 0 and len(out.strip()) == 36  # the task id
    assert run("schedule", "remove", "weekly")[0] == 0
    code, _, err = run("schedule", "remove", "weekly")
    assert code == 2 and "no schedule named 'weekly'" in err


def test_catch_up_is_set_by_add_and_edit_and_shown_by_list_and_show(run):
    code, out, _ = run("schedule", "add", "billing", "--task", "tasks.add", "--every", "1h",
                       "--catch-up", "all", "--catch-up-limit", "48")
    assert code == 0 and out.rstrip().endswith(", catch-up all (48)")
    assert run("schedule", "add", "tick", "--task", "tasks.add", "--every", "1s")[0] == 0
    code, out, _ = run("schedule", "list")
    header, *rows = out.splitlines()
    assert header.split()[-1] == "CATCH-UP"
    assert [row.split("  ")[0] + " " + row.rstrip()[-8:].strip() for row in rows] == [
        "billing all (48)", "tick one"]
    shown = json.loads(run("schedule", "show", "billing")[1])
    assert (shown["catch_up"], shown["catch_up_limit"]) == ("all", 48)
    code, out, _ = run("schedule", "edit", "billing", "--catch-up", "one")
    assert code == 0 and "catch-up" not in out
    shown = json.loads(run("schedule", "show", "billing")[1])
    assert (shown["catch_up"], shown["catch_up_limit"]) == ("one", 48)  # the limit is kept
    assert run("schedule", "edit", "tick", "--catch-up-limit", "5")[0] == 0
    assert json.loads(run("schedule", "show", "tick")[1])["catch_up_limit"] == 5
    code, _, err = run("schedule", "edit", "tick", "--catch-up", "ALL")
    assert code == 2 and err == "error: catch_up: expected one of one, all, got 'ALL'\n"


def test_list_says_when_there_are_none(run):
    assert run("schedule", "list") == (0, "no schedules (add one with `hutch schedule add`)\n", "")


@pytest.mark.parametrize("args, field", [
    (["weekly", "--cron", "1-70 * * * *"], "crontab minute:"),
    (["weekly", "--tz", "Nowhere/Land"], "timezone:"),
    (["weekly", "--args", "{}"], "--args: expected a JSON list"),
    (["weekly"], "edit: give at least one field"),
    (["nope", "--every", "1s"], "name: no schedule named 'nope'"),
])
def test_bad_edits_are_refused_in_one_line(run, args, field):
    assert run("schedule", "add", "weekly", "--task", "tasks.add", "--every", "1h")[0] == 0
    code, out, err = run("schedule", "edit", *args)
    assert (code, out) == (2, "") and field in err and err.count("\n") == 1
    assert json.loads(run("schedule", "show", "weekly")[1])["interval_seconds"] == 3600.0


def test_default_time_zone_is_the_apps(run, monkeypatch):
    monkeypatch.setenv("HUTCH_TIMEZONE", "Asia/Shanghai")
    code, out, _ = run("schedule", "add", "daily", "--task", "tasks.add", "--cron", "30 7 * * *")
    assert code == 0 and "(Asia/Shanghai)" in out and "T23:30:00+00:00" in out
    shown = json.loads(run("schedule", "show", "daily")[1])
    assert shown["timezone"] == "Asia/Shanghai" and shown["next_run_at"].endswith("T23:30:00+00:00")


def test_list_warns_of_a_row_it_cannot_read_and_lists_the_others(run, database):
    assert run("schedule", "add", "good", "--task", "tasks.add", "--every", "1h")[0] == 0
    assert run("schedule", "add", "bad", "--task", "tasks.add", "--every", "1h")[0] == 0
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE hutch_schedules SET end_at = 'someday' WHERE name = 'bad'")
    code, out, err = run("schedule", "list")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["NAME", "good"]
    assert err == ("warning: schedule 'bad' skipped: a column cannot be read: "
                   "Invalid isoformat string: 'someday'\n")


def test_lease_shows_the_active_beat_and_its_broker_node(run, tmp_path):
    code, out, _ = run("schedule", "lease")
    assert (code, out) == (0, "no beat has held the lease yet\n")
    store = ResultStore(f"sqlite:///{tmp_path / 'b.sqlite'}")
    try:
        now = dt.datetime.now(dt.timezone.utc)
        Lease(BeatStore(store), 30, node=lambda: "rabbit2:5672").acquire("beat@h:1:abc", now)
    finally:
        store.close()
    code, out, _ = run("schedule", "lease")
    assert code == 0 and out.startswith("active: beat@h:1:abc\n")
    assert "  broker node: rabbit2:5672\n" in out
