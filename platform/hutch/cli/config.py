"""``hutch config show`` and ``hutch config check``: the effective settings and where each
came from, and a check of the file and the environment an operator can run before a
(re)start, e.g. as a unit's ``ExecStartPre=``."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from .. import config_file
from ..config import mask_secrets, read_config_file, read_environment
from ..errors import HutchError
from .loader import CONFIG_OPTION

if TYPE_CHECKING:
    from .loader import Context

EXIT_PROBLEMS = 1
"""``config check`` found at least one invalid setting."""


@click.group("config")
def config() -> None:
    """Show and check the settings (file, HUTCH_* variables, app, flags)."""


@config.command("show")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_obj
def show(obj: Context, as_json: bool) -> None:
    """Print every effective setting, where its value came from, and the value with
    passwords masked (with -A, as the app's code leaves it)."""
    conf = obj.app.conf
    settings = {name: {"value": value, "source": conf.source_of(name)}
                for name, value in conf.masked().items()}
    if as_json:
        click.echo(json.dumps({"file": file_status(), "settings": settings}, indent=2,
                              default=str))
        return
    click.echo(f"# {file_line()}")
    name_width = max(map(len, settings))
    source_width = max(len(s["source"]) for s in settings.values())
    for name, shown in settings.items():
        click.echo(f"{name:<{name_width}}  {shown['source']:<{source_width}}  "
                   f"{as_text(shown['value'])}".rstrip())


@config.command("check")
@CONFIG_OPTION
@click.pass_obj
def check(obj: Context) -> None:
    """Validate the config file and the HUTCH_* variables (and, with -A, the app and
    the flags): print each problem naming its setting and exit 1, or print OK."""
    file_values, problems = read_config_file()
    env_values, env_problems = read_environment()
    problems += env_problems
    if not problems:  # else the app would only repeat the first of them
        try:
            _ = obj.app  # loading it checks the app's code and the flags
        except HutchError as exc:
            problems.append(str(exc))
    for problem in problems:
        click.echo(f"error: {mask_secrets(problem)}", err=True)
    if problems:
        sys.exit(EXIT_PROBLEMS)
    status = file_status()
    checked = [f"file {status['path']} ({len(file_values)} settings)" if status["read"]
               else f"no file at {status['path']}",
               f"environment ({len(env_values)} HUTCH_* variables)"]
    if obj.app_spec:
        checked.append(f"app {obj.app_spec}")
    click.echo(f"config OK: {', '.join(checked)}")


def file_status() -> dict[str, Any]:
    """Which file the settings are read from and whether it was there to read."""
    path, required = config_file.locate()
    return {"path": path, "required": required, "read": os.path.exists(path)}


def file_line() -> str:
    status = file_status()
    if status["read"]:
        return f"settings file: {status['path']}"
    return f"settings file: {status['path']} (absent: defaults, environment and code only)"


def as_text(value: Any) -> str:
    """A value as an operator writes it: strings bare, ``none``, ``true``, JSON else."""
    if isinstance(value, str):
        return value
    if value is None:
        return "none"
    return json.dumps(value, default=str)

