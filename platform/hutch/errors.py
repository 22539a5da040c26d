"""Every exception hutch raises on purpose, in one tree.

::

    HutchError
    ├── ConfigurationError          bad setting, URL, app path or CLI argument
    │   ├── InvalidTimeLimits       soft_time_limit not shorter than time_limit
    │   ├── NoSuchSetting           app.conf.NAME read for a name hutch has no
    │   │                           setting for (unknown, or refused)
    │   └── QueueNotFound           a route to a queue not in task_queues while
    │                               task_create_missing_queues is off
    ├── SerializationError          a value or body that cannot be encoded/decoded
    │   ├── ContentDisallowed       a serializer the receiver does not accept
    │   └── MessageTooLarge         a body over worker_max_message_bytes,
    │                               as received or unpacked
    ├── CeleryNameWarning           a Celery setting name given for a hutch one
    │                               (a UserWarning, shown once per name)
    ├── MessageError                a delivery that is not a valid hutch envelope
    ├── BrokerError                 anything RabbitMQ (or memory://) refused
    │   ├── BrokerUnavailable       cannot connect, or the connection dropped
    │   │   └── QueueNodeDown       a classic queue's home node is down: it
    │   │                           cannot be declared or used until it is back
    │   ├── BrokerAccessRefused     RabbitMQ refused the login or the virtual
    │   │                           host (retrying cannot help)
    │   ├── QueueMismatchError      a queue exists with other arguments than
    │   │                           the settings ask for (406 on declare)
    │   ├── QueueInUse              a migration refused: messages or consumers
    │   │                           remain (hutch queues migrate without --force)
    │   └── PublishError            the broker did not confirm a publish
    │       └── UnroutableError     published with mandatory and returned
    ├── BackendError                the result database failed
    │   └── UnstorableValue         the database refused a value (NUL character,
    │                               over-long name, not JSON-able)
    ├── InvalidQuery                a malformed read query (hutch web's API: 400)
    ├── NotFound                    an id or name hutch web's API does not know (404)
    ├── ActionFailed                a dashboard action was tried and refused (409/504)
    ├── NotRegistered               a task name no worker/app knows
    ├── TimeoutError                AsyncResult.get() waited longer than asked
    ├── TaskRevokedError            get() on a task that was revoked
    ├── IncompleteStream            collect() reached a result that is not ready
    ├── TaskFailure                 stand-in for a task exception type that the
    │                               caller cannot import
    ├── MaxRetriesExceededError     a task asked for a retry beyond max_retries
    ├── SoftTimeLimitExceeded       raised inside a task at its soft_time_limit
    ├── TimeLimitExceeded           recorded for a task killed at its time_limit
    ├── WorkerLostError             a task kept killing its worker process
    ├── DeliveryLimitExceeded       a quorum queue redelivered a task too often
    ├── ChordError                  a chord's body did not run: a header task failed
    ├── NotLeader                   a beat lost its lease before a claim committed
    ├── Retry                       raised by Task.retry() to ask for a retry
    ├── Reject                      raised by task code: dead-letter (or requeue)
    │                               this message; the row says REJECTED
    ├── Ignore                      raised by task code: acknowledge and drop this
    │                               message; the row says IGNORED
    └── Replaced                    raised by Task.replace(): the worker sends the
                                    replacement (control flow, never caught by tasks)

Callers catch ``HutchError`` to handle everything hutch raises, or a leaf for one
condition. Task code's own exceptions are never wrapped: ``get()`` re-raises them.
"""

from __future__ import annotations

__all__ = [
    "ActionFailed",
    "BackendError",
    "BrokerAccessRefused",
    "BrokerError",
    "BrokerUnavailable",
    "CeleryNameWarning",
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "DeliveryLimitExceeded",
    "HutchError",
    "Ignore",
    "IncompleteStream",
    "InvalidQuery",
    "InvalidTimeLimits",
    "MaxRetriesExceededError",
    "MessageError",
    "MessageTooLarge",
    "NotFound",
    "NotLeader",
    "NoSuchSetting",
    "NotRegistered",
    "PublishError",
    "QueueInUse",
    "QueueMismatchError",
    "QueueNodeDown",
    "QueueNotFound",
    "Reject",
    "Replaced",
    "Retry",
    "SoftTimeLimitExceeded",
    "SerializationError",
    "TaskFailure",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "UnroutableError",
    "UnstorableValue",
    "WorkerLostError",
]


class HutchError(Exception):
    """Root of every error hutch raises itself."""


class ConfigurationError(HutchError):
    """A setting, URL, application path or command-line argument is invalid."""


class InvalidTimeLimits(ConfigurationError):
    """A task or call whose ``soft_time_limit`` is not shorter than its ``time_limit``:
    the hard limit would stop the task before the soft one could let it clean up."""


class NoSuchSetting(ConfigurationError, AttributeError, KeyError):
    """``app.conf.NAME`` (or ``app.conf["NAME"]``) for a name that is no setting, or is
    Celery's name for one hutch refuses (the message says why). Also an AttributeError
    and a KeyError, so ``getattr(conf, name, default)`` and ``hasattr`` work as usual."""


class QueueNotFound(ConfigurationError):
    """A message would go to a queue that ``task_queues`` does not list while
    ``task_create_missing_queues`` is off (Celery's ``QueueNotFound``)."""


class SerializationError(HutchError):
    """A value cannot be serialized, or a body cannot be deserialized."""


class ContentDisallowed(SerializationError):
    """The content type is known but not in the receiver's ``accept_content``."""


class MessageTooLarge(SerializationError):
    """A message body is larger than ``worker_max_message_bytes`` as received, or
    would be once decompressed (it is never unpacked past the limit)."""


class CeleryNameWarning(HutchError, UserWarning):
    """A Celery setting name (``CELERY_RESULT_BACKEND``) was given where hutch has its
    own (``result_backend``): it works, and the warning names the one to use."""


class MessageError(HutchError):
    """A delivery is not a well-formed hutch task message."""


class BrokerError(HutchError):
    """The broker refused or failed an operation."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached, or the connection was lost mid-operation."""


class QueueNodeDown(BrokerUnavailable):
    """RabbitMQ cannot declare or use a queue because the cluster node it lives on is
    down (404 NOT_FOUND "home node ... of durable queue ... is down or inaccessible"):
    a classic queue lives on one node, and no other node can stand in for it. It is a
    BrokerUnavailable, so what retries those (``submit(retry=True)``, the worker's
    consumer, beat) retries this too: the queue is usable again once its node is back.
    ``queue`` and ``node`` name them (the node as RabbitMQ names it, ``rabbit@host``)."""

    def __init__(self, message: str, queue: str = "", node: str = "") -> None:
        super().__init__(message)
        self.queue, self.node = queue, node


class BrokerAccessRefused(BrokerError):
    """RabbitMQ refused the connection's login (ACCESS_REFUSED: wrong user name or
    password) or its virtual host (NOT_ALLOWED). Unlike BrokerUnavailable it is not
    retried by ``submit(retry=True)``: the same credentials fail the same way."""


class QueueMismatchError(BrokerError):
    """RabbitMQ refused to declare a queue (406 PRECONDITION_FAILED) because it already
    exists with other arguments (type, maximum priority, delivery limit). RabbitMQ never
    changes an existing queue's arguments: the queue must be migrated (docs/ops.md)."""


class QueueInUse(BrokerError):
    """``hutch queues migrate`` refused to move a queue that still has messages or
    consumers (``--force`` moves the messages and cancels the consumers)."""


class PublishError(BrokerError):
    """A publish was nacked or not confirmed in time; the message may not be stored."""


class UnroutableError(PublishError):
    """A mandatory publish was returned: no queue is bound for its route."""


class BackendError(HutchError):
    """The result backend (the SQL database) failed."""


class UnstorableValue(BackendError):
    """The database refused a value (NUL character, over-long name, not JSON-able):
    unlike other BackendErrors, writing it again cannot succeed."""


class ActionFailed(HutchError):
    """A dashboard action (hutch.web.actions) was tried and did not do what was asked:
    ``status`` is its HTTP status (409 refused by its target, 504 no answer in time)."""

    def __init__(self, message: str, status: int = 409, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class InvalidQuery(HutchError, ValueError):
    """A read query (the dashboard's task list, its API) asked for something malformed:
    ``field`` names the parameter at fault (an HTTP 400, never a 500)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(HutchError, LookupError):
    """An id or a name a read query asked for is unknown: ``field`` names the parameter
    that held it (an HTTP 404)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotRegistered(HutchError):
    """No task of that name is registered."""

    @classmethod
    def in_app(cls, name: str, app_name: str | None) -> NotRegistered:
        """The error of an app, or of a worker running its tasks, asked for a task the
        app does not have: it names the app, so the reason says which code was loaded."""
        return cls(f"no task named {name!r} is registered in app {app_name or '(unnamed)'}")


class TimeoutError(HutchError):  # noqa: A001 - the name Celery users expect
    """``AsyncResult.get()`` gave up waiting."""


class TaskRevokedError(HutchError):
    """The task was revoked; it has no result."""


class IncompleteStream(HutchError):
    """``collect()`` met a result that is not ready yet (Celery's name); pass
    ``intermediate=True`` to walk past it, or wait for the parent first."""


class TaskFailure(HutchError):
    """A task failed with an exception type this process cannot import.

    ``exc_type`` holds the dotted name of the original type.
    """

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message


class MaxRetriesExceededError(HutchError):
    """``self.retry()`` was called with no retries left and no exception to re-raise."""


class SoftTimeLimitExceeded(HutchError):
    """Raised inside a running task when its ``soft_time_limit`` passes: catch it to
    clean up before ``time_limit`` ends the task for good."""


class TimeLimitExceeded(HutchError):
    """The task ran past its ``time_limit`` and was stopped (the prefork child is killed
    and replaced); this is the exception its FAILURE row records."""


class WorkerLostError(HutchError):
    """The worker process running the task died (killed, crashed) too many times
    (``worker_max_lost_attempts``); the message was dead-lettered instead of looping."""


class DeliveryLimitExceeded(HutchError):
    """A quorum queue delivered the message as often as its ``delivery_limit`` allows
    without any worker finishing it; the worker dead-lettered it with this reason."""


class ChordError(HutchError):
    """A chord's body did not run because a header task failed (or was revoked).

    It is the outcome recorded on the body's row; the message names the failed
    header task, and ``task_id`` holds its id where known.
    """

    task_id: str | None = None


class NotLeader(HutchError):
    """A beat's lease was lost (expired, or taken over) before its claim of a run could
    commit: the run is left to the beat that holds the lease now."""


class Retry(HutchError):
    """Raised inside a task by ``self.retry()``; the worker schedules the retry.

    ``changes`` holds the next attempt's other message fields (``args``, ``kwargs``,
    ``queue``, ``expires``, ``priority``), checked by ``self.retry()``; a field not in it
    stays as this attempt's (``args`` is the exception's own, hence a dict of them)."""

    def __init__(self, exc: BaseException | None = None, countdown: float | None = None,
                 eta: object = None, max_retries: int | None = None,
                 changes: dict[str, object] | None = None) -> None:
        super().__init__(f"retry requested: {exc!r}" if exc else "retry requested")
        self.exc = exc
        self.countdown = countdown
        self.eta = eta
        self.max_retries = max_retries
        self.changes = dict(changes or {})


class Reject(HutchError):
    """Raised by task code to refuse the message it runs (Celery's ``Reject``).

    ``requeue=False``: the message goes to its route's dead-letter queue with ``reason``
    in its headers, and the row says REJECTED. ``requeue=True``: it goes back to the tail
    of its queue, counted as a lost attempt, so a task that always requeues is
    dead-lettered after ``worker_max_lost_attempts`` (docs/guide.md, "Reject and Ignore").
    """

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        super().__init__(*(() if reason is None else (reason,)))
        self.reason = reason
        self.requeue = bool(requeue)

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.reason, self.requeue)


class Ignore(HutchError):
    """Raised by task code to end its run with no outcome (Celery's ``Ignore``): the message
    is acknowledged, no callback or errback is sent, and the row says IGNORED."""


class Replaced(HutchError):
    """Raised inside a task by ``self.replace(sig)``: control flow, not a failure. The
    worker sends ``sig`` (frozen so that its last task takes this task's id) in place of
    this task's outcome (hutch.workflows.replace). Task code should let it through."""

    def __init__(self, sig: object) -> None:
        super().__init__(f"replaced by {type(sig).__name__}")
        self.sig = sig
