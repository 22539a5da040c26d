"""Database fixtures: every test gets a database of its own, and it is dropped afterwards.

PostgreSQL databases are cloned from a template migrated once per session, so a
fresh, fully migrated database costs a ``CREATE DATABASE ... TEMPLATE`` (tens of
milliseconds). If the server is down these fixtures fail, loudly: a skipped
test would hide a missing service.

Point them at another server with ``HUTCH_TEST_POSTGRES_URL`` (any database on
it; the role must be allowed to create databases).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hutch.config import normalize_backend_url
from hutch.results.migrate import upgrade

ADMIN_URL = os.environ.get("HUTCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


class PostgresServer:
    """Creates and drops uniquely named databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.engine = sa.create_engine(normalize_backend_url(admin_url), isolation_level="AUTOCOMMIT")

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0]
        pytest.fail(f"PostgreSQL is not reachable at {make_url(self.admin_url)!r}: {reason}\n"
                    f"Start it with: {START_HINT}", pytrace=False)

    def create(self, template: str | None = None) -> str:
        """A new empty (or template-cloned) database; returns its URL."""
        name = f"hutch_test_{uuid.uuid4().hex[:12]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        self._run(f'CREATE DATABASE "{name}"{clause}')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        self._run(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')

    def url_of(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def _run(self, sql: str) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql(sql)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(ADMIN_URL)
    server.check()
    yield server
    server.engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> Iterator[str]:
    """Name of a migrated database nobody connects to, to clone from."""
    url = postgres_server.create()
    try:
        upgrade(url)
        yield make_url(url).database
    finally:
        postgres_server.drop(url)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A migrated database shared by the whole session (``postgresql://...`` URL)."""
    url = postgres_server.create(template=postgres_template)
    yield url
    postgres_server.drop(url)


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A migrated database for this test alone."""
    url = postgres_server.create(template=postgres_template)
    yield url
    postgres_server.drop(url)


@pytest.fixture
def empty_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A database with no tables at all, for this test alone (migration tests)."""
    url = postgres_server.create()
    yield url
    postgres_server.drop(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file for this test alone (not migrated: the store does that on first use)."""
    return f"sqlite:///{tmp_path / 'hutch.sqlite'}"


ON_BOTH = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Each kind of database; the PostgreSQL case carries the ``postgres`` mark."""

POSTGRES_FIXTURES = frozenset({"postgres_server", "postgres_template", "postgres_url",
                               "fresh_postgres_url", "empty_postgres_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reaches the shared PostgreSQL server must carry the ``postgres`` mark
    (``-m "not postgres"`` then leaves out exactly those): refuse to run otherwise."""
    unmarked = [item.nodeid for item in items
                if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("postgres") is None]
    if unmarked:
        raise pytest.UsageError("tests using PostgreSQL without @pytest.mark.postgres:\n  "
                                + "\n  ".join(unmarked))


@pytest.fixture(params=ON_BOTH)
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on its own SQLite file and its own PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture(params=ON_BOTH)
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """An unmigrated database of each kind, for this test alone."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("empty_postgres_url")
