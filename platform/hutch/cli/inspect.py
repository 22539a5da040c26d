"""``hutch inspect ping|stats|active|registered|...`` and ``hutch status``: ask the running
workers over the control broadcast (hutch.ops.inspect); registered on the main
group by hutch.cli.main.

Both exit 0 when at least one worker answered and 1 when none did, so a health
check can run them; an unreachable broker or database exits 2 like every other
command. docs/ops.md, "Inspecting workers", has examples.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from ..ops.inspect import OK, Inspect, Replies, worker_status
from ..ops.workers import list_workers
from ..results.store import open_store
from .config import as_text

EXIT_NO_REPLY = 1
"""No worker answered within the timeout."""

COMMANDS = ("ping", "stats", "active", "registered", "active_queues", "query_task",
            "reserved", "scheduled", "revoked", "conf", "report")

NOT_HELD = "0 held (etas wait in RabbitMQ's delay ladder, not in workers)"
"""What ``hutch inspect scheduled`` says of each worker."""


def _destinations(_ctx: Any, _param: Any, values: tuple[str, ...]) -> list[str] | None:
    """``-d a@h -d b@h`` or ``-d a@h,b@h``."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


@click.command("inspect")
@click.argument("command", type=click.Choice(COMMANDS))
@click.argument("task_ids", nargs=-1)
@click.option("--destination", "-d", multiple=True, callback=_destinations,
              help="Ask only this worker (name@host); repeat or separate with commas.")
@click.option("--timeout", "-t", type=float, default=1.0, show_default=True,
              help="Seconds to wait for the replies.")
@click.option("--json", "as_json", is_flag=True, help="Print the replies as one JSON object.")
@click.option("--with-defaults", is_flag=True,
              help="conf: every setting, not only those changed from the defaults.")
@click.pass_obj
def inspect(obj: Any, command: str, task_ids: tuple[str, ...],
            destination: list[str] | None, timeout: float, as_json: bool,
            with_defaults: bool) -> None:
    """Ask the running workers: ping, stats, active (running tasks), registered (task
    names), active_queues (routes consumed), query_task ID... (where those tasks run),
    reserved (received, not started), scheduled (none: etas wait in the delay ladder,
    counted here), revoked (ids refused), conf (settings), report (versions)."""
    if (command == "query_task") != bool(task_ids):
        raise click.UsageError("task ids go with query_task only, and it needs at least one")
    if with_defaults and command != "conf":
        raise click.UsageError("--with-defaults goes with conf only")
    asking = obj.app.control.inspect(destination, timeout)
    replies: Replies | None = (asking.conf(with_defaults) if command == "conf"
                               else getattr(asking, command)(*task_ids))
    if as_json:
        click.echo(json.dumps(replies or {}, indent=2, sort_keys=True, default=str))
    else:
        for hostname, reply in (replies or {}).items():
            click.echo("\n".join(_readable(command, hostname, reply)))
    if command == "scheduled":
        click.echo(_ladder_line(asking.delayed()), err=as_json)
    count = len(replies or {})
    click.echo(f"{count} worker{'' if count == 1 else 's'} answered", err=True)
    if not replies:
        sys.exit(EXIT_NO_REPLY)


def _readable(command: str, hostname: str, reply: Any) -> list[str]:
    if isinstance(reply, dict) and "error" in reply:
        return [f"{hostname}: ERROR {reply['error']}"]
    return READABLE[command](hostname, reply)


def _ping(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: OK {reply.get('ok', '') if isinstance(reply, dict) else reply}"]


def _active(hostname: str, reply: Any) -> list[str]:
    lines = [f"{hostname}: {len(reply)} active"]
    for task in reply:
        started = dt.datetime.fromtimestamp(task["time_start"], dt.timezone.utc)
        lines.append(f"  {task['id']} {task['name']} args={task['args']!r} "
                     f"kwargs={task['kwargs']!r} started={started:%Y-%m-%dT%H:%M:%SZ} "
                     f"pid={task['worker_pid']}")
    return lines


def _registered(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: {len(reply)} tasks", *(f"  {name}" for name in reply)]


def _stats(hostname: str, reply: Any) -> list[str]:
    body = json.dumps(reply, indent=2, sort_keys=True, default=str)
    return [f"{hostname}:", *(f"  {line}" for line in body.splitlines())]


def _active_queues(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: {', '.join(q['name'] for q in reply)}"]


def _query_task(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: {len(reply)} found",
            *(f"  {task_id} {state} {task['name']} pid={task['worker_pid']}"
              for task_id, (state, task) in sorted(reply.items()))]


def _reserved(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: {len(reply)} reserved",
            *(f"  {task['id']} {task['name']} args={task['args']!r} "
              f"kwargs={task['kwargs']!r} pid={task['worker_pid']}" for task in reply)]


def _scheduled(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: {NOT_HELD}" if not reply else f"{hostname}: {len(reply)} held"]


def _ladder_line(count: int) -> str:
    return (f"delay ladder: {count} message{'' if count == 1 else 's'} waiting for their eta "
            "(every route's countdowns, retries and rate-limit waits)")


def _revoked(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}: {len(reply)} revoked", *(f"  {task_id}" for task_id in reply)]


def _conf(hostname: str, reply: Any) -> list[str]:
    return [f"{hostname}:", *(f"  {name} = {as_text(value)}" for name, value in reply.items())]


def _report(hostname: str, reply: Any) -> list[str]:
    text = reply.get("ok", "") if isinstance(reply, dict) else str(reply)
    return [f"{hostname}:", *(f"  {line}" for line in text.splitlines())]


READABLE: dict[str, Callable[[str, Any], list[str]]] = {
    "ping": _ping, "stats": _stats, "active": _active, "registered": _registered,
    "active_queues": _active_queues, "query_task": _query_task, "reserved": _reserved,
    "scheduled": _scheduled, "revoked": _revoked, "conf": _conf, "report": _report}


@click.command("status")
@click.option("--timeout", "-t", type=float, default=1.0, show_default=True,
              help="Seconds to wait for the pings.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {hostname: status} as one JSON object.")
@click.pass_obj
def status(obj: Any, timeout: float, as_json: bool) -> None:
    """The workers of the heartbeat table and whether each answers a ping."""
    with open_store(obj.app.conf) as store:
        known = [(r.hostname, r.state) for r in list_workers(store)]
    expected = [hostname for hostname, state in known if state != "offline"]
    pings = Inspect(obj.app.client().broker, timeout=timeout, expected=expected or None)
    lines = worker_status(known, pings.ping())
    if as_json:
        click.echo(json.dumps(dict(lines), indent=2))
    else:
        for hostname, state in lines:
            click.echo(f"{hostname}: {state}")
    answering = sum(1 for _, state in lines if state == OK)
    click.echo(f"{answering} of {len(lines)} workers answered", err=True)
    if not answering:
        sys.exit(EXIT_NO_REPLY)
