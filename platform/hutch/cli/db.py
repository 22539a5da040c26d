"""``hutch db ...``: the result database's schema; registered on the main group by hutch.cli.main.

Every command first says on stderr which database it acts on (password masked;
a SQLite file by its full path, and whether it is the embedded default because
no backend was configured), so an operator who forgot ``--backend`` sees it at
once. What a command reports (a revision, SQL) goes to stdout, fit for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from ..config import DEFAULT_RESULT_BACKEND, mask_secrets, normalize_backend_url
from ..results import migrate
from ..results.models import is_sqlite_memory


@click.group()
def db() -> None:
    """Manage the result database schema (alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the SQL instead of running it, without connecting (offline). "
                   "For a database already at a revision give a range: 0003:head.")
@click.pass_obj
def db_upgrade(obj: Any, revision: str, as_sql: bool) -> None:
    """Apply migrations up to REVISION (default head)."""
    url = _announce(obj)
    if as_sql:
        if _sqlite_file(url) is not None:
            click.echo("note: SQLite dialect; hutch applies these migrations itself when it "
                       "first opens the file, so this SQL is for review (or for the sqlite3 "
                       "shell)", err=True)
        migrate.upgrade(url, revision, sql=True)
        return
    migrate.upgrade(url, revision)
    click.echo(f"database at {migrate.current(url)}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
def db_downgrade(obj: Any, revision: str) -> None:
    """Revert migrations down to REVISION (``base`` removes every hutch table)."""
    url = _announce(obj)
    migrate.downgrade(url, revision)
    click.echo(f"database at {migrate.current(url) or 'base'}")


@db.command("current")
@click.pass_obj
def db_current(obj: Any) -> None:
    """Print the schema revision the database is at."""
    url = _announce(obj)
    path = _sqlite_file(url)
    if path is not None and not path.exists():  # connecting would create it
        click.echo("base (no hutch tables: the file does not exist)")
        return
    click.echo(migrate.current(url) or "base (no hutch tables)")


def _announce(obj: Any) -> str:
    """Say on stderr which database the command acts on; return its URL."""
    url: str = obj.app.conf.result_backend
    click.echo(f"database: {describe(url)}", err=True)
    return url


def describe(url: str) -> str:
    """``url`` for people: password masked, a SQLite file by its full path, and a
    warning when it is the embedded default (no backend was configured)."""
    path = _sqlite_file(url)
    shown = mask_secrets(url) if path is None else f"sqlite:///{path}"
    if url == DEFAULT_RESULT_BACKEND:
        return (f"{shown} (the embedded default: no result_backend was given by -A, "
                f"--backend or HUTCH_BACKEND_URL)")
    return shown


def _sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite database file; None for other databases and for
    SQLite in memory."""
    parsed = make_url(normalize_backend_url(url))
    if parsed.get_backend_name() != "sqlite" or is_sqlite_memory(url):
        return None
    return Path(str(parsed.database)).absolute()
