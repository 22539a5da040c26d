"""``hutch web``: the dashboard (hutch.web), registered on the main group by hutch.cli.main.

``hutch web`` serves it; ``hutch web hash-password`` makes a ``web_users`` hash
(the password read from a prompt or stdin, never argv, which other users of the
host can see in ``ps``); ``hutch web token create|list|revoke`` manages the API's
bearer tokens in ``hutch_web_tokens`` (the token is printed once, on stdout).

Starlette, uvicorn, Jinja2, prometheus-client and argon2-cffi are the optional ``web`` extra: without
them every other command works (the token commands too), and ``hutch web`` says
what to install (one line, exit 2).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..config import WEB_ROLES
from ..errors import ConfigurationError
from ..results.store import open_store
from ..web.tokens import TokenStore

WEB_EXTRA = ("starlette", "uvicorn", "jinja2", "prometheus_client", "argon2")
"""The distributions of ``pip install 'hutch[web]'`` (top-level module names)."""

_missing: str | None = None
try:
    from ..web.passwords import hash_password
    from ..web.server import serve
except ModuleNotFoundError as exc:
    _missing = (exc.name or "").split(".")[0]
    if _missing not in WEB_EXTRA:
        raise


@click.group(invoke_without_command=True)
@click.option("--host", help="Address to listen on (default: web_host, 127.0.0.1). Any "
                             "address but loopback is refused unless auth is configured.")
@click.option("--port", type=click.IntRange(0, 65535),
              help="TCP port (default: web_port, 5555; 0: any free port).")
@click.option("--url-prefix", metavar="PATH",
              help="Serve everything under PATH (e.g. /hutch), behind a reverse proxy.")
@click.option("-l", "--loglevel", type=click.Choice(
    ["debug", "info", "warning", "error", "critical"], case_sensitive=False))
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None, url_prefix: str | None,
        loglevel: str | None) -> None:
    """Run the dashboard (docs/dashboard.md), or manage its passwords and tokens."""
    if ctx.invoked_subcommand is not None:
        return
    _need_extra()
    obj = ctx.obj
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


def _need_extra() -> None:
    if _missing is not None:
        raise ConfigurationError(f"hutch web needs the web extra: pip install 'hutch[web]' "
                                 f"({_missing} is not installed)")


@web.command("hash-password")
def web_hash_password() -> None:
    """Print the argon2id hash of a password for web_users (asked for on a terminal,
    else read from the first line of stdin)."""
    _need_extra()
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True,
                                err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigurationError("hash-password: empty password")
    click.echo(hash_password(password))


@web.group("token")
def web_token() -> None:
    """Bearer tokens of the dashboard's API (hutch_web_tokens; used when web_tokens is on)."""


@web_token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(WEB_ROLES), default="read", show_default=True)
@click.pass_obj
def web_token_create(obj: Any, name: str, role: str) -> None:
    """Create the token NAME and print it, once: only its hash is kept."""
    with open_store(obj.app.conf) as store:
        token = TokenStore(store).create(name, role)
    click.echo(token)
    click.echo(f"token {name!r} created with role {role}: it is shown this once; send it as "
               f"'Authorization: Bearer TOKEN'", err=True)
    if not obj.app.conf.web_tokens:
        click.echo("note: web_tokens is off: hutch web accepts tokens once it is true", err=True)


@web_token.command("list")
@click.pass_obj
def web_token_list(obj: Any) -> None:
    """List the tokens: name, role, creation time (never the tokens)."""
    with open_store(obj.app.conf) as store:
        records = TokenStore(store).tokens()
    for record in records:
        click.echo(f"{record.name}\t{record.role}\t{record.created_at.isoformat()}")
    click.echo(f"{len(records)} token(s)", err=True)


@web_token.command("revoke")
@click.argument("name")
@click.pass_obj
def web_token_revoke(obj: Any, name: str) -> None:
    """Revoke the token NAME: the next request with it is refused."""
    with open_store(obj.app.conf) as store:
        if not TokenStore(store).revoke(name):
            raise ConfigurationError(f"no token named {name!r} (hutch web token list)")
    click.echo(f"token {name!r} revoked", err=True)
