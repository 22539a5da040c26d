"""``hutch workers``: the worker nodes seen through their heartbeats (``hutch_workers``);
registered on the main group by hutch.cli.main.

Prints one line per worker, or with ``--json`` one JSON list (every column, the
effective state in ``state`` and the last written one in ``stored_state``). Exits 0
whatever the workers' states, so scripts read the states from the output; an
unreachable database exits 2 like every other command.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..ops.workers import list_workers, state_counts
from ..results.store import open_store
from ..results.workers import STATES, WorkerRecord
from .table import print_table

COLUMNS = ("HOSTNAME", "STATE", "POOL", "CONC", "QUEUES", "PROCESSED", "OK", "FAILED",
           "RETRIED", "LOAD", "RSS", "SEEN")


@click.command("workers")
@click.option("--state", type=click.Choice(STATES), help="Only workers in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of every column.")
@click.pass_obj
def workers(obj: Any, state: str | None, as_json: bool) -> None:
    """List workers with their state (online, stopping, offline) from their heartbeats."""
    with open_store(obj.app.conf) as store:
        records = list_workers(store, state)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    print_table([COLUMNS, *(_row(r) for r in records)])
    counts = state_counts(records)
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()), err=True)


def _row(r: WorkerRecord) -> tuple[str, ...]:
    load = "-" if r.loadavg_1 is None else f"{r.loadavg_1:.2f}"
    return (r.hostname, r.state, r.pool, str(r.concurrency), ",".join(r.queues),
            str(r.processed), str(r.succeeded), str(r.failed), str(r.retried), load,
            _size(r.rss_bytes), f"{_age(r.last_heartbeat_age)} ago")


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size, unit = float(value), "B"
    for larger in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.0f}B" if unit == "B" else f"{size:.1f}{unit}"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
