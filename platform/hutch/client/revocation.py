"""Revoking tasks: store the ids, then broadcast the command to every running worker.

A revocation is written to the ``hutch_revoked`` table first and broadcast on
the ``P.control`` fanout exchange second. A worker subscribes to the broadcast
before it loads the table, so whichever way a revocation reaches it, it cannot
slip between the two; and a worker started next week still refuses the task.

It lives with the client, whose store and broker it writes to and broadcasts
on, so ``AsyncResult.revoke()`` needs nothing from the operator tools:
``app.control`` (:mod:`hutch.ops.control`, used by the CLI) is built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..brokers.base import NOTICE_EVERYONE
from ..envelope import ID_LENGTH
from ..errors import BrokerError, BrokerUnavailable, ConfigurationError
from ..logs import get_logger
from ..messages import RevokeCommand, RevokeStampsCommand, encode_notice, signal_name

if TYPE_CHECKING:
    from .sync import Client

log = get_logger("hutch.control")


def task_ids(value: str | Iterable[str]) -> tuple[str, ...]:
    """One id or many, checked: what cannot be a task id is refused, not broadcast."""
    ids = (value,) if isinstance(value, str) else tuple(value)
    for task_id in ids:
        if not isinstance(task_id, str) or not task_id or len(task_id) > ID_LENGTH:
            raise ConfigurationError(f"task_id: expected a non-empty string of at most "
                                     f"{ID_LENGTH} characters, got {task_id!r}")
    if not ids:
        raise ConfigurationError("task_id: no task id given")
    return tuple(dict.fromkeys(ids))


def revoke(client: Client, task_id: str | Iterable[str], terminate: bool = False,
           signal: str | int | None = None,
           tell: Callable[[RevokeCommand], None] | None = None) -> list[str]:
    """Make sure these tasks never run, and with ``terminate`` stop them if running.

    Returns the ids marked REVOKED at once (those no worker had picked up);
    a worker that holds or runs one marks it when it drops or stops it.
    ``terminate`` works on the prefork pool (the child running the task gets
    ``signal``, default SIGTERM, and is replaced) and the asyncio pool (the
    task is cancelled); a threads or solo worker logs that it cannot. ``tell``
    broadcasts the command instead of the plain broadcast (``app.control.revoke(...,
    reply=True)`` asks for the workers' answers); it raises BrokerError as that does.
    """
    command = RevokeCommand(task_ids(task_id), terminate, signal_name(signal))
    marked = client.store.revoke(command.ids, retention=client.conf.revoke_retention,
                                 terminate=terminate, signal=command.signal)
    broker = client.broker
    try:
        if tell is not None:
            tell(command)
        else:
            broker.publish_control(command.encode())
    except BrokerError as exc:
        raise BrokerUnavailable(
            f"revocation of {len(command.ids)} task(s) is stored in the database (workers "
            f"starting from now honour it) but running workers were not told: {exc}"
        ) from exc
    if marked:
        broker.publish_notice(encode_notice(marked), NOTICE_EVERYONE)  # wake get() at once
    log.info("tasks revoked", ids=list(command.ids), terminate=terminate or None,
             marked_now=len(marked))
    return marked


def revoke_by_stamps(client: Client, headers: Mapping[str, Any], terminate: bool = False,
                     signal: str | int | None = None) -> RevokeStampsCommand:
    """Make sure no task carrying one of these stamps runs (``{name: value or [values]}``),
    and with ``terminate`` stop those running: stored, then broadcast, as :func:`revoke`.
    A worker marks each such task REVOKED when it drops (or stops) it."""
    command = RevokeStampsCommand.of(headers, terminate, signal)
    client.store.revoke_stamps(command.keys(), retention=client.conf.revoke_retention,
                               terminate=terminate, signal=command.signal)
    try:
        client.broker.publish_control(command.encode())
    except BrokerError as exc:
        raise BrokerUnavailable(
            f"revocation by stamps is stored in the database (workers starting from now "
            f"honour it) but running workers were not told: {exc}") from exc
    log.info("tasks revoked by stamps", headers={n: list(v) for n, v in command.headers.items()},
             terminate=terminate or None)
    return command
