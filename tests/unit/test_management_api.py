"""The management API client without a network: the URLs it asks, the credentials it
sends, and the counts it reads from a queue object."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hutch.brokers.amqp.management import ManagementApi, counts_of
from hutch.brokers.amqp.params import parse_url
from hutch.brokers.base import QueueStats
from hutch.config import ConfigurationError, Settings


def api(management_url: str, broker_url: str = "amqp://ada:amqp-pw@mq:5672//") -> ManagementApi:
    return ManagementApi(management_url, parse_url(broker_url), timeout=2.0)


@pytest.mark.parametrize(("broker_url", "expected"), [
    ("amqp://u:p@mq//", "http://mq:15672/api/queues/%2F/hutch.celery"),
    ("amqp://u:p@mq/", "http://mq:15672/api/queues/%2F/hutch.celery"),
    ("amqp://u:p@mq/%2F", "http://mq:15672/api/queues/%2F/hutch.celery"),
    ("amqp://u:p@mq/hutch", "http://mq:15672/api/queues/hutch/hutch.celery"),
    ("amqp://u:p@mq/a%2Fb%20c", "http://mq:15672/api/queues/a%2Fb%20c/hutch.celery"),
])
def test_the_vhost_of_the_broker_url_is_percent_encoded(broker_url, expected):
    assert api("http://mq:15672/", broker_url).queue_url("hutch.celery") == expected


def test_queue_names_are_encoded_and_a_path_prefix_is_kept():
    client = api("https://guest:guest@proxy.example:8443/rabbitmq/")
    assert client.queue_url("odd/name #1") == \
        "https://proxy.example:8443/rabbitmq/api/queues/%2F/odd%2Fname%20%231"


def test_credentials_leave_the_url_for_basic_auth_and_default_to_the_brokers():
    client = api("http://mon%40ops:p%3Ass@mq:15672/")
    assert (client.base, client.auth) == ("http://mq:15672", ("mon@ops", "p:ss"))
    assert api("http://mq:15672").auth == ("ada", "amqp-pw")
    assert "amqp-pw" not in repr(api("http://mq:15672"))


@pytest.mark.parametrize(("body", "expected"), [
    ({"name": "q", "messages_ready": 3, "messages_unacknowledged": 2, "consumers": 1},
     QueueStats(ready=3, unacked=2, consumers=1)),
    ({"name": "q", "consumers": 0}, None),  # declared moments ago: no counts yet
    ({"messages_ready": 3, "messages_unacknowledged": True, "consumers": 1}, None),
    ({"messages_ready": -1, "messages_unacknowledged": 0, "consumers": 0}, None),
    ([], None),
    ({"name": "q", "state": "down", "messages_ready": 3, "messages_unacknowledged": 0,
      "consumers": 0}, None),  # its node is down: the passive declare names it
])
def test_counts_are_read_only_when_all_are_there(body, expected):
    assert counts_of(body) == expected


@pytest.mark.parametrize("value", ["amqp://u:pw@mq//", "http://", "http://mq:port/", 15672])
def test_the_setting_must_be_an_http_url_and_its_password_is_masked(value):
    with pytest.raises(ConfigurationError, match="broker_management_url") as err:
        Settings(broker_management_url=value)
    assert "pw@" not in str(err.value)


def test_the_setting_is_read_from_the_environment_and_shown_masked(monkeypatch):
    monkeypatch.setenv("HUTCH_BROKER_MANAGEMENT_URL", "http://mon:s3cret@mq:15672/")
    conf = Settings.build()
    assert conf.broker_management_url == "http://mon:s3cret@mq:15672/"
    assert conf.masked()["broker_management_url"] == "http://mon:***@mq:15672/"
    assert Settings().broker_management_url is None


def test_importing_hutch_does_not_import_httpx():
    code = "import sys, hutch, hutch.brokers.amqp.broker; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
