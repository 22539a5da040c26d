"""The start-up schema check without alembic: HEAD_REVISION is alembic's head, the
version table is read as alembic reads it, and a process whose SQLite database is at
head never imports alembic (a tenth of a second of every start). PostgreSQL's
refusals of an old or unmigrated schema: tests/integration/test_worker_database_rabbitmq.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sqlalchemy import text

from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.results.store import ResultStore


def test_head_revision_is_the_newest_migration():
    """Adding a migration means moving HEAD_REVISION to it: this says so."""
    assert migrate.heads() == [migrate.HEAD_REVISION]


def test_the_revision_is_read_as_alembic_wrote_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert migrate.current(url) is None  # no version table
    migrate.upgrade(url, "0012")
    assert migrate.current(url) == "0012"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert migrate.schema_problem(conn) == \
                f"the schema is at 0012, this hutch needs {migrate.HEAD_REVISION}"
        migrate.ensure_schema(engine)  # an older database is brought up to head
        with engine.connect() as conn:
            assert migrate.schema_problem(conn) is None
            conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
            conn.commit()
            assert migrate.schema_problem(conn) is None  # newer: a rolling upgrade
    finally:
        engine.dispose()
    assert migrate.current(url) == "9999"


def test_a_store_at_head_starts_without_importing_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    first = ResultStore(url)
    try:
        assert first.count() == 0  # made the tables: alembic ran here
    finally:
        first.close()
    script = textwrap.dedent(f"""
        import sys
        from hutch.results.store import ResultStore
        store = ResultStore({url!r})
        print(store.count(), "alembic" in sys.modules)
        store.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["0", "False"], out.stderr
