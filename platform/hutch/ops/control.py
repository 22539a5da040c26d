"""``app.control``: commands for every running worker, as Celery's ``app.control``.

The CLI (``hutch control revoke``) and the dashboard use it. The mechanics of a
revocation (stored, then broadcast) are the client's,
:func:`hutch.client.revocation.revoke`, which result handles use too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..client import revocation

if TYPE_CHECKING:
    from ..client.sync import Client


class Control:
    """Celery's ``app.control`` for what hutch supports: ``revoke``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str | int | None = None) -> list[str]:
        """Make sure these tasks never run, and with ``terminate`` stop them if running;
        the ids marked REVOKED at once (see :func:`hutch.client.revocation.revoke`)."""
        return revocation.revoke(self.client, task_id, terminate, signal)
