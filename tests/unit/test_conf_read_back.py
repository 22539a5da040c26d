"""Celery's setting names read back from ``app.conf`` give hutch's values, with the same
once-per-name CeleryNameWarning as when they are set; refused names say why."""

from __future__ import annotations

import uuid
import warnings

import pytest

from hutch import Hutch
from hutch import celery_names as names
from hutch.errors import CeleryNameWarning, ConfigurationError, NoSuchSetting


@pytest.fixture
def app():
    return Hutch("read_back", broker="memory://", timezone="Europe/Paris",
                 task_serializer="msgpack")


def test_old_and_current_celery_names_read_the_hutch_value_and_warn_once(app, monkeypatch):
    monkeypatch.setattr(names, "_WARNED", set())
    with pytest.warns(CeleryNameWarning, match="CELERY_TIMEZONE is Celery's name for "
                                               "hutch's setting 'timezone'") as caught:
        assert app.conf.CELERY_TIMEZONE == "Europe/Paris"
    assert caught[0].filename == __file__  # points at the line that read it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert app.conf.CELERY_TIMEZONE == "Europe/Paris"  # once per name
        assert app.conf.task_serializer == "msgpack"  # hutch's own name: no warning
    with pytest.warns(CeleryNameWarning, match="database_url"):
        assert app.conf.database_url == app.conf.result_backend
    with pytest.warns(CeleryNameWarning, match="CELERY_ROUTES"):
        assert app.conf.CELERY_ROUTES is None


def test_refused_names_raise_the_reason_and_unknown_ones_are_attribute_errors(app):
    with pytest.raises(NoSuchSetting, match=r"app.conf.CELERY_TRACK_STARTED: "
                                            r"CELERY_TRACK_STARTED \(Celery's "
                                            r"task_track_started\): not supported by hutch: "
                                            r"always on"):
        _ = app.conf.CELERY_TRACK_STARTED
    with pytest.raises(AttributeError, match="unknown setting 'brokr_url'"):
        _ = app.conf.brokr_url
    assert getattr(app.conf, "brokr_url", "fallback") == "fallback"
    assert isinstance(NoSuchSetting("x"), ConfigurationError)


def test_mapping_style_reads_as_celerys_conf(app, monkeypatch):
    monkeypatch.setattr(names, "_WARNED", set())
    assert app.conf["task_serializer"] == "msgpack"
    with pytest.warns(CeleryNameWarning):
        assert app.conf["CELERY_TASK_SERIALIZER"] == "msgpack"
    with pytest.raises(KeyError):
        _ = app.conf["no_such_setting"]
    assert app.conf.get("no_such_setting", 5) == 5
    assert app.conf.get("timezone") == "Europe/Paris"
    with pytest.raises(NoSuchSetting, match="not supported by hutch"):
        app.conf.get("broker_pool_limit")


def test_a_name_set_under_celerys_name_reads_back_under_both(monkeypatch):
    monkeypatch.setattr(names, "_WARNED", set())
    with pytest.warns(CeleryNameWarning):
        app = Hutch(f"rb{uuid.uuid4().hex[:6]}", broker="memory://",
                    CELERY_CREATE_MISSING_QUEUES=False)
    assert app.conf.task_create_missing_queues is False
    assert app.conf.CELERY_CREATE_MISSING_QUEUES is False
