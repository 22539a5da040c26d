"""hutch: an AMQP-first task platform. RabbitMQ does every broker duty; SQL tables keep every result.

The public surface is exactly ``__all__``; everything else is internal and may change.
"""

from .aio_client import AsyncClient, AsyncTaskResult
from .app import Hutch
from .beat.crontab import crontab
from .canvas import Signature, chain, chord, group, signature
from .client import Client
from .context import Request
from .errors import (
    ChordError,
    HutchError,
    NotRegistered,
    Retry,
    TaskFailure,
    TaskRevokedError,
    TimeoutError,
)
from .results.handles import AsyncResult, GroupResult
from .results.records import (
    FAILURE,
    PENDING,
    RECEIVED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
)
from .tasks import Task

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncResult",
    "AsyncTaskResult",
    "ChordError",
    "Client",
    "FAILURE",
    "GroupResult",
    "Hutch",
    "HutchError",
    "NotRegistered",
    "PENDING",
    "RECEIVED",
    "RETRY",
    "REVOKED",
    "Request",
    "Retry",
    "STARTED",
    "SUCCESS",
    "Signature",
    "Task",
    "TaskFailure",
    "TaskRevokedError",
    "TimeoutError",
    "__version__",
    "chain",
    "chord",
    "group",
    "crontab",
    "signature",
]
