"""``/readyz`` of hutch web against the real RabbitMQ and PostgreSQL (in-process, with
Starlette's TestClient): ready when both answer; 503 naming the broker when RabbitMQ
does not answer, and the database when it has no hutch schema; never a URL or a
password in the answer. The process itself: tests/integration/test_systemd_rabbitmq.py."""

from __future__ import annotations

import socket

import pytest
from starlette.testclient import TestClient

from hutch import Hutch
from hutch.web.app import create_app

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _readyz(broker: str, backend: str, prefix: str) -> tuple[int, dict, str]:
    app = Hutch("t", broker=broker, backend=backend, topology_prefix=prefix)
    try:
        with TestClient(create_app(app)) as http:
            answer = http.get("/readyz")
    finally:
        app.close()
    return answer.status_code, answer.json(), answer.text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ready_when_postgresql_and_rabbitmq_answer(amqp_url, postgres_url, topology_prefix):
    assert _readyz(amqp_url, postgres_url, topology_prefix)[:2] == (
        200, {"status": "ok", "checks": {"database": "ok", "broker": "ok"}})


def test_503_names_the_broker_that_does_not_answer(postgres_url, topology_prefix):
    broker = f"amqp://guest:s3cret@127.0.0.1:{_closed_port()}//"
    code, body, text = _readyz(broker, postgres_url, topology_prefix)
    assert (code, body) == (503, {"status": "unavailable",
                                  "checks": {"database": "ok", "broker": "unavailable"}})
    assert "s3cret" not in text and "amqp" not in text


def test_503_names_a_database_without_the_hutch_schema(amqp_url, empty_postgres_url,
                                                        topology_prefix):
    code, body, text = _readyz(amqp_url, empty_postgres_url, topology_prefix)
    assert (code, body) == (503, {"status": "unavailable",
                                  "checks": {"database": "unavailable", "broker": "ok"}})
    assert "postgres" not in text
