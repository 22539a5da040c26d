"""Schema migrations for hutch's tables, driven from Python (``hutch db ...``).

The alembic scripts ship inside the package (``hutch/migrations``), so an
installed hutch can migrate its database with no ``alembic.ini`` and no
checkout. Every failure is a :class:`~hutch.errors.BackendError` whose message
is one line with the URL's password masked, fit for a terminal or a log.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ..config import mask_url
from ..errors import BackendError
from .models import make_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# alembic is imported where a migration runs or the scripts are read, not here: a
# process whose database is at HEAD_REVISION never needs it, and importing it is a
# tenth of a second of every worker start and CLI call.

SCRIPT_LOCATION = Path(__file__).parent.parent / "migrations"
"""``hutch/migrations``, a symlink to the top-level ``migrations/`` in a checkout."""

VERSION_TABLE = "hutch_alembic_version"
"""Must match ``migrations/env.py``."""

HEAD_REVISION = "0015"
"""The newest revision in ``migrations/versions``, so the start-up check is one read
(tests/unit/test_migrate.py holds it to alembic's own head)."""

LOCK_KEY = 0x68757463  # "hutc": the advisory lock id taken while migrating PostgreSQL
ALEMBIC_TURNS = threading.Lock()
"""One alembic command at a time in a process: alembic hands its scripts the migration
under way through module-level proxies (``alembic.context``, ``alembic.op``), so two
threads migrating at once (two stores, each on first use) ran each other's steps on
the wrong database. Taken before any database lock, by every command here."""

T = TypeVar("T")


def upgrade(url: str, revision: str = "head", *, sql: bool = False) -> None:
    """Bring the database at ``url`` up to ``revision`` (default: the newest).

    ``sql=True`` prints the DDL to stdout instead, without connecting, for a DBA
    to review and apply (give ``"from:to"`` as ``revision`` to start past 0).
    """
    from alembic import command

    with _reporting(url, f"upgrade to {revision}"), ALEMBIC_TURNS:
        command.upgrade(alembic_config(url=url), revision, sql=sql)


def downgrade(url: str, revision: str, *, sql: bool = False) -> None:
    """Step the database at ``url`` back to ``revision`` (``base`` drops every hutch table).

    With ``sql=True``, ``revision`` must be a range such as ``"0001:base"``.
    """
    from alembic import command

    with _reporting(url, f"downgrade to {revision}"), ALEMBIC_TURNS:
        command.downgrade(alembic_config(url=url), revision, sql=sql)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` if it was never migrated."""
    with _reporting(url, "reading the schema revision"):
        return _with_connection(url, _current_revision)


def heads() -> list[str]:
    """The newest revision(s) this version of hutch knows."""
    return list(_scripts().get_heads())


def ensure_schema(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to head unless it is there already.

    Used for SQLite on first use, so the embedded default needs no setup step.
    Several worker processes may get here at once: the upgrade runs in one
    transaction under a database-wide lock, and whoever comes second finds the
    schema already at head.
    """
    url = engine.url.render_as_string(hide_password=True)
    with _reporting(url, "upgrading the schema"):
        with engine.connect() as connection:
            if _current_revision(connection) == HEAD_REVISION:
                return
        from alembic import command

        with ALEMBIC_TURNS, engine.connect() as connection, _migration_lock(connection):
            if _current_revision(connection) not in heads():
                command.upgrade(alembic_config(connection=connection), "head")


def schema_problem(connection: Connection) -> str | None:
    """Why this hutch cannot write to the schema behind ``connection``, or None.

    A database at an older revision lacks columns this hutch writes, so a worker
    would fail on its first write; saying so at start is kinder. A revision this
    hutch does not know is a newer one (migrations only add), and is accepted so a
    rolling upgrade can migrate before every worker runs the new code.
    """
    revision = _current_revision(connection)
    if revision == HEAD_REVISION:
        return None
    head = ", ".join(heads())
    if revision is None:
        return f"the schema was never migrated (this hutch needs {head})"
    if revision in heads() or not _is_known(revision):
        return None
    return f"the schema is at {revision}, this hutch needs {head}"


def _is_known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """A transaction that holds off every other migrator until it commits."""
    if connection.dialect.name == "sqlite":
        connection.execution_options(sqlite_begin="BEGIN IMMEDIATE")  # see models.make_engine
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield


def _current_revision(connection: Connection) -> str | None:
    """The revision in the version table (None: no table, or an empty one), read as
    alembic's MigrationContext reads it."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise BackendError(f"{VERSION_TABLE} holds {len(rows)} revisions; hutch's history "
                           "has one head")
    return str(rows[0]) if rows else None


def _with_connection(url: str, work: Callable[[Connection], T]) -> T:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return work(connection)
    finally:
        engine.dispose()


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """An alembic ``Config`` for hutch's scripts, for any ``alembic.command`` function."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["url"] = url
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@contextmanager
def _reporting(url: str, action: str) -> Iterator[None]:
    """Turn database and alembic failures into a one-line BackendError."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, SQLAlchemyError) and not _from_alembic(exc):
            raise
        raise BackendError(f"{mask_url(url)}: {action} failed: {first_line(exc)}") from None


def _from_alembic(exc: Exception) -> bool:
    """An alembic CommandError (only ever raised once alembic is imported)."""
    util = sys.modules.get("alembic.util")
    return util is not None and isinstance(exc, util.CommandError)


def first_line(exc: BaseException) -> str:
    """The DBAPI's own message when there is one, without SQL, parameters or a traceback."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__
