"""``hutch web``: the dashboard (hutch.web), registered on the main group by hutch.cli.main.

Starlette, uvicorn, Jinja2 and prometheus-client are the ``web`` extra: without them every
other command works, and ``hutch web`` says what to install (one line, exit 2).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import ConfigurationError

WEB_EXTRA = ("starlette", "uvicorn", "jinja2", "prometheus_client")
"""The distributions of ``pip install 'hutch[web]'`` (top-level module names)."""

_missing: str | None = None
try:
    from ..web.server import serve
except ModuleNotFoundError as exc:
    _missing = (exc.name or "").split(".")[0]
    if _missing not in WEB_EXTRA:
        raise


@click.command()
@click.option("--host", help="Address to listen on (default: web_host, 127.0.0.1). Any "
                             "address but loopback is refused until auth is configured.")
@click.option("--port", type=click.IntRange(0, 65535),
              help="TCP port (default: web_port, 5555; 0: any free port).")
@click.option("--url-prefix", metavar="PATH",
              help="Serve everything under PATH (e.g. /hutch), behind a reverse proxy.")
@click.option("-l", "--loglevel", type=click.Choice(
    ["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.pass_obj
def web(obj: Any, host: str | None, port: int | None, url_prefix: str | None,
        loglevel: str | None) -> None:
    """Run the dashboard (docs/dashboard.md): /healthz, /readyz and, for now, a
    placeholder page."""
    if _missing is not None:
        raise ConfigurationError(f"hutch web needs the web extra: pip install 'hutch[web]' "
                                 f"({_missing} is not installed)")
    if loglevel:
        obj.loglevel = loglevel
    obj.long_running = True
    app = obj.app
    for flag, name, value in (("--host", "web_host", host), ("--port", "web_port", port),
                              ("--url-prefix", "web_url_prefix", url_prefix)):
        if value is not None:
            app.conf.set_from(f"flag {flag}", **{name: value})
    try:
        code = serve(app)
    finally:
        app.close()
    sys.exit(code)
