"""Open a broker from its URL: the only place that maps broker URL schemes to classes."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import Settings, mask_url
from ..errors import ConfigurationError
from .amqp.broker import AmqpBroker
from .base import Broker
from .memory import MemoryBroker
from .routes import route_options


def open_broker(settings: Settings) -> Broker:
    scheme = urlsplit(settings.broker_url).scheme
    if scheme == "memory":
        return MemoryBroker(settings.broker_url,
                            lambda route: route_options(settings, route).max_priority)
    if scheme in ("amqp", "amqps"):
        return AmqpBroker(settings.broker_url, settings)
    raise ConfigurationError(f"broker_url: unsupported scheme in {mask_url(settings.broker_url)!r}")

