"""``app.control``: commands for every running worker, as Celery's ``app.control``.

The CLI (``hutch control revoke``, ``hutch inspect``) and the dashboard use it;
the requests that collect replies are hutch.ops.inspect's. The mechanics of a
revocation (stored, then broadcast) are the client's,
:func:`hutch.client.revocation.revoke`, which result handles use too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..client import revocation
from .inspect import Inspect

if TYPE_CHECKING:
    from ..client.sync import Client


class Control:
    """Celery's ``app.control`` for what hutch supports: ``revoke``, ``inspect``, ``ping``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str | int | None = None) -> list[str]:
        """Make sure these tasks never run, and with ``terminate`` stop them if running;
        the ids marked REVOKED at once (see :func:`hutch.client.revocation.revoke`)."""
        return revocation.revoke(self.client, task_id, terminate, signal)

    def inspect(self, destination: Sequence[str] | None = None,
                timeout: float = 1.0) -> Inspect:
        """Ask the running workers (all, or those named in ``destination``) what they
        are and do: ``.ping()``, ``.stats()``, ``.active()``, ``.registered()``."""
        return Inspect(self.client.broker, destination, timeout)

    def ping(self, destination: Sequence[str] | None = None,
             timeout: float = 1.0) -> list[dict[str, Any]]:
        """Celery's ``app.control.ping()``: ``[{hostname: {"ok": "pong"}}, ...]``, one
        entry per worker that answered."""
        replies = self.inspect(destination, timeout).ping() or {}
        return [{hostname: reply} for hostname, reply in replies.items()]
