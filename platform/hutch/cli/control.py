"""``hutch control ...``: commands for every running worker, by Celery's names and
arguments (``hutch control rate_limit tests.add 10/m``); registered on the main
group by hutch.cli.main.

``revoke`` stores and broadcasts revocations (hutch.client.revocation) and prints
the answers of the workers running (``revoke_by_stamped_headers`` stores and
broadcasts, without answers); the others change running workers
(hutch.ops.control) and print each worker's reply. Those exit 0 when at least one
worker answered and none refused, 1 when nobody answered within the timeout or a
worker refused; revoke exits 0 once stored. Every command exits 2 when the broker
cannot be reached. docs/ops.md, "Steering workers", has examples.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from .inspect import EXIT_NO_REPLY, _destinations


@click.group()
def control() -> None:
    """Commands for every running worker."""


def _asking(fn: Callable[..., None]) -> Callable[..., None]:
    """The options every steering command takes."""
    for option in reversed([
            click.option("--destination", "-d", multiple=True, callback=_destinations,
                         help="Only this worker (name@host); repeat or separate with commas."),
            click.option("--timeout", "-t", type=float, default=1.0, show_default=True,
                         help="Seconds to wait for the replies."),
            click.option("--json", "as_json", is_flag=True,
                         help="Print the replies as one JSON object {hostname: reply}.")]):
        fn = option(fn)
    return click.pass_obj(fn)


@control.command("revoke")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True,
              help="Also stop the task if it is running (prefork and asyncio pools).")
@click.option("--signal", "signal_name", default="SIGTERM", show_default=True,
              help="Signal for --terminate on the prefork pool (name or number).")
@_asking
def control_revoke(obj: Any, task_ids: tuple[str, ...], terminate: bool, signal_name: str,
                   destination: list[str] | None, timeout: float, as_json: bool) -> None:
    """Revoke TASK_IDS: no worker will run them, now or after a restart. Every worker
    is told; the answers of those running (or of -d ones) are printed. Exit 0 even
    when none answers: the revocation is stored, and workers started later honour it."""
    sig: str | int = int(signal_name) if signal_name.isdigit() else signal_name
    marked, answers = obj.app.control.revoke_asking(list(task_ids), terminate, sig,
                                                    destination, timeout)
    replies = _printed(answers, as_json)
    click.echo(f"revoked {len(task_ids)} task(s); {len(marked)} not started yet are now "
               f"REVOKED{' (running ones are being terminated)' if terminate else ''}; "
               f"{len(replies)} worker{'' if len(replies) == 1 else 's'} answered", err=True)


@control.command("revoke_by_stamped_headers")
@click.argument("stamps", nargs=-1, required=True)
@click.option("--terminate", is_flag=True,
              help="Also stop the stamped tasks running (prefork and asyncio pools).")
@click.option("--signal", "signal_name", default="SIGTERM", show_default=True,
              help="Signal for --terminate on the prefork pool (name or number).")
@click.pass_obj
def control_revoke_by_stamps(obj: Any, stamps: tuple[str, ...], terminate: bool,
                             signal_name: str) -> None:
    """Revoke every task stamped NAME=VALUE (repeat for more values; a VALUE that reads
    as JSON is that value, 7 or true, else text): no worker runs one, now or after a
    restart. Exit 0 once stored and broadcast."""
    headers: dict[str, list[Any]] = {}
    for item in stamps:
        name, equals, text = item.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="STAMPS")
        headers.setdefault(name, []).append(_stamp_value(text))
    sig: str | int = int(signal_name) if signal_name.isdigit() else signal_name
    obj.app.control.revoke_by_stamped_headers(headers, terminate, sig)
    click.echo(f"revoked tasks stamped {json.dumps(headers)}"
               f"{' (running ones are being terminated)' if terminate else ''}", err=True)


def _stamp_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _steer(obj: Any, command: str, arguments: dict[str, Any] | None,
           destination: list[str] | None, timeout: float, as_json: bool) -> None:
    """Send ``command``, print every worker's reply, exit 1 if none came or one refused."""
    answers = obj.app.control.broadcast(command, arguments, destination, reply=True,
                                        timeout=timeout) or []
    replies = _printed(answers, as_json)
    refused = [h for h, r in replies.items() if isinstance(r, dict) and "error" in r]
    count = len(replies)
    click.echo(f"{count} worker{'' if count == 1 else 's'} answered"
               f"{f', {len(refused)} refused' if refused else ''}", err=True)
    if not replies or refused:
        sys.exit(EXIT_NO_REPLY)


def _printed(answers: list[dict[str, Any]], as_json: bool) -> dict[str, Any]:
    """Print Celery's ``[{hostname: reply}, ...]`` as ``{hostname: reply}`` JSON or a line
    a worker; returns that mapping."""
    replies = {hostname: reply for answer in answers for hostname, reply in answer.items()}
    if as_json:
        click.echo(json.dumps(replies, indent=2, sort_keys=True, default=str))
    else:
        for hostname, reply in replies.items():
            click.echo(f"{hostname}: {_readable(reply)}")
    return replies


def _readable(reply: Any) -> str:
    if isinstance(reply, dict) and "error" in reply:
        return f"ERROR {reply['error']}"
    if isinstance(reply, dict) and "ok" in reply:
        return f"OK {reply['ok']}"
    return json.dumps(reply, default=str)


@control.command("rate_limit")
@click.argument("task_name")
@click.argument("rate_limit")
@_asking
def rate_limit(obj: Any, task_name: str, rate_limit: str, **asking: Any) -> None:
    """Set TASK_NAME's RATE_LIMIT (10/s, 10/m, 10/h, or 0 for none) in every worker
    process; a prefork child takes 1/N of it."""
    _steer(obj, "rate_limit", {"task_name": task_name, "rate_limit": rate_limit}, **asking)


@control.command("time_limit")
@click.argument("task_name")
@click.argument("soft", type=float)
@click.argument("hard", type=float, required=False)
@_asking
def time_limit(obj: Any, task_name: str, soft: float, hard: float | None,
               **asking: Any) -> None:
    """Set TASK_NAME's SOFT [and HARD] time limits, in seconds, for the tasks the
    workers start from now on (they replace the limits the messages carry)."""
    _steer(obj, "time_limit", {"task_name": task_name, "soft": soft, "hard": hard}, **asking)


@control.command("add_consumer")
@click.argument("queue")
@_asking
def add_consumer(obj: Any, queue: str, **asking: Any) -> None:
    """Declare QUEUE and consume it too."""
    _steer(obj, "add_consumer", {"queue": queue}, **asking)


@control.command("cancel_consumer")
@click.argument("queue")
@_asking
def cancel_consumer(obj: Any, queue: str, **asking: Any) -> None:
    """Stop consuming QUEUE: its tasks wait in RabbitMQ; running ones finish."""
    _steer(obj, "cancel_consumer", {"queue": queue}, **asking)


@control.command("enable_events")
@_asking
def enable_events(obj: Any, **asking: Any) -> None:
    """Make the workers send task events (hutch events)."""
    _steer(obj, "enable_events", None, **asking)


@control.command("disable_events")
@_asking
def disable_events(obj: Any, **asking: Any) -> None:
    """Make the workers stop sending task events."""
    _steer(obj, "disable_events", None, **asking)


@control.command("shutdown")
@_asking
def shutdown(obj: Any, **asking: Any) -> None:
    """Warm-stop the workers: running tasks finish first."""
    _steer(obj, "shutdown", None, **asking)


@control.command("pool_grow")
@click.argument("n", type=click.IntRange(min=1), default=1)
@_asking
def pool_grow(obj: Any, n: int, **asking: Any) -> None:
    """Add N processes to each worker's pool (default 1)."""
    _steer(obj, "pool_grow", {"n": n}, **asking)


@control.command("pool_shrink")
@click.argument("n", type=click.IntRange(min=1), default=1)
@_asking
def pool_shrink(obj: Any, n: int, **asking: Any) -> None:
    """Remove N processes from each worker's pool (default 1)."""
    _steer(obj, "pool_shrink", {"n": n}, **asking)


@control.command("autoscale")
@click.argument("max_", metavar="MAX", type=click.IntRange(min=1))
@click.argument("min_", metavar="MIN", type=click.IntRange(min=0))
@_asking
def autoscale(obj: Any, max_: int, min_: int, **asking: Any) -> None:
    """Let each worker's pool range between MIN and MAX processes."""
    if min_ > max_:
        raise click.UsageError("MIN must not be above MAX")
    _steer(obj, "autoscale", {"max": max_, "min": min_}, **asking)


@control.command("heartbeat")
@_asking
def heartbeat(obj: Any, **asking: Any) -> None:
    """Make the workers write their heartbeat now."""
    _steer(obj, "heartbeat", None, **asking)
