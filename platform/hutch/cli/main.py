"""The ``hutch`` command line (click). Every error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import atexit
import difflib
import gc
import json
import os
import sys
import tempfile
import traceback
from typing import Any

import click

from .. import __version__, logs, serialization
from ..app import Hutch
from ..benchmarks.run import SCENARIOS, run_bench, scratch_postgres
from ..config import mask_secrets, parse_autoscale
from ..errors import ConfigurationError, HutchError, NotRegistered, SerializationError
from ..ops.deadletters import list_dead, replay
from ..ops.tree import render, workflow_tree
from ..results.records import FAILURE, PENDING, REJECTED, REVOKED, SUCCESS, TaskRecord
from ..worker.runner import run_worker
from ..worker.wiring import Wiring
from .beat import beat, schedule
from .call import call, call_options, json_arg
from .config import config
from .control import control
from .db import db
from .demo import run_demo
from .events import events
from .inspect import inspect, status
from .loader import CONFIG_OPTION, Context
from .queues import list_, purge, queues_
from .shell import shell
from .web import web
from .worker_options import apply_celery_options, celery_worker_options, use_app_option
from .workers import workers

EXIT_TASK_FAILED = 1
"""``submit --wait`` and ``result``: the task ended FAILURE, REVOKED or REJECTED."""
EXIT_ERROR = 2
"""hutch could not do what was asked: bad input, broker or database unavailable."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-A", "--app", "app_spec", metavar="MODULE[:APP]",
              help="Module that defines the app (e.g. proj or proj.tasks:app).")
@click.option("-b", "--broker", help="Broker URL (overrides settings and HUTCH_BROKER_URL).")
@click.option("--backend", help="Result backend URL (overrides HUTCH_BACKEND_URL).")
@click.option("-l", "--loglevel", type=click.Choice(
    ["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]))
@CONFIG_OPTION
@click.version_option(__version__, prog_name="hutch")
@click.pass_context
def cli(ctx: click.Context, app_spec: str | None, broker: str | None, backend: str | None,
        loglevel: str | None, log_format: str | None) -> None:
    """hutch: tasks over RabbitMQ, results in SQL."""
    ctx.obj = Context(app_spec, broker, backend, loglevel, log_format)


def _autoscale_option(_ctx: Any, _param: Any, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return "{},{}".format(*parse_autoscale(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option("-Q", "--queues", help="Comma-separated routes to consume (default: the default queue).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Execution slots.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "asyncio", "solo"]))
@click.option("-n", "--hostname", help="Node name, default hutch@HOST.")
@click.option("-l", "--loglevel", type=click.Choice(
    ["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.option("-S", "--statedb", metavar="FILE",
              help="Keep a local copy of known revocations in this SQLite file.")
@click.option("-B", "--beat", "with_beat", is_flag=True,
              help="Also run a beat (one of possibly several; one is active).")
@click.option("-E", "--events/--without-events", "send_events", default=None,
              help="Send task events (default: worker_send_task_events, on).")
@click.option("--autoscale", metavar="MAX,MIN", callback=_autoscale_option,
              help="Prefork and threads: between MIN and MAX children (threads), "
                   "following the load.")
@celery_worker_options
@click.pass_obj
def worker(obj: Context, queues: str | None, concurrency: int | None, pool: str | None,
           hostname: str | None, loglevel: str | None, statedb: str | None,
           with_beat: bool, send_events: bool | None, autoscale: str | None,
           app_spec: str | None, prefetch_multiplier: int | None, optimization: str | None,
           without_heartbeat: bool, without_mingle: bool, without_gossip: bool,
           max_tasks_per_child: int | None, max_memory_per_child: int | None) -> None:
    """Consume queues and run tasks."""
    if loglevel:
        obj.loglevel = loglevel
    obj.long_running = True
    use_app_option(obj, app_spec)
    app = obj.app
    apply_celery_options(app, prefetch_multiplier, max_tasks_per_child, max_memory_per_child,
                         without_heartbeat=without_heartbeat,
                         without_mingle=without_mingle, without_gossip=without_gossip)
    if statedb:
        app.conf.worker_state_db = statedb
    if send_events is not None:
        app.conf.worker_send_task_events = send_events
    if autoscale:
        app.conf.worker_autoscale = autoscale
    routes = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if queues is not None and not routes:
        raise ConfigurationError("-Q: give at least one queue name")
    sys.exit(run_worker(Wiring(app.conf, app.tasks, app.main), routes, pool, concurrency,
                        hostname, beat=app.client if with_beat else None))


@cli.command()
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option("--args", "args_json", metavar="JSON",
              help="Positional arguments as a JSON list, typed: --args '[5, 5]'.")
@click.option("--kwargs", "kwargs_json", metavar="JSON",
              help="Keyword arguments as a JSON object: --kwargs '{\"a\": 1}'.")
@click.option("--json", "as_json", is_flag=True,
              help="Parse each ARG as JSON (numbers, lists...) instead of as a string.")
@click.option("--queue", help="Route to send to.")
@click.option("--countdown", type=float, help="Seconds to wait before running.")
@click.option("--eta", metavar="ISO", help="Run at this time (ISO 8601; no zone: timezone).")
@click.option("--expires", metavar="S|ISO",
              help="Seconds from now, or an ISO time, after which it must not start.")
@click.option("--serializer", type=click.Choice(["json", "msgpack", "yaml", "pickle"]))
@click.option("--wait", is_flag=True,
              help="Wait for the outcome: print the result as JSON, or exit 1 if the task "
                   "failed or was revoked.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after this.")
@click.pass_obj
def submit(obj: Context, name: str, args: tuple[str, ...], args_json: str | None,
           kwargs_json: str | None, as_json: bool, queue: str | None,
           countdown: float | None, eta: str | None, expires: str | None,
           serializer: str | None, wait: bool, timeout: float | None) -> None:
    """Send task NAME with ARGS and print its id.

    Each ARG is sent as a string ("5" is the string 5); use --json to send each as
    JSON, or --args with a JSON list. With -A, NAME must be one of the app's tasks.
    """
    values = _positional(args, args_json, as_json)
    kwargs = json_arg(kwargs_json, "--kwargs", dict, "a JSON object") if kwargs_json else {}
    options = call_options(queue=queue, countdown=countdown, eta=eta, expires=expires,
                           serializer=serializer)
    app = obj.app
    if obj.app_spec:
        _check_known(app, name, obj.app_spec)
    handle = app.client().submit(name, *values, kwargs=kwargs, **options)
    click.echo(handle.id)
    if wait:
        handle.get(timeout=timeout, propagate=False)
        record = app.client().store.get(handle.id)
        _exit_if_failed(record)
        click.echo(json.dumps(printable(handle.result) if record is not None else None))


@cli.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the task is ready.")
@click.option("--timeout", type=float, default=None)
@click.option("--tree", is_flag=True,
              help="Print the workflow under TASK_ID (a task or group id) as a tree.")
@click.pass_obj
def result(obj: Context, task_id: str, wait: bool, timeout: float | None, tree: bool) -> None:
    """Print a task's state and result as JSON; exit 1 if it is FAILURE, REVOKED or REJECTED."""
    handle = obj.app.AsyncResult(task_id)
    if wait:
        handle.get(timeout=timeout, propagate=False)
    if tree:
        click.echo(render(workflow_tree(obj.app.client().store, task_id)))
        return
    record = obj.app.client().store.get(task_id)
    out: dict[str, Any] = {"id": task_id, "state": record.state if record else PENDING}
    if record is not None:
        out.update(name=record.name, worker=record.worker, retries=record.retries,
                   result=printable(handle.result) if record.state == SUCCESS else None,
                   exception=_exception_text(record),
                   finished_at=record.finished_at.isoformat() if record.finished_at else None)
    click.echo(json.dumps(out, indent=2))
    _exit_if_failed(record)


def _positional(args: tuple[str, ...], args_json: str | None, as_json: bool) -> list[Any]:
    if args_json is not None:
        if args:
            raise ConfigurationError("give the arguments as ARGS or as --args, not both")
        given: list[Any] = json_arg(args_json, "--args", list, "a JSON list")
        return given
    return [json_arg(a, "ARG") for a in args] if as_json else list(args)


def _check_known(app: Hutch, name: str, spec: str) -> None:
    """With -A the app's task names are known: refuse a typo now rather than have the
    message dead-lettered by a worker later."""
    if name in app.tasks:
        return
    close = difflib.get_close_matches(name, [n for n in app.tasks if not n.startswith("hutch.")],
                                      n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise NotRegistered(f"-A {spec} has no task named {name!r}{hint} (without -A any name "
                        f"is sent as given)")


def _exception_text(record: TaskRecord) -> str | None:
    if record.exception_type:
        return f"{record.exception_type}: {record.exception_message}"
    return record.exception_message


def _exit_if_failed(record: TaskRecord | None) -> None:
    """A FAILURE, REVOKED or REJECTED task: one line on stderr with the state, exit 1."""
    if record is not None and record.state in (FAILURE, REVOKED, REJECTED):
        detail = _exception_text(record)
        click.echo(f"task {record.task_id} {record.state}" + (f": {detail}" if detail else ""),
                   err=True)
        sys.exit(EXIT_TASK_FAILED)


def printable(value: Any) -> Any:
    """A result as JSON for the terminal: the tagged form the ``result`` column uses
    (``{"__hutch__": "datetime", "v": "..."}``, docs/dba.md) and, for a value even that
    cannot express, ``{"__hutch__": "python", "type": ..., "repr": ...}`` (for reading:
    nothing decodes it)."""
    try:
        return serialization.to_primitive(value)
    except SerializationError:
        kind = type(value)
        return {serialization.TAG: "python", "type": f"{kind.__module__}.{kind.__qualname__}",
                "repr": repr(value)}


cli.add_command(beat)  # hutch beat, hutch schedule ...: cli/beat.py
cli.add_command(schedule)
cli.add_command(db)  # hutch db ...: cli/db.py
cli.add_command(events)  # hutch events: cli/events.py
cli.add_command(config)  # hutch config show/check: cli/config.py
cli.add_command(workers)  # hutch workers: cli/workers.py
cli.add_command(inspect)  # hutch inspect ..., hutch status: cli/inspect.py
cli.add_command(status)
cli.add_command(control)  # hutch control revoke|rate_limit|add_consumer ...: cli/control.py
cli.add_command(web)  # hutch web (the dashboard): cli/web.py
cli.add_command(call)  # Celery's commands: hutch call (cli/call.py),
cli.add_command(purge)  # hutch purge, hutch list bindings (cli/queues.py),
cli.add_command(list_)
cli.add_command(queues_)  # hutch queues migrate|policy (cli/queues.py)
cli.add_command(shell)  # hutch shell (cli/shell.py)


@cli.group()
def dlq() -> None:
    """Inspect and replay dead letters (each route's P.ROUTE.dead queue)."""


@dlq.command("list")
@click.argument("queue", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.pass_obj
def dlq_list(obj: Context, queue: str | None, limit: int) -> None:
    """List dead letters of QUEUE (default: the default queue), oldest first."""
    route = queue or obj.app.conf.task_default_queue
    for letter in list_dead(obj.app.client(), route, limit):
        click.echo(f"{letter.key or '-'}  {letter.task or '?'}  {letter.reason}")


@dlq.command("show")
@click.argument("task_id")
@click.option("--queue", help="Route whose dead letters to search (default: the default queue).")
@click.pass_obj
def dlq_show(obj: Context, task_id: str, queue: str | None) -> None:
    """Print one dead letter's headers and reason as JSON (TASK_ID: as `dlq list` shows
    it, the dead_id of a refused message that had no usable id)."""
    route = queue or obj.app.conf.task_default_queue
    found = [d for d in list_dead(obj.app.client(), route, 10_000) if d.key == task_id]
    if not found:
        raise ConfigurationError(f"no dead letter with id {task_id!r} in route {route!r}")
    letter = found[0]
    click.echo(json.dumps({"id": letter.key, "task": letter.task, "route": letter.route,
                           "reason": letter.reason, "headers": letter.headers},
                          indent=2, default=str))


@dlq.command("replay")
@click.argument("target", required=False)
@click.option("--all", "replay_all", is_flag=True,
              help="Replay every dead letter of TARGET (a queue; default: the default queue).")
@click.option("--queue", help="With a task id: the route to look in.")
@click.pass_obj
def dlq_replay(obj: Context, target: str | None, replay_all: bool, queue: str | None) -> None:
    """Put dead letters back on their route with the retry count reset: TARGET is a task
    id, or with --all a queue."""
    if replay_all:
        ids = replay(obj.app.client(), target or obj.app.conf.task_default_queue)
    elif target:
        ids = replay(obj.app.client(), queue or obj.app.conf.task_default_queue, target)
        if not ids:
            raise ConfigurationError(f"no dead letter with id {target!r}")
    else:
        raise ConfigurationError("give a task id, or --all [QUEUE]")
    click.echo(f"replayed {len(ids)} message(s)")


@dlq.command("purge")
@click.argument("queue", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def dlq_purge(obj: Context, queue: str | None, yes: bool) -> None:
    """Delete every dead letter of QUEUE (the task rows stay)."""
    route = queue or obj.app.conf.task_default_queue
    if not yes:
        raise ConfigurationError(f"purging {route!r} deletes messages for good: add --yes")
    click.echo(f"purged {obj.app.client().broker.purge_dead(route)} message(s)")


@cli.command()
@click.option("--backend", "demo_backend", default=None,
              help="Result database for the demo (default: a fresh SQLite file).")
def demo(demo_backend: str | None) -> None:
    """Run the seed's walkthrough on memory:// and SQLite, printing each call."""
    run_demo(click.echo, demo_backend)


@cli.command()
@click.option("-n", "--count", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Tasks per scenario.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]),
              default="prefork", show_default=True)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--postgres", "pg_server", default="postgresql://postgres@127.0.0.1:5432/postgres",
              show_default=True, help="Server on which a scratch database is created and dropped.")
@click.option("--sqlite", "use_sqlite", is_flag=True, help="Use a scratch SQLite file instead.")
@click.option("--only", "only", multiple=True, type=click.Choice(SCENARIOS),
              help="Run only this scenario (repeatable); default: all.")
@click.pass_obj
def bench(obj: Context, count: int, pool: str, concurrency: int, pg_server: str,
          use_sqlite: bool, only: tuple[str, ...]) -> None:
    """Measure hutch against raw pika on the same RabbitMQ and print the figures."""
    broker = obj.broker or os.environ.get("HUTCH_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
    logs.configure("WARNING", "console")
    if use_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run_bench(broker, f"sqlite:///{tmp}/bench.sqlite", count, pool, concurrency,
                      click.echo, only or SCENARIOS)
        return
    with scratch_postgres(pg_server) as url:
        run_bench(broker, url, count, pool, concurrency, click.echo, only or SCENARIOS)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turns every error into one line and an exit code."""
    atexit.register(_skip_the_last_collections)
    try:
        cli.main(args=argv, prog_name="hutch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except HutchError as exc:
        click.echo(f"error: {mask_secrets(str(exc))}", err=True)
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # noqa: BLE001 - users get one line; HUTCH_DEBUG=1 shows more
        if os.environ.get("HUTCH_DEBUG"):
            traceback.print_exc()
        click.echo(f"error: unexpected {type(exc).__name__}: {mask_secrets(str(exc))} "
                   f"(set HUTCH_DEBUG=1 for the traceback)", err=True)
        sys.exit(EXIT_ERROR)


def _skip_the_last_collections() -> None:
    """At exit, after hutch has closed what it opened: move every object out of the
    cyclic garbage collector's reach. The interpreter's finalization otherwise runs
    full collections over every module's objects, about 0.2 s of CPU for a worker or
    a CLI command (measured: exit 0.23-0.25 s after the last atexit handler, 0.03-0.04
    s with this). Memory is handed back by the OS either way; objects freed by their
    reference count, and their finalizers, are not affected."""
    gc.freeze()
