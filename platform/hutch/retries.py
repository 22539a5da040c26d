"""When and whether a failed task runs again: pure arithmetic, no I/O.

A retry is a new message with the same id and ``retries + 1``, sent through the
delay ladder; the worker acknowledges the failed delivery only after RabbitMQ
confirms the retry. See docs/guide.md ("Retries").
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from .call_options import aware
from .errors import MaxRetriesExceededError, Retry
from .messages import TaskMessage
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
    return RetryPlan(message.replace(retries=message.retries + 1, eta=eta, sent_at=now), reason,
                     eta)


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
