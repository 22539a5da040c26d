"""RabbitMQ's management HTTP API, for the queue count AMQP cannot give.

A passive declare answers a queue's ready messages and consumers only;
``GET /api/queues/VHOST/NAME`` also counts the messages delivered and not yet
acknowledged. The API is optional (``broker_management_url``): the AMQP broker's
Admin asks it first and falls back to a passive declare whenever it gives no answer
(plugin off, wrong password, queue not declared, counts not collected yet), with one
warning per outage, password masked. Its counts are as fresh as the node's
``collect_statistics_interval`` (5 s by default).

httpx is imported on the first request, so ``import hutch`` does not pay for it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ...config import mask_secrets
from ...logs import get_logger
from ..base import QueueStats
from .params import BrokerAddress

log = get_logger("hutch.amqp")

COUNTS = ("messages_ready", "messages_unacknowledged", "consumers")
"""The fields of a queue object that :meth:`ManagementApi.queue_stats` reads."""


class ManagementApi:
    """Queue stats of one vhost from the management API at ``base`` (no credentials
    in it: they travel as HTTP basic auth, so no URL logged or raised holds them)."""

    def __init__(self, management_url: str, broker: BrokerAddress, timeout: float) -> None:
        parts = urlsplit(management_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        self.base = f"{parts.scheme}://{host}{parts.path.rstrip('/')}"
        self.auth = (unquote(parts.username) if parts.username is not None else broker.username,
                     unquote(parts.password) if parts.password is not None else broker.password)
        self.vhost = broker.vhost
        self.timeout = timeout
        self._failing = False

    def __repr__(self) -> str:
        return f"<ManagementApi {self.base} vhost={self.vhost!r}>"

    def queue_url(self, queue: str) -> str:
        """``BASE/api/queues/VHOST/NAME``, each part percent-encoded (``/`` is ``%2F``)."""
        return f"{self.base}/api/queues/{quote(self.vhost, safe='')}/{quote(queue, safe='')}"

    def queue_stats(self, queue: str) -> QueueStats | None:
        """Ready, unacked and consumers of ``queue``; None when the API gave no answer
        (the caller falls back to a passive declare)."""
        import httpx  # here, not at the top: only a configured API needs it

        try:
            response = httpx.get(self.queue_url(queue), auth=self.auth, timeout=self.timeout)
        except httpx.HTTPError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        body = _json(response)
        if response.status_code == 404 and _error_of(body) == "Object Not Found":
            self._recovered()
            log.debug("queue unknown to the management API", queue=queue)
            return None  # never declared, or (3.10) its node is down: the passive declare says which
        if response.status_code != 200:
            return self._failed(f"HTTP {response.status_code} for {self.queue_url(queue)}")
        if not isinstance(body, dict) or body.get("name") != queue:
            return self._failed(f"no queue object at {self.queue_url(queue)}")
        self._recovered()
        stats = counts_of(body)
        if stats is None:
            log.debug("management API has no counts for the queue yet", queue=queue)
        return stats

    def _failed(self, reason: str) -> QueueStats | None:
        """None, warning on the first failure of an outage only (a page asks per route)."""
        if not self._failing:
            self._failing = True
            log.warning("RabbitMQ management API not usable; queue stats by passive "
                        "declare, unacked unknown", api=self.base,
                        error=mask_secrets(reason))
        return None

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("RabbitMQ management API answers again", api=self.base)


def counts_of(body: Any) -> QueueStats | None:
    """The counts of a queue object, or None if any is missing (a queue declared moments
    ago has none until the node's next statistics emission) or the queue is down."""
    if not isinstance(body, dict) or body.get("state") == "down":
        return None  # a classic queue on a down node (listed so by some versions; 3.10
        # answers 404 for it instead): the passive declare names the node
    values = [body.get(key) for key in COUNTS]
    counts = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    if len(counts) != len(COUNTS):
        return None
    ready, unacked, consumers = counts
    return QueueStats(ready=ready, unacked=unacked, consumers=consumers)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_of(body: Any) -> Any:
    return body.get("error") if isinstance(body, dict) else None
