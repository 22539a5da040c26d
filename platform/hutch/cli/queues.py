"""``hutch purge`` and ``hutch list bindings`` (Celery's commands over the app's routes)
and ``hutch queues migrate/policy`` (moving a route to another queue type, leader
placement on a cluster); registered on the main group by hutch.cli.main.

The app's routes are the ones it can send to without naming a queue at call time:
the default queue, every ``task_queues`` entry and every registered task's ``queue``.
Both commands take them from the app (``-A``), so they need no worker and no database.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import click

from ..app import Hutch
from ..brokers.amqp.broker import AmqpBroker
from ..brokers.routes import route_options, topology_for
from ..config import QUEUE_TYPES
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
        waiting = {route: admin.queue_stats(route) for route in routes}
        for route, stats in waiting.items():
            click.echo(f"{route}: its node {stats.node_down} is down, messages unknown"
                       if stats.node_down else f"{route}: {stats.ready} message(s)")
        total = sum(stats.ready for stats in waiting.values())
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


@click.group("queues")
def queues_() -> None:
    """Change the app's RabbitMQ queues: migrate a route to another type, print the
    leader-placement policy for a cluster."""


@queues_.command("migrate")
@click.argument("route")
@click.option("--to", "queue_type", type=click.Choice(QUEUE_TYPES), required=True,
              help="The type the settings give the route (checked).")
@click.option("--force", is_flag=True,
              help="Move waiting messages and dead letters through a holding queue and "
                   "cancel consumers, instead of refusing.")
@click.pass_obj
def queues_migrate(obj: Any, route: str, queue_type: str, force: bool) -> None:
    """Re-declare ROUTE's work and dead-letter queues with the type its settings give
    (RabbitMQ never changes a queue's type in place): refused while messages or
    consumers remain, unless --force (docs/ops.md, "Changing a queue's arguments")."""
    app = obj.app
    chosen_routes(app, route, option="ROUTE")
    configured = route_options(app.conf, route).queue_type
    if configured != queue_type:
        raise ConfigurationError(
            f"the settings give queue {route!r} the type {configured!r}, not {queue_type!r}: "
            f"set task_queues = {{{route!r}: {{'queue_type': {queue_type!r}}}}} (or "
            "task_queue_type) here and for every worker and producer of the route first")
    broker = app.client().broker
    if not isinstance(broker, AmqpBroker):
        raise ConfigurationError("hutch queues migrate: memory:// has no queue types")
    done = broker.migrate_route(route, force=force)
    if not done.changed:
        click.echo(f"{route}: already {queue_type}; nothing to do")
        return
    click.echo(f"{route}: now {queue_type}; moved {done.moved} message(s) and "
               f"{done.dead_moved} dead letter(s) back in, cancelled {done.consumers} "
               "consumer(s)")


@queues_.command("policy")
@click.pass_obj
def queues_policy(obj: Any) -> None:
    """Print the rabbitmqctl command that spreads the quorum queues' leaders over a
    cluster's nodes (otherwise each leader lives on the node that declared it)."""
    prefix = obj.app.conf.topology_prefix
    pattern = "^" + re.escape(prefix + ".")
    click.echo(f"rabbitmqctl set_policy --apply-to queues --priority 0 {prefix}-leaders "
               f"{shlex.quote(pattern)} '{{\"queue-leader-locator\": \"balanced\"}}'")
