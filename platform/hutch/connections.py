"""Open a broker or a result store from its URL: the only place that maps schemes to classes."""

from __future__ import annotations

from urllib.parse import urlsplit

from .amqp.broker import AmqpBroker
from .brokers.base import Broker
from .brokers.memory import MemoryBroker
from .config import Settings, mask_url
from .errors import ConfigurationError
from .queues import route_options
from .results.store import RETRY_PAUSE, ResultStore


def open_broker(settings: Settings) -> Broker:
    scheme = urlsplit(settings.broker_url).scheme
    if scheme == "memory":
        return MemoryBroker(settings.broker_url,
                            lambda route: route_options(settings, route).max_priority)
    if scheme in ("amqp", "amqps"):
        return AmqpBroker(settings.broker_url, settings)
    raise ConfigurationError(f"broker_url: unsupported scheme in {mask_url(settings.broker_url)!r}")


def open_store(settings: Settings, reconnect_pause: float = RETRY_PAUSE) -> ResultStore:
    return ResultStore(settings.result_backend, reconnect_pause=reconnect_pause)
