"""Several RabbitMQ nodes in ``broker_url`` (issue #17): the forms the setting accepts,
the masking of every password in its errors, and the order a connection tries the
nodes in (hutch.brokers.amqp.nodes). On RabbitMQ: tests/integration/test_broker_nodes_rabbitmq.py."""

from __future__ import annotations

import random

import pytest

from hutch.brokers.amqp.nodes import Nodes
from hutch.config import Settings
from hutch.errors import ConfigurationError

A = "amqp://u:secret1@rabbit1:5672//"
B = "amqp://u:secret2@rabbit2:5673/hutch"
C = "amqps://u:secret3@rabbit3//"


@pytest.mark.parametrize("given", [[A, B, C], (A, B, C), f"{A};{B};{C}", f" {A} ; {B};{C}; "])
def test_a_list_or_a_semicolon_string_is_kept_as_one_string(given):
    conf = Settings()
    conf.broker_url = given
    assert conf.broker_url == f"{A};{B};{C}"


def test_the_variable_takes_the_semicolon_form():
    conf = Settings()
    conf.apply_environment({"HUTCH_BROKER_URL": f"{A};{B}",
                            "HUTCH_BROKER_FAILOVER_STRATEGY": "shuffle"})
    assert conf.broker_url == f"{A};{B}" and conf.broker_failover_strategy == "shuffle"


@pytest.mark.parametrize(("given", "message"), [
    (f"{A};redis://u:secret4@r//", "'redis://u:***@r//' is not an amqp://"),
    ([A, "memory://"], "memory:// is one in-process broker"),
    (" ; ", "no URL given"),
    ([A, 5], "is not an amqp://"),
])
def test_a_bad_entry_is_refused_and_no_password_is_shown(given, message):
    conf = Settings()
    with pytest.raises(ConfigurationError) as info:
        conf.broker_url = given
    assert message in str(info.value)
    assert not any(f"secret{i}" in str(info.value) for i in range(1, 5))


def test_a_bad_second_url_names_it_masked():
    """The issue's report: kombu's form once failed with the second URL's password shown."""
    with pytest.raises(ConfigurationError) as info:
        Nodes(f"{A};amqp://u:secret2@rabbit2:notaport//", Settings(), "test")
    assert "amqp://u:***@rabbit2:notaport//" in str(info.value)
    assert "secret" not in str(info.value)


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ConfigurationError, match="is not one of round-robin, shuffle"):
        Settings().broker_failover_strategy = "random"


def test_round_robin_stays_on_a_node_and_moves_on_when_it_fails():
    nodes = Nodes(f"{A};{B};{C}", Settings(), "test")
    assert len(nodes) == 3 and nodes.current.host == "rabbit1"
    assert nodes.params().host == "rabbit1" and nodes.params().port == 5672
    assert nodes.current.host == "rabbit1", "asking again does not move"
    nodes.failed()
    assert (nodes.params().host, nodes.params().port, nodes.params().virtual_host) == (
        "rabbit2", 5673, "hutch")
    nodes.failed()
    assert nodes.aio_kwargs()["host"] == "rabbit3" and nodes.aio_kwargs()["ssl"] is True
    nodes.failed()
    assert nodes.current.host == "rabbit1", "after the last, the first again"
    assert nodes.masked == "amqp://u:***@rabbit1:5672//"
    assert nodes.every == ("amqp://u:***@rabbit1:5672// or amqp://u:***@rabbit2:5673/hutch "
                           "or amqps://u:***@rabbit3//")


def test_shuffle_draws_an_order_per_connection(monkeypatch):
    conf = Settings()
    conf.broker_failover_strategy = "shuffle"
    random.seed(7)
    orders = {tuple(_order(Nodes(f"{A};{B};{C}", conf, "test"))) for _ in range(30)}
    assert len(orders) > 1, "not always the listed order"
    assert all(sorted(order) == ["rabbit1", "rabbit2", "rabbit3"] for order in orders)


def test_first_answering_tries_each_node_once_from_the_current_one():
    nodes = Nodes(f"{A};{B};{C}", Settings(), "test")
    nodes.failed()  # now on rabbit2
    tried: list[str] = []

    def connect(params):
        tried.append(params.host)
        if params.host != "rabbit1":
            raise OSError("refused")
        return "connection"

    assert nodes.first_answering(connect) == "connection"
    assert tried == ["rabbit2", "rabbit3", "rabbit1"] and nodes.current.host == "rabbit1"
    tried.clear()
    with pytest.raises(OSError):
        Nodes(f"{B};{C}", Settings(), "test").first_answering(connect)
    assert tried == ["rabbit2", "rabbit3"]


def _order(nodes: Nodes) -> list[str]:
    hosts = []
    for _ in range(len(nodes)):
        hosts.append(nodes.current.host)
        nodes.failed()
    return hosts
