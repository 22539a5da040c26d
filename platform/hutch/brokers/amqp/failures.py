"""What a failed connection to RabbitMQ means, for pika and aio-pika alike.

A refused login (ACCESS_REFUSED) or virtual host (NOT_ALLOWED) fails the same way
however often it is tried: it becomes :class:`~hutch.errors.BrokerAccessRefused`
at once. Anything else (a closed port, a timeout, a dropped connection) is
:class:`~hutch.errors.BrokerUnavailable`, which callers retry. Both carry one line
with the innermost reason: pika wraps a refused socket two levels deep, and its
outer exceptions print as nothing.
"""

from __future__ import annotations

import sys
from types import ModuleType

import pika.exceptions

from ...errors import BrokerAccessRefused, BrokerError, BrokerUnavailable

_PIKA_GUESSES = (pika.exceptions.ProbableAuthenticationError,
                 pika.exceptions.ProbableAccessDeniedError)
"""pika's guesses from the stage a connection was lost in: they mean a refusal only when
the broker's own Connection.Close (403, 530) is inside; a socket dropped while the
node boots raises them too, and that one must be retried like any outage."""


def refusal(exc: BaseException) -> str | None:
    """Why RabbitMQ refused this connection for good, or None if it may work later."""
    code = _refused_code(exc)
    if code == 403:
        return ("RabbitMQ refused the login (ACCESS_REFUSED): check the user name and "
                "password in the broker URL")
    if code == 530:
        return (f"RabbitMQ refused the virtual host ({reason(exc)}): check the vhost in the "
                f"broker URL and the user's permissions")
    aio = _aiormq()
    if isinstance(exc, pika.exceptions.AuthenticationError) or \
            (aio is not None and isinstance(exc, aio.AuthenticationError)):
        return f"RabbitMQ offers no login mechanism hutch can use ({reason(exc)})"
    return None


def _aiormq() -> ModuleType | None:
    """aiormq's exceptions once aio-pika is in use, else None: an error can be one of
    them only after that import, which processes without asyncio never pay."""
    return sys.modules.get("aiormq.exceptions")


def _refused_code(exc: BaseException) -> int | None:
    """403 or 530 when the broker closed the connection with that reply code."""
    if isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
        return exc.reply_code if exc.reply_code in (403, 530) else None
    if isinstance(exc, _PIKA_GUESSES):
        text = str(exc.args[0]) if exc.args else ""
        for code in (403, 530):
            if "ConnectionClosedByBroker" in text and f"({code})" in text:
                return code
        return None
    aio = _aiormq()
    if aio is not None and isinstance(exc, aio.ProbableAuthenticationError):
        return 403  # aiormq raises it only for the broker's 403 reply
    if aio is not None and isinstance(exc, aio.ConnectionNotAllowed):
        return 530
    return None


def reason(exc: BaseException) -> str:
    """``Type: message`` of the innermost error pika or aiormq wrapped."""
    inner = exc
    for _ in range(5):
        nested = _wrapped(inner)
        if nested is None:
            break
        inner = nested
    text = str(inner).strip()
    name = type(inner).__name__
    return f"{name}: {text}" if text and name not in text else (text or name)


def _wrapped(exc: BaseException) -> BaseException | None:
    many = getattr(exc, "exceptions", None)  # pika's AMQPConnectionWorkflowFailed
    if many:
        return many[-1] if isinstance(many[-1], BaseException) else None
    one = getattr(exc, "exception", None)  # pika's AMQPConnectorPhaseErrorBase
    if isinstance(one, BaseException):
        return one
    if isinstance(exc, pika.exceptions.AMQPConnectionError) and len(exc.args) == 1 \
            and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    return None


def connect_error(exc: BaseException, masked_url: str, doing: str = "connect to") -> BrokerError:
    """The hutch error for a failed connection attempt: refused for good, or unavailable."""
    refused = refusal(exc)
    if refused is not None:
        return BrokerAccessRefused(f"cannot {doing} {masked_url}: {refused}")
    return BrokerUnavailable(f"cannot {doing} {masked_url}: {reason(exc)}")


def channel_closed(channel: object, whose: str) -> BrokerUnavailable:
    """A blocking channel the broker closed while its connection stayed up (a channel
    error such as ``consumer_timeout``'s PRECONDITION_FAILED). pika raises that only
    to a caller of the channel's own methods; a thread that only turns the
    connection's loop must look, and start over on a new connection."""
    why = getattr(channel, "_closing_reason", None)  # pika keeps the broker's reply here
    return BrokerUnavailable(f"the broker closed {whose} channel"
                             + (f": {reason(why)}" if why is not None else ""))
