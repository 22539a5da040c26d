"""Passwords never show: every representation of settings, objects and errors that hold
known passwords is searched for them (issue #10, item 9)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import pprint

import pytest
import structlog

from hutch import Hutch
from hutch import logs as hutch_logs
from hutch.brokers.amqp.broker import AmqpBroker
from hutch.brokers.amqp.params import parse_url
from hutch.config import Settings, mask_secrets
from hutch.errors import HutchError
from hutch.results.store import ResultStore

BROKER_PASSWORD = "Br0ker-pw%21x"
DB_PASSWORD = "Db-s3cret_pw"
PARAM_PASSWORD = "Query-pw-9"
SECRETS = (BROKER_PASSWORD, DB_PASSWORD, PARAM_PASSWORD, "Br0ker-pw!x")

# Port 1 refuses at once: errors are produced without any server.
BROKER = f"amqp://alice:{BROKER_PASSWORD}@127.0.0.1:1/vh"
BACKEND = f"postgresql://bob:{DB_PASSWORD}@127.0.0.1:1/db?sslmode=disable&password={PARAM_PASSWORD}"


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{leaked} in {text!r}"


@pytest.fixture
def conf() -> Settings:
    return Settings.build(
        BROKER, BACKEND, beat_schedule={"ping": {"task": "t.ping", "schedule": 5,
                                                 "args": [f"amqp://x:{BROKER_PASSWORD}@h//"]}})


def test_every_representation_of_settings_is_masked(conf):
    shown = [repr(conf), str(conf), f"{conf}", f"{conf!r}", "%s %r" % (conf, conf),  # noqa: UP031 - the old spelling too
             pprint.pformat(conf), pprint.pformat([conf, {"conf": conf}]),
             repr(copy.copy(conf)), repr(dataclasses.replace(conf)),
             json.dumps(conf.masked()), repr(conf.masked())]
    for text in shown:
        assert_no_secret(text)
    assert "alice:***@127.0.0.1:1/vh" in repr(conf)
    assert f"password={PARAM_PASSWORD}" not in repr(conf) and "password=***" in repr(conf)
    # The values themselves are untouched: masking is for display only.
    assert conf.broker_url == BROKER and conf.result_backend == BACKEND


def test_objects_holding_the_urls_are_masked(conf):
    app = Hutch("secrets", broker=BROKER, backend=BACKEND)
    try:
        store = ResultStore(BACKEND)
        broker = AmqpBroker(BROKER, conf)
        for obj in (app, app.conf, store, broker, parse_url(BROKER)):
            assert_no_secret(repr(obj))
            assert_no_secret(str(obj))
    finally:
        app.close()


@pytest.mark.parametrize("broker_url", [
    BROKER, f"amqp://alice:{BROKER_PASSWORD}@127.0.0.1:1//;amqp://alice:{BROKER_PASSWORD}@127.0.0.1:2//"])
def test_errors_from_unreachable_servers_are_masked(broker_url):
    app = Hutch("secrets", broker=broker_url, backend=BACKEND, broker_connection_timeout=1.0)
    try:
        with pytest.raises(HutchError) as broker_error:
            app.client().submit("t.ping", retry=False)
        with pytest.raises(HutchError) as store_error:
            app.client().store.count()
    finally:
        app.close()
    for error in (broker_error.value, store_error.value):
        assert_no_secret(str(error))
        assert_no_secret(repr(error))
    assert "alice:***@" in str(broker_error.value)


@pytest.mark.parametrize("setting, value", [
    ("broker_url", f"redis://alice:{BROKER_PASSWORD}@h//"),
    ("broker_url", f"amqp://alice:{BROKER_PASSWORD}@[::1//"),
    ("result_backend", f"mysql://bob:{DB_PASSWORD}@h/db"),
    ("result_backend", f"postgresql://bob:{DB_PASSWORD}@[::1/db"),
])
def test_configuration_errors_are_masked(setting, value):
    with pytest.raises(HutchError) as error:
        Hutch("secrets", **{"broker" if setting == "broker_url" else "backend": value})
        parse_url(value)
    assert_no_secret(str(error.value))


def test_log_lines_mask_passwords_whatever_logged_them(conf, capsys):
    hutch_logs.configure("INFO", "json")
    try:
        structlog.get_logger("test").warning("connecting", url=BROKER, settings=conf,
                                             note=f"dsn host=h password={DB_PASSWORD}")
        logging.getLogger("someone.else").error("failed for %s", BACKEND)
    finally:
        logging.getLogger().handlers[:] = [logging.StreamHandler(io.StringIO())]
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "connecting" in err and "failed for" in err
    assert_no_secret(err)


@pytest.mark.parametrize("text, masked", [
    ("amqp://u:p@h//;amqp://u:p2@h2//", "amqp://u:***@h//;amqp://u:***@h2//"),
    ("postgresql://u:pw@h/db?sslmode=require&password=x&a=b",
     "postgresql://u:***@h/db?sslmode=require&password=***&a=b"),
    ("host=h password=secret dbname=d", "host=h password=*** dbname=d"),
    ("amqp://guest:guest@localhost:5672//", "amqp://guest:***@localhost:5672//"),
    ("amqp://h//", "amqp://h//"),
    ("http://host:8080/path", "http://host:8080/path"),
    ("passport=1", "passport=1"),
])
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked
