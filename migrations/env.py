"""Alembic environment for hutch's tables.

Run through :mod:`hutch.results.migrate` (``hutch db upgrade``), which passes
either an open ``connection`` or a ``url`` in ``config.attributes``; no
``alembic.ini`` is needed. ``--sql`` (offline) mode prints the DDL instead.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from hutch.config import normalize_backend_url
from hutch.results.models import make_engine, metadata

VERSION_TABLE = "hutch_alembic_version"
"""Not ``alembic_version``: the database may be shared with the application's own alembic."""

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass config.attributes['url'] or -x url=...")
    return url


def _include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate looks at hutch's own tables only, never at the application's."""
    if type_ == "table":
        return bool(name and name.startswith("hutch_"))
    return True


def _configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
        compare_type=True,
        **options,
    )


def run_offline() -> None:
    """``--sql`` mode: print the DDL for a DBA to review and apply."""
    url = normalize_backend_url(_url())
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run_on(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
