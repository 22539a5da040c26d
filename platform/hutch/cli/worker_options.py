"""Celery's ``worker`` options that ``hutch worker`` takes besides its own, so that
Celery command lines (systemd units, Procfiles) run unchanged; used by hutch.cli.main.

``-A`` after the subcommand names the app as ``hutch -A`` does. The options for
machinery hutch does not have are accepted, and each logs one line saying what hutch
does instead. ``--max-tasks-per-child`` and ``--max-memory-per-child`` set
``worker_max_tasks_per_child`` and ``worker_max_memory_per_child`` (prefork children
are recycled: hutch.worker.recycling)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .. import logs
from ..app import Hutch

log = logs.get_logger("hutch.cli")

INSTEAD = {
    "without_heartbeat": "--without-heartbeat: hutch sends no heartbeat events; the worker "
                         "writes its heartbeat to the hutch_workers table (hutch workers)",
    "without_mingle": "--without-mingle: hutch workers do not mingle; they read revocations "
                      "from the hutch_revoked table at start",
    "without_gossip": "--without-gossip: hutch workers do not gossip; each one's state is in "
                      "the hutch_workers table",
}
"""The one line logged for each accepted no-op flag."""

FAIR_HELP = ("Celery's scheduling optimisation, accepted for compatibility: hutch always "
             "dispatches fairly (each child gets its own prefetch, no task waits behind a "
             "busy child), so 'fair' and 'default' behave the same.")


def celery_worker_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options to a ``worker`` command; they reach it as keyword arguments."""
    options = [
        click.option("-A", "--app", "app_spec", metavar="MODULE[:APP]",
                     help="Module that defines the app (same as hutch -A)."),
        click.option("--prefetch-multiplier", type=click.IntRange(min=1),
                     help="Unacknowledged messages per slot (worker_prefetch_multiplier)."),
        click.option("--max-tasks-per-child", type=click.IntRange(min=1), metavar="N",
                     help="Replace a prefork child after N tasks "
                          "(worker_max_tasks_per_child)."),
        click.option("--max-memory-per-child", type=click.IntRange(min=1), metavar="KIB",
                     help="Replace a prefork child whose resident memory is above KIB "
                          "kibibytes after a task (worker_max_memory_per_child)."),
        click.option("-O", "optimization", type=click.Choice(["fair", "default"]),
                     help=FAIR_HELP),
        *(click.option(f"--{name.replace('_', '-')}", name, is_flag=True,
                       help=f"Accepted (Celery's): {line.split(': ', 1)[1]}.")
          for name, line in INSTEAD.items()),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def use_app_option(obj: Any, app_spec: str | None) -> None:
    """``hutch worker -A proj``: before the app is loaded, as ``hutch -A proj`` would."""
    if app_spec:
        obj.app_spec = app_spec


def apply_celery_options(app: Hutch, prefetch_multiplier: int | None,
                         max_tasks_per_child: int | None = None,
                         max_memory_per_child: int | None = None, **flags: Any) -> None:
    """Set what maps to a setting; log one line for each accepted no-op flag."""
    if prefetch_multiplier is not None:
        app.conf.set_from("flag --prefetch-multiplier",
                          worker_prefetch_multiplier=prefetch_multiplier)
    if max_tasks_per_child is not None:
        app.conf.set_from("flag --max-tasks-per-child",
                          worker_max_tasks_per_child=max_tasks_per_child)
    if max_memory_per_child is not None:
        app.conf.set_from("flag --max-memory-per-child",
                          worker_max_memory_per_child=max_memory_per_child)
    for name, line in INSTEAD.items():
        if flags.get(name):
            log.info(line)
