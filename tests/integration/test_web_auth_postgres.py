"""hutch web's bearer tokens on the real PostgreSQL: ``hutch web token`` writes
``hutch_web_tokens`` (the SHA-256 only), the dashboard accepts the token until it is
revoked, and migration 0008 adds and removes the table. Everything else about auth:
tests/unit/test_web_auth.py (SQLite)."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from hutch import Hutch
from hutch.cli.main import main
from hutch.results import migrate
from hutch.results.models import make_engine
from hutch.web.app import create_app

pytestmark = pytest.mark.postgres


def _hutch(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _rows(url: str) -> list[dict[str, object]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(
                "SELECT name, token_hash, role FROM hutch_web_tokens")).mappings()]
    finally:
        engine.dispose()


def test_a_token_is_stored_hashed_accepted_and_refused_once_revoked(fresh_postgres_url, capsys):
    db = ("-b", "memory://", "--backend", fresh_postgres_url)
    code, out, err = _hutch(capsys, *db, "web", "token", "create", "deploy-bot", "--role", "admin")
    assert code == 0, err
    token = out.strip()
    assert _rows(fresh_postgres_url) == [{"name": "deploy-bot", "role": "admin",
                                          "token_hash": hashlib.sha256(token.encode()).hexdigest()}]
    app = Hutch("web-auth", broker="memory://", backend=fresh_postgres_url, web_tokens=True)
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        with TestClient(create_app(app)) as http:
            assert http.get("/api/v1/auth/me", headers=bearer).json()["user"] == "token:deploy-bot"
            assert http.post("/api/v1/auth/check", headers=bearer).status_code == 200
            assert _hutch(capsys, *db, "web", "token", "revoke", "deploy-bot")[0] == 0
            assert http.get("/api/v1/auth/me", headers=bearer).status_code == 401
    finally:
        app.close()
    assert _rows(fresh_postgres_url) == []


def test_migration_0008_adds_the_tokens_table_and_goes_back(empty_postgres_url):
    url = empty_postgres_url
    migrate.upgrade(url, "0008")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            indexes = sa.inspect(conn).get_indexes("hutch_web_tokens")
        assert [(ix["name"], ix["unique"]) for ix in indexes] == [
            ("ux_hutch_web_tokens_token_hash", True)]
        migrate.downgrade(url, "0007")
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("hutch_web_tokens")
            assert sa.inspect(conn).has_table("hutch_workers")
    finally:
        engine.dispose()
