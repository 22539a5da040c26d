"""``hutch purge`` and ``hutch list bindings``: Celery's commands over the app's routes;
registered on the main group by hutch.cli.main.

The app's routes are the ones it can send to without naming a queue at call time:
the default queue, every ``task_queues`` entry and every registered task's ``queue``.
Both commands take them from the app (``-A``), so they need no worker and no database.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..app import Hutch
from ..brokers.routes import topology_for
from ..errors import ConfigurationError
from .table import print_table


def app_routes(app: Hutch) -> dict[str, list[str]]:
    """``{route: [sources]}``, sorted: where each route is named (``default``,
    ``task_queues``, ``task NAME``)."""
    conf = app.conf
    routes: dict[str, list[str]] = {conf.task_default_queue: ["default"]}
    for name in conf.task_queues:
        routes.setdefault(name, []).append("task_queues")
    for task_name in sorted(app.tasks):
        queue = app.tasks[task_name].options.queue
        if queue:
            routes.setdefault(queue, []).append(f"task {task_name}")
    return dict(sorted(routes.items()))


def chosen_routes(app: Hutch, queues: str | None, option: str = "-Q") -> list[str]:
    """The routes ``-Q a,b`` names (each must be one of the app's), or all of them.

    A name the app does not know is refused rather than read as an empty queue:
    RabbitMQ would purge nothing and the typo would go unnoticed."""
    known = app_routes(app)
    if queues is None:
        return list(known)
    named = [q.strip() for q in queues.split(",") if q.strip()]
    if not named:
        raise ConfigurationError(f"{option}: give at least one queue name")
    unknown = [q for q in named if q not in known]
    if unknown:
        raise ConfigurationError(
            f"{option}: the app has no queue named {unknown[0]!r} (its queues: "
            f"{', '.join(known)}; add others to task_queues)")
    return list(dict.fromkeys(named))


@click.command("purge")
@click.option("-Q", "--queues", metavar="Q1,Q2",
              help="Only these of the app's queues (default: all of them).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(obj: Any, queues: str | None, force: bool) -> None:
    """Delete the messages waiting in the app's queues (Celery's purge).

    Messages already delivered to a worker stay with it, dead letters stay (hutch dlq
    purge), and the tasks' rows keep their state."""
    app = obj.app
    routes = chosen_routes(app, queues)
    admin = app.client().broker
    if not force:
        waiting = {route: admin.queue_stats(route).ready for route in routes}
        for route, ready in waiting.items():
            click.echo(f"{route}: {ready} message(s)")
        total = sum(waiting.values())
        click.confirm(f"Delete these {total} message(s) from {len(routes)} queue(s)?",
                      abort=True)
    purged = sum(admin.purge(route) for route in routes)
    click.echo(f"purged {purged} message{'' if purged == 1 else 's'} from {len(routes)} "
               f"queue{'' if len(routes) == 1 else 's'}")


BINDING_COLUMNS = ("QUEUE", "EXCHANGE", "ROUTING_KEY", "DEAD_LETTER_EXCHANGE",
                   "DEAD_LETTER_QUEUE", "FROM")


def bindings(app: Hutch) -> list[dict[str, Any]]:
    """Each route's RabbitMQ names under ``topology_prefix`` (docs/topology.md), named the
    same on memory://, whose routes stand for them."""
    topology = topology_for(app.conf)
    out = []
    for route, sources in app_routes(app).items():
        names = topology.names(route)
        out.append({"route": route, "exchange": names.exchange, "routing_key": route,
                    "queue": names.queue, "dead_letter_exchange": names.dead_letter_exchange,
                    "dead_letter_queue": names.dead_letter_queue, "sources": sources})
    return out


@click.group("list")
def list_() -> None:
    """List what the app declares on the broker (Celery's list)."""


@list_.command("bindings")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of every column.")
@click.pass_obj
def list_bindings(obj: Any, as_json: bool) -> None:
    """Every route of the app: its exchange, routing key, queue and dead-letter pair."""
    found = bindings(obj.app)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    print_table([BINDING_COLUMNS, *((b["queue"], b["exchange"], b["routing_key"],
                                     b["dead_letter_exchange"], b["dead_letter_queue"],
                                     ", ".join(b["sources"])) for b in found)])
