import datetime as dt

import pytest

from hutch import Hutch
from hutch.config import Settings, mask_url, normalize_backend_url
from hutch.errors import ConfigurationError


def test_defaults_are_documented_values():
    conf = Settings()
    assert conf.task_default_queue == "celery"
    assert conf.timezone == "UTC"
    assert conf.accept_content == ("json", "msgpack", "yaml")
    assert conf.task_acks_late is True


def test_environment_overrides_keywords(monkeypatch):
    monkeypatch.setenv("HUTCH_BROKER_URL", "memory://from-env")
    monkeypatch.setenv("HUTCH_BACKEND_URL", "db+sqlite:///env.sqlite")
    monkeypatch.setenv("HUTCH_DEFAULT_QUEUE", "envq")
    monkeypatch.setenv("HUTCH_TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("HUTCH_LOG_LEVEL", "debug")
    monkeypatch.setenv("HUTCH_LOG_FORMAT", "json")
    monkeypatch.setenv("HUTCH_CONCURRENCY", "3")
    app = Hutch("t", broker="memory://kw", task_default_queue="kwq")
    assert app.conf.broker_url == "memory://from-env"
    assert app.conf.result_backend == "db+sqlite:///env.sqlite"
    assert app.conf.task_default_queue == "envq"
    assert app.conf.timezone == "Asia/Shanghai"
    assert app.conf.log_level == "DEBUG"
    assert app.conf.log_format == "json"
    assert app.conf.worker_concurrency == 3
    app.conf.task_default_queue = "later"
    assert app.conf.task_default_queue == "later"


@pytest.mark.parametrize("name, value, match", [
    ("timezone", "Mars/Base", "unknown time zone"),
    ("worker_pool", "gevent", "not one of"),
    ("broker_url", "redis://x", "not an amqp"),
    ("result_backend", "mysql://x", "not a sqlite"),
    ("worker_concurrency", 0, ">= 1"),
    ("accept_content", ["json", "xml"], "not one of"),
    ("accept_content", 5, "expected serializer names"),
    # structured settings get their whole shape checked when set
    ("beat_schedule", True, "expected a mapping of schedule name"),
    ("beat_schedule", {"a": {"task": "t.x"}}, "'schedule' is required"),
    ("beat_schedule", {"a": {"task": "t.x", "schedule": True}}, "expected a timedelta"),
    ("beat_schedule", {"a": {"task": "t.x", "schedule": 5, "args": 3}}, "args"),
    ("beat_schedule", {"a": 1}, "expected a mapping with 'task'"),
    ("task_queues", {"r": {"max_priority": 300}}, "1..255"),
    # and every other setting its declared type
    ("task_acks_late", "no", "expected True or False"),
    ("broker_heartbeat", -1, ">= 0"),
    ("broker_confirm_timeout", 0, "> 0"),
    ("task_default_queue", "", "non-empty string"),
    ("worker_state_db", 3, "non-empty string"),
])
def test_bad_values_are_refused_naming_the_setting(name, value, match):
    with pytest.raises(ConfigurationError, match=match) as info:
        setattr(Settings(), name, value)
    assert name in str(info.value)


def test_valid_structured_settings_are_kept_as_given():
    conf = Settings()
    schedule = {"a": {"task": "t.x", "schedule": dt.timedelta(seconds=5), "args": (1, 2)}}
    conf.beat_schedule = schedule
    assert conf.beat_schedule is schedule
    conf.worker_state_db, conf.broker_heartbeat = None, 0
    assert (conf.worker_state_db, conf.broker_heartbeat) == (None, 0)


def test_unknown_setting_is_refused():
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Hutch("t", broker="memory://", not_a_setting=1)


def test_bad_env_value_is_refused(monkeypatch):
    monkeypatch.setenv("HUTCH_CONCURRENCY", "many")
    with pytest.raises(ConfigurationError, match="whole number"):
        Hutch("t", broker="memory://")


def test_celery_style_urls():
    assert normalize_backend_url("db+sqlite:///r.sqlite") == "sqlite:///r.sqlite"
    assert normalize_backend_url("db+postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_backend_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"


def test_passwords_are_masked():
    assert mask_url("amqp://guest:secret@host:5672//") == "amqp://guest:***@host:5672//"
    with pytest.raises(ConfigurationError) as info:
        Settings().broker_url = "redis://u:topsecret@h"
    assert "topsecret" not in str(info.value)


def test_beat_and_result_expiry_settings(monkeypatch):
    conf = Settings()
    assert (conf.beat_poll_interval, conf.beat_lease_seconds, conf.result_expires,
            conf.result_cleanup_batch) == (1.0, 5.0, 86400.0, 1000)
    monkeypatch.setenv("HUTCH_RESULT_EXPIRES", "none")
    monkeypatch.setenv("HUTCH_BEAT_POLL_INTERVAL", "0.5")
    conf = Settings.build()
    assert conf.result_expires is None and conf.beat_poll_interval == 0.5
    conf.result_expires = dt.timedelta(hours=2)
    assert conf.result_expires == 7200.0
    with pytest.raises(ConfigurationError, match="beat_poll_interval: at most 5"):
        conf.beat_poll_interval = 30
    with pytest.raises(ConfigurationError, match="result_expires"):
        conf.result_expires = -1
