"""Broker URL → connection parameters for pika and aio-pika.

URLs are Celery-style: ``amqp://guest:guest@localhost:5672//`` means vhost ``/``.
The path after the first slash is the url-decoded vhost, except that an empty
path, ``/``, ``//`` and ``%2F`` all mean ``/``. One connection attempt only, so
an unreachable broker fails within ``broker_connection_timeout``; the caller
decides whether to retry.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pika

from ...config import Settings, broker_urls, mask_url
from ...errors import ConfigurationError

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


@dataclass(frozen=True)
class BrokerAddress:
    """The parts of a broker URL. ``repr`` never shows the password."""

    scheme: str
    host: str
    port: int
    username: str
    password: str
    vhost: str
    masked: str

    def __repr__(self) -> str:
        return f"BrokerAddress({self.masked!r})"

    @property
    def tls(self) -> bool:
        return self.scheme == "amqps"


def parse_url(url: str) -> BrokerAddress:
    """Split an ``amqp://`` / ``amqps://`` URL; ConfigurationError (password masked) if bad."""
    masked = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"broker_url: cannot parse {masked!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigurationError(f"broker_url: {masked!r} is not an amqp:// or amqps:// URL")
    return BrokerAddress(
        scheme=parts.scheme,
        host=parts.hostname or "localhost",
        port=port or DEFAULT_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        vhost=vhost_from_path(parts.path),
        masked=masked,
    )


def vhost_from_path(path: str) -> str:
    """``""``, ``/``, ``//`` and ``/%2F`` → ``/``; otherwise the decoded rest after one slash."""
    rest = path[1:] if path.startswith("/") else path
    if rest in ("", "/"):
        return "/"
    return unquote(rest)


def connection_name(role: str) -> str:
    """What RabbitMQ's management view shows for the connection."""
    return f"hutch {role} {socket.gethostname()}:{os.getpid()}"


def parse_urls(url: str) -> list[BrokerAddress]:
    """Every node of a ``broker_url`` (one URL, or several separated by ``;``)."""
    urls = broker_urls(url)
    if not urls:
        raise ConfigurationError("broker_url: no URL given")
    return [parse_url(one) for one in urls]


def pika_parameters(url: str, settings: Settings, role: str = "client") -> pika.ConnectionParameters:
    """Parameters for pika's BlockingConnection and SelectConnection (to the first node
    of a list: hutch.brokers.amqp.nodes fails over between them)."""
    return address_parameters(parse_urls(url)[0], settings, role)


def address_parameters(address: BrokerAddress, settings: Settings,
                       role: str) -> pika.ConnectionParameters:
    """pika's parameters for one node."""
    timeout = float(settings.broker_connection_timeout)
    options: dict[str, Any] = {}
    if address.tls:
        options["ssl_options"] = pika.SSLOptions(ssl.create_default_context(), address.host)
    return pika.ConnectionParameters(
        host=address.host,
        port=address.port,
        virtual_host=address.vhost,
        credentials=pika.PlainCredentials(address.username, address.password),
        heartbeat=int(settings.broker_heartbeat),
        connection_attempts=1,
        socket_timeout=timeout,
        stack_timeout=timeout,
        blocked_connection_timeout=float(settings.broker_confirm_timeout),
        client_properties={"connection_name": connection_name(role), "product": "hutch"},
        **options,
    )


def address_aio_kwargs(address: BrokerAddress, settings: Settings, role: str) -> dict[str, Any]:
    """aio-pika's connect keywords for one node."""
    kwargs: dict[str, Any] = {
        "host": address.host,
        "port": address.port,
        "login": address.username,
        "password": address.password,
        "virtualhost": address.vhost,
        "ssl": address.tls,
        "timeout": float(settings.broker_connection_timeout),
        "client_properties": {"connection_name": connection_name(role), "product": "hutch"},
        "heartbeat": int(settings.broker_heartbeat),
    }
    if address.tls:
        kwargs["ssl_context"] = ssl.create_default_context()
    return kwargs
