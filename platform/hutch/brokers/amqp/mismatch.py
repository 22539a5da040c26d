"""RabbitMQ's refusal to redeclare a queue with other arguments, told as what to do.

Declaring an existing queue with different arguments (another type, maximum
priority or delivery limit: a changed ``task_queues`` entry) closes the channel
with ``406 PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue ...``.
RabbitMQ never changes an existing queue's arguments, so retrying cannot help:
the publisher, the consumer and the asyncio client all turn that reply into one
:class:`~hutch.errors.QueueMismatchError` that names the queue, the argument,
both values and the way out (docs/ops.md, "Changing a queue's arguments").
"""

from __future__ import annotations

import re

from ...errors import QueueMismatchError

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '(?P<queue>[^']+)' in vhost '[^']*': "
    r"received (?P<wanted>.+?) but current is (?P<current>.+)$")
_VALUE = re.compile(r"^(?:the value )?'(?P<value>[^']*)'(?: of type '[^']*')?$")


def queue_mismatch(reply_text: str) -> QueueMismatchError | None:
    """The error for a 406 inequivalent-argument reply; None for any other reply."""
    found = _INEQUIVALENT.search(reply_text.strip())
    if found is None:
        return None
    queue, arg = found["queue"], found["arg"]
    return QueueMismatchError(
        f"queue {queue!r} already exists with {arg} = {_value(found['current'])}, but these "
        f"settings declare it with {_value(found['wanted'])}; RabbitMQ never changes an "
        "existing queue's arguments. Either set task_queues (or task_queue_type / "
        "task_queue_max_priority) back to match the queue, or migrate it: stop the "
        f"route's producers and workers, let it drain, delete it (rabbitmqctl delete_queue "
        f"{queue}) and start them again with the new settings (docs/ops.md, "
        "\"Changing a queue's arguments\")")


def _value(text: str) -> str:
    """``the value '9' of type 'signedint'`` -> ``9``; ``none`` -> ``none``."""
    found = _VALUE.match(text.strip())
    return found["value"] if found else text.strip()
