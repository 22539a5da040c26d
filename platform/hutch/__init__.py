"""hutch: an AMQP-first task platform. RabbitMQ does every broker duty; SQL tables keep every result.

The public surface is exactly ``__all__``; everything else is internal and may change.
The errors a program catches are here too; :mod:`hutch.errors` holds the whole tree.
"""

from .app import Hutch
from .client.aio import AsyncClient, AsyncGroupResult, AsyncTaskResult
from .client.eager import EagerResult
from .client.handles import AsyncResult, GroupResult, ResultSet
from .client.sync import Client
from .errors import (
    BackendError,
    BrokerError,
    BrokerUnavailable,
    ChordError,
    HutchError,
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskFailure,
    TaskRevokedError,
    TimeoutError,
)
from .messages import Request
from .results.records import (
    FAILURE,
    IGNORED,
    PENDING,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
)
from .schedules import crontab
from .shared import shared_task
from .tasks import Task
from .workflows.canvas import Signature, chain, chord, group, signature
from .workflows.stamping import StampingVisitor

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncGroupResult",
    "AsyncResult",
    "AsyncTaskResult",
    "BackendError",
    "BrokerError",
    "BrokerUnavailable",
    "ChordError",
    "Client",
    "EagerResult",
    "FAILURE",
    "GroupResult",
    "Hutch",
    "HutchError",
    "IGNORED",
    "Ignore",
    "MaxRetriesExceededError",
    "NotRegistered",
    "PENDING",
    "RECEIVED",
    "REJECTED",
    "RETRY",
    "REVOKED",
    "Reject",
    "Request",
    "ResultSet",
    "Retry",
    "STARTED",
    "SUCCESS",
    "Signature",
    "SoftTimeLimitExceeded",
    "StampingVisitor",
    "Task",
    "TaskFailure",
    "TaskRevokedError",
    "TimeoutError",
    "__version__",
    "chain",
    "chord",
    "group",
    "crontab",
    "shared_task",
    "signature",
]
