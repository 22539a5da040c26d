"""RabbitMQ fixtures: the real broker on 127.0.0.1:5672, a unique topology prefix per test.

An unreachable RabbitMQ fails the tests that need it (never skips): a green run
must mean the broker code was exercised. Start it with ``rabbitmq-server -detached``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pika
import pytest

from hutch.brokers.amqp.broker import AmqpBroker
from hutch.config import Settings

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def close_connections(role: str, pid: int | None = None) -> int:
    """Close the shared RabbitMQ's connections of ``role`` opened by process ``pid``
    (default: this one), found by their connection_name; how many were closed."""
    name = f"hutch {role} {os.uname().nodename}:{pid or os.getpid()}"
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "client_properties",
                          "--no-table-headers"], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    pids = [line.split("\t")[0] for line in out.splitlines() if name in line]
    for conn in pids:
        subprocess.run(["rabbitmqctl", "-q", "close_connection", conn, "test"], check=True,
                       capture_output=True, timeout=60)
    return len(pids)


def _pika_params() -> pika.ConnectionParameters:
    return pika.ConnectionParameters("127.0.0.1", 5672, "/", pika.PlainCredentials("guest", "guest"),
                                     connection_attempts=1, socket_timeout=3)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    try:
        pika.BlockingConnection(_pika_params()).close()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"RabbitMQ is not reachable at 127.0.0.1:5672 ({type(exc).__name__}: {exc}); "
                    "start it with `rabbitmq-server -detached`", pytrace=False)
    return AMQP_URL


def _names(kind: str) -> list[str]:
    out = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "name", "--no-table-headers"],
                         capture_output=True, text=True, timeout=60)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def delete_prefixed(*prefixes: str) -> None:
    """Delete every queue and exchange whose name starts with one of ``prefixes`` and a
    dot (two rabbitmqctl runs to list the names, however many prefixes)."""
    starts = tuple(f"{prefix}." for prefix in prefixes)
    conn = pika.BlockingConnection(_pika_params())
    try:
        channel = conn.channel()
        for queue in _names("queues"):
            if queue.startswith(starts):
                channel.queue_delete(queue)
        for exchange in _names("exchanges"):
            if exchange.startswith(starts):
                channel.exchange_delete(exchange)
    finally:
        conn.close()


SWEEP_EVERY = 8
"""Test prefixes a pytest process collects before deleting their queues and exchanges
in one go: listing the broker's names costs two rabbitmqctl runs (about 1.3 s of CPU,
an Erlang VM each), too much to pay after every test. Each test's names are its own,
so leaving them a few tests longer is seen by no other test."""


class PrefixSweeper:
    """Deletes what the finished tests' prefixes declared, :data:`SWEEP_EVERY` at a
    time, and the rest at the end of the session."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def add(self, prefix: str) -> None:
        self.pending.append(prefix)
        if len(self.pending) >= SWEEP_EVERY:
            self.sweep()

    def sweep(self) -> None:
        if self.pending:
            delete_prefixed(*self.pending)
            self.pending.clear()


@pytest.fixture(scope="session")
def prefix_sweeper() -> Iterator[PrefixSweeper]:
    sweeper = PrefixSweeper()
    yield sweeper
    sweeper.sweep()


def queue_counts(prefix: str) -> dict[str, tuple[int, int]]:
    """(ready, unacknowledged) messages of every queue whose name starts with ``prefix.``."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages_ready",
                          "messages_unacknowledged", "--no-table-headers"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(prefix + "."):
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


def in_ladder_only(prefix: str) -> bool:
    """One message ready in the delay ladder, none ready or unacknowledged in the work queue."""
    counts = queue_counts(prefix)
    return counts[f"{prefix}.celery"] == (0, 0) and \
        sum(ready for name, (ready, _) in counts.items() if ".delay." in name) == 1


@pytest.fixture
def topology_prefix(amqp_url: str, prefix_sweeper: PrefixSweeper) -> Iterator[str]:
    prefix = f"hutchtest.{uuid.uuid4().hex[:10]}"
    yield prefix
    prefix_sweeper.add(prefix)


@pytest.fixture
def amqp_settings(amqp_url: str, topology_prefix: str) -> Settings:
    settings = Settings()
    settings.broker_url = amqp_url
    settings.topology_prefix = topology_prefix
    settings.broker_connection_timeout = 3.0
    settings.broker_confirm_timeout = 30.0
    return settings


@pytest.fixture
def broker(amqp_url: str, amqp_settings: Settings) -> Iterator[AmqpBroker]:
    b = AmqpBroker(amqp_url, amqp_settings)
    yield b
    b.close()
