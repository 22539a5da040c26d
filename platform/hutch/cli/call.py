"""``hutch call NAME``: Celery's ``call`` (send a task by name, print its id), with
Celery's option names; ``hutch submit`` is the same send with hutch's extras (string
ARGS, ``--wait``). Registered on the main group by hutch.cli.main.

Unlike ``submit -A``, ``call`` sends names the app does not register, as Celery
does: the task may live only in the workers' code."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from ..errors import ConfigurationError


def json_arg(text: str, what: str, kind: type | None = None, expected: str = "") -> Any:
    """``text`` parsed as JSON (of type ``kind``), or a one-line error naming ``what``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what}: not valid JSON ({exc.msg}): {text!r}") from None
    if kind is not None and not isinstance(value, kind):
        raise ConfigurationError(f"{what}: expected {expected}, got {text!r}")
    return value


def _iso_time(what: str, text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"{what}: expected an ISO 8601 time such as "
                                 f"2026-01-31T09:30:00+00:00, got {text!r}") from None


def _expires(text: str) -> float | dt.datetime:
    """Seconds from now, or an ISO time (Celery's ``--expires`` takes either)."""
    try:
        return float(text)
    except ValueError:
        return _iso_time("--expires", text)


def call_options(**given: Any) -> dict[str, Any]:
    """The call options given (None: not given); ``eta`` and ``expires`` parsed from
    their command-line text. ``apply_async`` checks them further (eta vs countdown...)."""
    options = {k: v for k, v in given.items() if v is not None}
    if "eta" in options:
        options["eta"] = _iso_time("--eta", options["eta"])
    if isinstance(options.get("expires"), str):
        options["expires"] = _expires(options["expires"])
    return options


@click.command("call")
@click.argument("name")
@click.option("-a", "--args", "args_json", metavar="JSON", default="[]",
              help="Positional arguments as a JSON list: --args '[2, 2]'.")
@click.option("-k", "--kwargs", "kwargs_json", metavar="JSON", default="{}",
              help="Keyword arguments as a JSON object: --kwargs '{\"a\": 1}'.")
@click.option("--eta", metavar="ISO", help="Run at this time (ISO 8601; no zone: timezone).")
@click.option("--countdown", type=float, help="Run in this many seconds.")
@click.option("--expires", metavar="S|ISO",
              help="Seconds from now, or an ISO time, after which it must not start.")
@click.option("--queue", help="Route to send to (default: the task's, else the default).")
@click.option("--serializer", type=click.Choice(["json", "msgpack", "yaml", "pickle"]))
@click.pass_obj
def call(obj: Any, name: str, args_json: str, kwargs_json: str, eta: str | None,
         countdown: float | None, expires: str | None, queue: str | None,
         serializer: str | None) -> None:
    """Send task NAME and print its id (no need for it to be registered here)."""
    values = json_arg(args_json, "--args", list, "a JSON list")
    kwargs = json_arg(kwargs_json, "--kwargs", dict, "a JSON object")
    options = call_options(eta=eta, countdown=countdown, expires=expires, queue=queue,
                           serializer=serializer)
    click.echo(obj.app.client().submit(name, *values, kwargs=kwargs, **options).id)
