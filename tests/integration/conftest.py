"""Fixtures shared by the integration tests (real RabbitMQ and PostgreSQL)."""

import pytest

from apps.tasks import make_app


@pytest.fixture
def app(amqp_url, postgres_url, topology_prefix):
    """The shared test tasks on RabbitMQ with results in this run's PostgreSQL database."""
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    yield app
    app.close()
