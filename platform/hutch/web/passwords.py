"""Passwords of hutch web's users (``web_users``): argon2id hashes, made and checked here.

argon2id (argon2-cffi, its recommended parameters) is slow and salted on purpose: a
leaked hash costs an attacker that much per guess. So a request is not made to pay
it every time: once a user's password is verified, a keyed BLAKE2 digest of it
(key random per process, never stored) is remembered, and later requests with the
same password are checked against that in microseconds (a wrong password always
pays the full argon2 check: guessing stays slow). Changing a hash in the
settings takes a restart, which forgets what was remembered.

Needs only argon2-cffi (in the ``web`` extra), not Starlette.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash (a PHC string with its own salt) for ``web_users``."""
    return _hasher.hash(password)


class Users:
    """The users of ``web_users`` (name -> ``{"password_hash", "role"}``) and their check."""

    def __init__(self, users: Mapping[str, Mapping[str, Any]]) -> None:
        self.users = {name: (str(spec["password_hash"]), str(spec["role"]))
                      for name, spec in users.items()}
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()
        # what an unknown name is checked against (made only when there are users: it costs)
        self._decoy = hash_password(secrets.token_urlsafe(16)) if self.users else ""

    def __bool__(self) -> bool:
        return bool(self.users)

    def check(self, name: str, password: str) -> str | None:
        """``name``'s role when ``password`` is theirs, else None. Blocking (argon2 takes
        tens of milliseconds the first time): call it from a thread. An unknown name
        costs the same as a wrong password, so timing does not tell names apart."""
        digest = hashlib.blake2b(password.encode(), key=self._key).digest()
        known = self.users.get(name)
        with self._lock:
            remembered = self._verified.get(name)
        if known is not None and remembered is not None \
                and hmac.compare_digest(remembered, digest):
            return known[1]
        if not _verify(known[0] if known else self._decoy, password) or known is None:
            return None
        with self._lock:
            self._verified[name] = digest
        return known[1]


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
