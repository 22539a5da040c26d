"""Which failed connections are refusals (never retried) and which are outages (retried)."""

import aiormq.exceptions
import pika.exceptions
import pytest
from pika.adapters.utils.connection_workflow import (
    AMQPConnectionWorkflowFailed,
    AMQPConnectorSocketConnectError,
)

from hutch.brokers.amqp.failures import connect_error, reason
from hutch.errors import BrokerAccessRefused, BrokerUnavailable

URL = "amqp://guest:***@h:5672//"


def closed_by_broker(code, text):
    return pika.exceptions.ConnectionClosedByBroker(code, text)


@pytest.mark.parametrize("exc, refused", [
    # pika wraps the broker's reply in its guess from the connection's stage
    (pika.exceptions.ProbableAuthenticationError(repr(closed_by_broker(
        403, "ACCESS_REFUSED - Login was refused"))), BrokerAccessRefused),
    (pika.exceptions.ProbableAccessDeniedError(repr(closed_by_broker(
        530, "NOT_ALLOWED - vhost x not found"))), BrokerAccessRefused),
    (aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused"),
     BrokerAccessRefused),
    # the same guesses for a socket dropped while a node boots: an outage, retried
    (pika.exceptions.ProbableAuthenticationError(repr(pika.exceptions.StreamLostError(
        "Stream connection lost: ConnectionResetError(104)"))), BrokerUnavailable),
    (pika.exceptions.ProbableAccessDeniedError(repr(closed_by_broker(
        320, "CONNECTION_FORCED - broker forced connection closure"))), BrokerUnavailable),
    (closed_by_broker(320, "CONNECTION_FORCED - shutdown"), BrokerUnavailable),
    (ConnectionRefusedError(111, "Connection refused"), BrokerUnavailable),
])
def test_only_the_brokers_own_refusal_is_final(exc, refused):
    assert type(connect_error(exc, URL)) is refused


def test_the_reason_is_the_innermost_error_pika_wrapped():
    wrapped = pika.exceptions.AMQPConnectionError(AMQPConnectionWorkflowFailed(
        [AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "Connection refused"))]))
    assert str(wrapped) == ""  # what the one-line error used to show: nothing
    assert reason(wrapped) == "ConnectionRefusedError: [Errno 111] Connection refused"
