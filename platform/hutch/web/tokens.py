"""The bearer tokens of hutch web's API: made, listed, revoked and checked here.

A token is 32 random bytes (``secrets.token_urlsafe``: 256 bits), printed once by
``hutch web token create`` and kept nowhere; ``hutch_web_tokens`` holds its SHA-256.
A fast unsalted hash is right for these, unlike passwords: a password is guessable,
so it needs a slow salted hash (argon2, hutch.web.passwords) to make each guess
costly; a random 256-bit token cannot be guessed at any speed, so one SHA-256 is as
safe, lets the lookup be one indexed equality on the hash, and costs a request
nothing. Revoking deletes the row, so the next request with the token is refused.

Needs only SQLAlchemy (not the ``web`` extra): the ``hutch web token`` commands run
wherever the result database is reachable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, Select, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..config import WEB_ROLES
from ..errors import ConfigurationError
from ..results.models import web_tokens
from ..results.store import ResultStore

TOKEN_BYTES = 32


@dataclass(frozen=True)
class TokenRecord:
    """A token as listed: never its value nor its hash."""

    name: str
    role: str
    created_at: dt.datetime


def token_hash(token: str) -> str:
    """The SHA-256 of ``token`` in hex: what ``hutch_web_tokens.token_hash`` holds."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """``hutch_web_tokens`` on a result store's database (its retry and one-line errors)."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def create(self, name: str, role: str) -> str:
        """A new token called ``name`` with ``role``; the token, to be shown once."""
        if not name or len(name) > 255:
            raise ConfigurationError(f"token name: expected 1 to 255 characters, got {name!r}")
        if role not in WEB_ROLES:
            raise ConfigurationError(f"token role: {role!r} is not one of {', '.join(WEB_ROLES)}")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        row = {"name": name, "token_hash": token_hash(token), "role": role,
               "created_at": dt.datetime.now(dt.timezone.utc)}
        insert = postgresql.insert if self.store.dialect == "postgresql" else sqlite.insert
        statement = insert(web_tokens).values(row).on_conflict_do_nothing(
            index_elements=[web_tokens.c.name])
        added: int = self.store.transaction("create a web token",
                                            lambda c: c.execute(statement).rowcount)
        if not added:
            raise ConfigurationError(f"a token named {name!r} exists already: revoke it "
                                     f"first, or choose another name")
        return token

    def tokens(self) -> list[TokenRecord]:
        """Every token, by name."""
        query = select(web_tokens.c.name, web_tokens.c.role,
                       web_tokens.c.created_at).order_by(web_tokens.c.name)
        return self.store.read_now("read the web tokens", lambda c: [
            TokenRecord(**row) for row in c.execute(query).mappings()])

    def revoke(self, name: str) -> bool:
        """Delete the token called ``name``; whether there was one."""
        statement = delete(web_tokens).where(web_tokens.c.name == name)
        count: int = self.store.transaction("revoke a web token",
                                            lambda c: c.execute(statement).rowcount)
        return count > 0

    def find(self, token: str) -> TokenRecord | None:
        """The token's record when it is valid (exists, not revoked), else None."""
        query = select(web_tokens.c.name, web_tokens.c.role, web_tokens.c.created_at).where(
            web_tokens.c.token_hash == token_hash(token))
        return self.store.read_now("check a web token", lambda c: _first(c, query))


def _first(conn: Connection, query: Select[tuple[str, str, dt.datetime]]) -> TokenRecord | None:
    row = conn.execute(query).mappings().first()
    return TokenRecord(**row) if row is not None else None
