"""``hutch shell``: Celery's ``shell``, a Python prompt with the app, its tasks and the
canvas imported; registered on the main group by hutch.cli.main.

IPython is used when it is installed (``--python`` forces the plain prompt). The
prompt reads stdin, so a script can be piped in: ``echo 'print(add(2, 2))' | hutch
-A proj shell``."""

from __future__ import annotations

import code
import importlib.util
import keyword
from typing import Any

import click

from .. import Signature, chain, chord, group, signature
from ..app import Hutch
from ..errors import ConfigurationError


def namespace(app: Hutch, with_tasks: bool = True) -> dict[str, Any]:
    """``app`` (also as ``celery``), the canvas, and each of the app's own tasks under
    the last part of its name (``proj.tasks.add`` as ``add``) unless two share it or
    it would hide one of the other names; every task stays in ``app.tasks``."""
    names: dict[str, Any] = {"app": app, "celery": app, "chain": chain, "group": group,
                             "chord": chord, "signature": signature, "Signature": Signature}
    if not with_tasks:
        return names
    short: dict[str, list[str]] = {}
    for full in sorted(app.tasks):
        if not full.startswith("hutch."):
            short.setdefault(full.rsplit(".", 1)[-1], []).append(full)
    for name, fulls in short.items():
        if len(fulls) == 1 and name.isidentifier() and not keyword.iskeyword(name) \
                and name not in names:
            names[name] = app.tasks[fulls[0]]
    return names


def _banner(names: dict[str, Any]) -> str:
    return f"hutch shell: {', '.join(sorted(names))}"


@click.command("shell")
@click.option("--python", "plain", is_flag=True, help="Use the plain Python prompt.")
@click.option("-I", "--ipython", "ipython", is_flag=True,
              help="Use IPython (an error if it is not installed).")
@click.option("-T", "--without-tasks", is_flag=True, help="Do not add the tasks' names.")
@click.pass_obj
def shell(obj: Any, plain: bool, ipython: bool, without_tasks: bool) -> None:
    """An interactive Python shell with app, its tasks, chain, group, chord, signature."""
    names = namespace(obj.app, not without_tasks)
    has_ipython = importlib.util.find_spec("IPython") is not None
    if ipython and not has_ipython:
        raise ConfigurationError("-I/--ipython: IPython is not installed (pip install ipython)")
    if (ipython or has_ipython) and not plain:
        from IPython import start_ipython  # noqa: PLC0415 - optional dependency

        start_ipython(argv=["--no-banner"], user_ns=names)
        return
    code.interact(banner=_banner(names), local=names, exitmsg="")
