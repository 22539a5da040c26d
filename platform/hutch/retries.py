"""When and whether a failed task runs again: pure arithmetic, no I/O.

A retry is a new message with the same id and ``retries + 1``, sent through the
delay ladder; the worker acknowledges the failed delivery only after RabbitMQ
confirms the retry. See docs/guide.md ("Retries").
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import envelope
from .brokers.routes import message_priority
from .call_options import aware, seconds
from .errors import ConfigurationError, MaxRetriesExceededError, Retry
from .messages import TaskMessage

if TYPE_CHECKING:
    from .config import Settings
    from .tasks import TaskOptions


@dataclass(frozen=True)
class RetryPlan:
    message: TaskMessage
    """The next attempt's message."""
    reason: BaseException
    """The error the row records for this attempt."""
    eta: dt.datetime
    """When the next attempt may run (the message's ``eta``, which is never None here)."""


def plan_retry(options: TaskOptions, message: TaskMessage, exc: BaseException,
               now: dt.datetime, zone: dt.tzinfo,
               rand: random.Random | None = None) -> RetryPlan | BaseException | None:
    """A plan for the next attempt; the exception to fail with when retries are
    exhausted; or None when this failure is not one to retry."""
    if isinstance(exc, Retry):
        reason: BaseException = exc.exc if exc.exc is not None else exc
        limit = exc.max_retries if exc.max_retries is not None else options.max_retries
        eta = _explicit_eta(exc, now, zone, options)
    elif options.autoretry_for and isinstance(exc, options.autoretry_for):
        reason, limit = exc, options.max_retries
        eta = now + dt.timedelta(seconds=backoff(options, message.retries, rand))
    else:
        return None
    if limit is not None and message.retries >= limit:
        if isinstance(reason, Retry):
            return MaxRetriesExceededError(
                f"{message.task}[{message.id}] gave up after {message.retries} retries")
        return reason
    changes = exc.changes if isinstance(exc, Retry) else {}
    return RetryPlan(message.replace(retries=message.retries + 1, eta=eta, sent_at=now,
                                     **changes), reason, eta)


def backoff(options: TaskOptions, retries: int, rand: random.Random | None = None) -> float:
    """Seconds before the next automatic retry: exponential with retry_backoff, capped
    at retry_backoff_max, with full jitter when retry_jitter; else default_retry_delay."""
    if not options.retry_backoff:
        return options.default_retry_delay
    factor = 1.0 if options.retry_backoff is True else float(options.retry_backoff)
    delay = min(options.retry_backoff_max, factor * (2 ** retries))
    return (rand or random).uniform(0, delay) if options.retry_jitter else delay


def _explicit_eta(exc: Retry, now: dt.datetime, zone: dt.tzinfo,
                  options: TaskOptions) -> dt.datetime:
    if isinstance(exc.eta, dt.datetime):
        return aware(exc.eta, zone)
    countdown = exc.countdown if exc.countdown is not None else options.default_retry_delay
    return now + dt.timedelta(seconds=countdown)


def retry_changes(conf: Settings, queue: str, *, args: Any = None, kwargs: Any = None,
                  new_queue: Any = None, expires: Any = None, priority: Any = None,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """The next attempt's fields that ``self.retry()`` changes (None: as this attempt's),
    checked here, in the task, so a bad one fails the call naming it. ``queue`` is this
    attempt's; ``expires`` is seconds from now or a datetime, as for ``apply_async``."""
    changes: dict[str, Any] = {}
    if args is not None:
        changes["args"] = _checked("args", envelope.sequence, args)
    if kwargs is not None:
        changes["kwargs"] = _checked("kwargs", envelope.keywords, kwargs)
    if new_queue is not None and new_queue != "":
        changes["queue"] = queue = _checked("queue", envelope.route, new_queue)
    if expires is not None:
        changes["expires"] = _expiry(expires, conf.tzinfo, now)
    if priority is not None:
        changes["priority"] = message_priority(conf, queue, priority)
    return changes


def _checked(name: str, check: envelope.Check, value: Any) -> Any:
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"retry(): {name}: {exc}") from None


def _expiry(value: Any, zone: dt.tzinfo, now: dt.datetime | None) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return aware(value, zone)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        now = now or dt.datetime.now(dt.timezone.utc)
        return now + dt.timedelta(seconds=seconds("retry(): expires", value))
    raise ConfigurationError(f"retry(): expires: expected seconds or a datetime, got {value!r}")
