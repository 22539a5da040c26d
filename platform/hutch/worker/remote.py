"""A worker process's answers to control requests (``hutch inspect``, ``app.control.inspect()``).

The request arrives on the control broadcast this process subscribes to for
revocations (worker/revocations.py hands over every body that asks for a reply);
the answer goes to the requester's inbox (brokers.base.Replies). Every consuming
process answers for itself, each prefork child too, so a reply says which child
of how many it is and the requester merges them per worker (hutch.ops.inspect).

Each command is a function of the process's :class:`~hutch.worker.node.Node` and
the request's arguments returning Celery's reply for that command, kept in
:data:`COMMANDS`.
Nothing here raises into the subscription thread: a malformed request or an
unknown command gets an error reply and a warning in the log.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import MessageError
from ..logs import get_logger
from ..messages import ControlReply, ControlRequest, RevokeCommand, wants_reply
from . import adjustments, steering
from .node import Command, Node
from .queries import QUERIES
from .revocations import Revocations

if TYPE_CHECKING:
    from ..brokers.base import Replies

log = get_logger("hutch.control")




def revoke(node: Node, arguments: dict[str, Any]) -> Any:
    """A revocation sent with ``reply=True`` (``app.control.revoke``): applied as the
    broadcast one is (worker/revocations.py), then answered with Celery's text."""
    command = RevokeCommand.of_arguments(arguments)
    revocations = node.executor.revoked
    if not isinstance(revocations, Revocations):
        raise ValueError("revoke: this process keeps no revocations")
    revocations.apply(command)
    return {"ok": f"tasks {', '.join(command.ids)} flagged as revoked"}


COMMANDS: dict[str, Command] = {
    **QUERIES, "revoke": revoke, **steering.COMMANDS, **adjustments.COMMANDS}
"""The commands a worker answers, by Celery's names; hutch.ops.inspect merges them:
the inspect queries (worker/queries.py), revoke, the worker-wide commands (shutdown,
pool_grow ...: worker/steering.py) and those that adjust one process (rate_limit,
add_consumer ...: worker/adjustments.py)."""


class Remote:
    """Answers the control requests that reach one worker process."""

    def __init__(self, node: Node, replies: Replies) -> None:
        self.node = node
        self.replies = replies

    def handle(self, body: bytes) -> bool:
        """Answer ``body`` if it asks for a reply (False: not a request, e.g. a
        revocation); never raises."""
        address = wants_reply(body)
        if address is None:
            return False
        reply_to, ticket, destination = address
        if destination is not None and self.node.hostname not in destination:
            return True
        try:
            request = ControlRequest.decode(body)
        except MessageError as exc:
            self._error(reply_to, ticket, str(exc))
            return True
        if request.is_for(self.node.hostname):
            self._answer(request)
        return True

    def _answer(self, request: ControlRequest) -> None:
        command = COMMANDS.get(request.command)
        if command is None:
            self._error(request.reply_to, request.ticket,
                        f"unknown command {request.command!r}")
            return
        self.node.ticket = request.ticket
        try:
            outcome = command(self.node, request.arguments)
        except Exception as exc:  # noqa: BLE001 - the requester hears of it, the worker goes on
            self._error(request.reply_to, request.ticket, f"{type(exc).__name__}: {exc}")
            return
        if request.command in adjustments.COMMANDS and self.node.orders is not None:
            self.node.orders.adjusted(request.command, request.arguments, request.ticket)
        self._send(request.reply_to, ControlReply(
            request.ticket, self.node.hostname, self.node.child, self.node.of, os.getpid(),
            ok=outcome))

    def replay(self, made: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Make again the adjustments made to the process this one replaces (a prefork
        child: its supervisor kept them, worker/steering.py), before it consumes."""
        for command, arguments in made:
            try:
                adjustments.COMMANDS[command](self.node, arguments)
            except Exception as exc:  # noqa: BLE001 - one that no longer applies is skipped
                log.warning("adjustment not made again", command=command,
                            error=f"{type(exc).__name__}: {exc}")
                continue
            log.info("adjustment made again", command=command, arguments=arguments)

    def _error(self, reply_to: str, ticket: str, error: str) -> None:
        log.warning("control request refused", error=error, reply_to=reply_to)
        self._send(reply_to, ControlReply(ticket, self.node.hostname, self.node.child,
                                          self.node.of, os.getpid(), error=error))

    def _send(self, reply_to: str, reply: ControlReply) -> None:
        try:
            self.replies.reply(reply_to, reply.encode())
        except Exception as exc:  # noqa: BLE001 - best effort, as Replies.reply promises
            log.warning("control reply not sent", error=f"{type(exc).__name__}: {exc}")
