"""``hutch beat`` and ``hutch schedule ...``: registered on the main group by hutch.cli.main.

The commands receive hutch.cli.main's context object (``obj.app`` loads the app);
every refusal is a ConfigurationError, printed by hutch.cli.main as one line, exit 2.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from ..beat.service import Beat
from ..beat.store import Lease
from ..errors import ConfigurationError
from ..schedules.entry import Schedule
from ..schedules.text import fields_from_text


@click.command()
@click.option("-l", "--loglevel", type=click.Choice(
    ["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.pass_obj
def beat(obj: Any, loglevel: str | None) -> None:
    """Send periodic tasks from the schedules in the database (several may run; one is
    active)."""
    if loglevel:
        obj.loglevel = loglevel
    obj.long_running = True
    app = obj.app
    try:
        code = Beat(app.conf, app.client).run(service=True)
    finally:
        app.close()
    sys.exit(code)


@click.group()
def schedule() -> None:
    """List and edit the beat schedules in the database (applies within seconds)."""


def _definition_options(fn: Any) -> Any:
    """The options ``add`` and ``edit`` share."""
    options = [
        click.option("--task", help="Task name, e.g. tasks.add."),
        click.option("--every", help="Interval: 30s, 5m, 2h, 1d or seconds."),
        click.option("--cron", help='Crontab: "minute hour day_of_month month day_of_week".'),
        click.option("--at", help="Once, at this ISO 8601 datetime (read in --tz if naive)."),
        click.option("--args", "args_json", help="Positional arguments as a JSON list."),
        click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object."),
        click.option("--options", "options_json",
                     help="Call options as a JSON object (queue, priority, expires, headers)."),
        click.option("--queue", help="Route to send to."),
        click.option("--tz", "timezone", help="Time zone, e.g. Europe/Berlin (default: the "
                                              "app's timezone)."),
        click.option("--description", help="Free text."),
        click.option("--one-off/--repeat", "one_off", default=None,
                     help="Run once only (then the schedule disables itself)."),
        click.option("--start-at", help="No run before this ISO 8601 datetime."),
        click.option("--end-at", help="No run after this ISO 8601 datetime."),
        click.option("--catch-up", "catch_up", metavar="one|all",
                     help="After downtime: one run for the missed ones (default), or all "
                          "of them, oldest first, up to --catch-up-limit."),
        click.option("--catch-up-limit", "catch_up_limit", metavar="N",
                     help="catch_up all: at most N missed runs are sent (default 100)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per schedule.")
@click.pass_obj
def schedule_list(obj: Any, as_json: bool) -> None:
    """Every schedule, with its next run."""
    entries, unreadable = obj.app.schedules.store.readable()
    for name, why in unreadable.items():
        click.echo(f"warning: schedule {name!r} skipped: {why}", err=True)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(_public(entry), default=_iso))
        return
    if not entries and not unreadable:
        click.echo("no schedules (add one with `hutch schedule add`)")
        return
    if not entries:
        return
    rows = [(e.name, "enabled" if e.enabled else "disabled", e.task, e.describe(),
             e.next_run_at.isoformat() if e.next_run_at else "-", str(e.total_run_count),
             e.describe_catch_up())
            for e in entries]
    header = ("NAME", "STATE", "TASK", "SCHEDULE", "NEXT RUN (UTC)", "RUNS", "CATCH-UP")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                       strict=True)).rstrip())


@schedule.command("show")
@click.argument("name")
@click.pass_obj
def schedule_show(obj: Any, name: str) -> None:
    """One schedule and its latest runs, as JSON."""
    schedules = obj.app.schedules
    entry = schedules.require(name)
    runs = [{"due_at": r.due_at, "task_id": r.task_id, "sent_at": r.sent_at,
             "manual": r.manual} for r in schedules.store.runs(name, limit=10)]
    click.echo(json.dumps({**_public(entry), "recent_runs": runs}, indent=2, default=_iso))


@schedule.command("add")
@click.argument("name")
@_definition_options
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.pass_obj
def schedule_add(obj: Any, /, name: str, disabled: bool, **given: Any) -> None:
    """Add schedule NAME: --task and one of --every, --cron, --at."""
    fields = fields_from_text(given, obj.app.conf.timezone)
    if "task" not in fields:
        raise ConfigurationError("--task: required")
    if not {"every", "cron", "at"} & set(fields):
        raise ConfigurationError("--every, --cron or --at: one is required")
    entry = obj.app.schedules.add(name, fields.pop("task"), enabled=not disabled, **fields)
    click.echo(f"added {_summary(entry)}")


@schedule.command("edit")
@click.argument("name")
@_definition_options
@click.pass_obj
def schedule_edit(obj: Any, /, name: str, **given: Any) -> None:
    """Change some fields of schedule NAME."""
    fields = fields_from_text(given, obj.app.conf.timezone)
    if not fields:
        raise ConfigurationError("edit: give at least one field to change")
    entry = obj.app.schedules.edit(name, **fields)
    click.echo(f"edited {_summary(entry)}")


def _summary(entry: Schedule) -> str:
    """``tick: every 2s, next run 2030-...``, and ``, catch-up all (100)`` if not one."""
    text = (f"{entry.name}: {entry.describe()}, next run "
            f"{entry.next_run_at.isoformat() if entry.next_run_at else '-'}")
    return text if entry.catch_up == "one" else f"{text}, catch-up {entry.describe_catch_up()}"


def _name_command(verb: str, doc: str, act: Any) -> None:
    """``hutch schedule VERB NAME``: one API call, one line of output."""
    def command(obj: Any, name: str) -> None:
        act(obj.app.schedules, name)
        click.echo(f"{verb}d {name}")
    command.__doc__ = doc
    schedule.command(verb)(click.argument("name")(click.pass_obj(command)))


_name_command("enable", "Enable schedule NAME (its next run is counted from now).",
              lambda s, name: s.enable(name))
_name_command("disable", "Disable schedule NAME (kept, not run).",
              lambda s, name: s.disable(name))
_name_command("remove", "Delete schedule NAME (a beat_schedule entry comes back when beat "
              "restarts).", lambda s, name: s.remove(name))


@schedule.command("run")
@click.argument("name")
@click.pass_obj
def schedule_run(obj: Any, name: str) -> None:
    """Send one run of NAME now, outside its schedule; prints the task id."""
    click.echo(obj.app.schedules.run_now(name).id)


@schedule.command("lease")
@click.pass_obj
def schedule_lease(obj: Any) -> None:
    """Which beat is active: the lease row, with the broker node the beat publishes
    through (on a cluster, the node it depends on)."""
    row = Lease(obj.app.schedules.store, obj.app.conf.beat_lease_seconds).holder()
    if row is None:
        click.echo("no beat has held the lease yet")
        return
    live = row["expires_at"] > dt.datetime.now(dt.timezone.utc)
    click.echo(f"{'active' if live else 'expired'}: {row['holder']}")
    for label, key in (("since", "acquired_at"), ("renewed", "renewed_at"),
                       ("expires", "expires_at")):
        click.echo(f"  {label}: {row[key].isoformat()}")
    click.echo(f"  broker node: {row['broker_node'] or '- (not published yet)'}")


def _iso(value: Any) -> str:
    """JSON for datetimes: ISO 8601, as ``list`` prints them and ``--at`` reads them."""
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _public(entry: Schedule) -> dict[str, Any]:
    return {**entry.to_row(), "schedule": entry.describe()}
