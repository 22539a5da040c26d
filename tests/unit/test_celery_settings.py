"""Celery's setting names, old and new, work wherever hutch takes settings (mapped,
warned about once) or are refused with the reason; config_from_object/_envvar read
them from modules, objects and Django-style namespaces (docs/celery.md)."""

from __future__ import annotations

import datetime as dt
import uuid
import warnings

import pytest

from hutch import Hutch, celery_names
from hutch.config import SETTING_NAMES
from hutch.errors import CeleryNameWarning, ConfigurationError

SCHEDULE = {"tick": {"task": "tasks.add", "schedule": 30.0, "args": (1, 2)}}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test starts as a new process would: no name warned about yet."""
    monkeypatch.setattr(celery_names, "_WARNED", set())


def _app(**settings) -> Hutch:
    return Hutch("celery_names_test", broker="memory://", **settings)


def _warnings_of(make):
    """What ``make()`` returns, and the CeleryNameWarning messages it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = make()
    return made, [str(w.message) for w in caught if w.category is CeleryNameWarning]


OLD_STYLE = {
    "BROKER_URL": ("broker_url", "memory://old"),
    "CELERY_RESULT_BACKEND": ("result_backend", "sqlite:///old.sqlite"),
    "CELERYBEAT_SCHEDULE": ("beat_schedule", SCHEDULE),
    "CELERY_TIMEZONE": ("timezone", "Europe/Paris"),
    "CELERY_ACKS_LATE": ("task_acks_late", False),
    "CELERYD_PREFETCH_MULTIPLIER": ("worker_prefetch_multiplier", 1),
    "CELERY_DEFAULT_QUEUE": ("task_default_queue", "jobs"),
    "CELERY_TASK_SERIALIZER": ("task_serializer", "msgpack"),
    "CELERY_TASK_RESULT_EXPIRES": ("result_expires", 3600.0),
    "CELERYD_CONCURRENCY": ("worker_concurrency", 3),
    "CELERY_SEND_EVENTS": ("worker_send_task_events", False),
    "CELERY_ALWAYS_EAGER": ("task_always_eager", True),
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": ("task_eager_propagates", True),
}


def test_celery_old_upper_case_names_set_hutch_settings_and_warn_with_the_hutch_name():
    app, messages = _warnings_of(lambda: Hutch(
        "old", **{old: value for old, (_, value) in OLD_STYLE.items()}))
    for old, (name, value) in OLD_STYLE.items():
        assert getattr(app.conf, name) == value, old
    assert len(messages) == len(OLD_STYLE)
    for old, (name, _) in OLD_STYLE.items():
        assert f"{old} is Celery's name for hutch's setting {name!r}" in "\n".join(messages)


def test_each_name_warns_once_per_process_wherever_it_is_given():
    first, messages = _warnings_of(lambda: _app(CELERY_TIMEZONE="Asia/Tokyo"))
    assert len(messages) == 1
    second, again = _warnings_of(lambda: _app(CELERY_TIMEZONE="Europe/Oslo"))
    _, assigned = _warnings_of(lambda: setattr(first.conf, "CELERY_TIMEZONE", "UTC"))
    assert again == [] and assigned == []
    assert (first.conf.timezone, second.conf.timezone) == ("UTC", "Europe/Oslo")


def test_the_warning_points_at_the_callers_line_not_inside_hutch():
    with pytest.warns(CeleryNameWarning) as record:
        _app(CELERY_DEFAULT_QUEUE="here")
    assert record[0].filename == __file__


def test_celery_lower_case_names_are_hutch_settings_and_do_not_warn():
    app, messages = _warnings_of(lambda: _app(
        result_backend="db+sqlite:///new.sqlite", task_acks_late=False, timezone="Asia/Tokyo",
        worker_prefetch_multiplier=4, task_default_queue="q", task_serializer="json",
        result_expires=dt.timedelta(hours=2), beat_schedule=SCHEDULE))
    assert messages == []
    assert (app.conf.result_expires, app.conf.task_acks_late) == (7200.0, False)


def test_celery_names_for_differently_named_hutch_settings_map_and_warn():
    app, messages = _warnings_of(lambda: _app(database_url="sqlite:///db.sqlite",
                                              beat_max_loop_interval=2))
    assert (app.conf.result_backend, app.conf.beat_poll_interval) == ("sqlite:///db.sqlite", 2.0)
    assert any("database_url" in m and "'result_backend'" in m for m in messages)


def test_conf_update_and_assignment_take_celery_names_and_a_mapping():
    app = _app()
    _, messages = _warnings_of(lambda: app.conf.update({"CELERY_IGNORE_RESULT": True},
                                                       CELERY_TIMEZONE="Asia/Tokyo"))
    assert len(messages) == 2 and "'task_ignore_result'" in messages[0]
    with pytest.warns(CeleryNameWarning, match="'worker_pool'"):
        app.conf.CELERYD_POOL = "threads"
    assert (app.conf.task_ignore_result, app.conf.timezone, app.conf.worker_pool) == \
        (True, "Asia/Tokyo", "threads")
    assert app.conf.source_of("worker_pool") == "app"


@pytest.mark.filterwarnings("ignore::hutch.errors.CeleryNameWarning")
@pytest.mark.parametrize(("settings", "reason"), [
    ({"result_backend": "rpc://"}, "results live in SQL in hutch; use result_backend="
                                   "'postgresql://...' or 'sqlite:///...'"),
    ({"backend": "amqp"}, "results live in SQL in hutch"),
    ({"CELERY_RESULT_BACKEND": "redis://localhost/0"}, "results live in SQL in hutch"),
    ({"worker_pool": "eventlet"}, "use worker_pool='threads' or 'asyncio'"),
    ({"CELERYD_POOL": "processes"}, "use worker_pool='prefork'"),
    ({"CELERY_RESULT_PERSISTENT": True}, "CELERY_RESULT_PERSISTENT (Celery's result_persistent)"),
    ({"task_time_limit": 30}, "set it per task: @app.task(time_limit=...)"),
    ({"enable_utc": False}, "hutch stores times timezone-aware (UTC)"),
    ({"result_extended": True}, "always on in hutch"),
    ({"worker_autoscaler": "x:Y"}, "worker_autoscale='MAX,MIN'"),
])
def test_names_and_values_hutch_has_no_meaning_for_are_refused_with_the_reason(settings, reason):
    with pytest.raises(ConfigurationError, match="not supported by hutch") as caught:
        Hutch("refused", **{"broker": "memory://", **settings})
    assert reason in str(caught.value)


def test_a_refused_name_is_refused_on_assignment_too_and_nothing_changes():
    app = _app()
    with pytest.raises(ConfigurationError, match="task_soft_time_limit"):
        app.conf.CELERYD_TASK_SOFT_TIME_LIMIT = 10
    with pytest.raises(ConfigurationError, match="results live in SQL"):
        app.conf.result_backend = "rpc://"
    assert app.conf.result_backend == "sqlite:///hutch.sqlite"


def test_celery_settings_hutch_is_still_adding_say_so_and_unknown_names_stay_unknown():
    for name in sorted(celery_names.PLANNED):  # empty once issue #15 has added them all
        with pytest.raises(ConfigurationError, match=f"{name}: Celery's setting, not in this "
                                                     f"version"):
            _app(**{name: 1})
    with pytest.raises(ConfigurationError, match="unknown setting 'brokr_url'"):
        _app(brokr_url="memory://")


def test_the_tables_point_only_at_hutch_settings_celery_entries_or_planned_ones():
    for old, current in celery_names.OLD_NAMES.items():
        assert current in SETTING_NAMES or current in celery_names.CELERY_NAMES \
            or current in celery_names.PLANNED, old
    for current, target in celery_names.CELERY_NAMES.items():
        assert current not in SETTING_NAMES, current  # a hutch setting needs no entry
        assert isinstance(target, celery_names.Refused) or target in SETTING_NAMES, current


# -- config_from_object / config_from_envvar --------------------------------------------

def _settings_module(tmp_path, monkeypatch, body: str) -> str:
    name = f"celery_settings_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


MODULE = """
import os
from datetime import timedelta

DEBUG = True
broker_url = "memory://from-module"
CELERY_TIMEZONE = "Asia/Tokyo"
result_expires = timedelta(minutes=5)
_private = "ignored"
"""


def test_config_from_object_reads_the_settings_of_a_module_path(tmp_path, monkeypatch):
    app = _app()
    with pytest.warns(CeleryNameWarning, match="CELERY_TIMEZONE"):
        app.config_from_object(_settings_module(tmp_path, monkeypatch, MODULE))
    assert (app.conf.broker_url, app.conf.timezone, app.conf.result_expires) == \
        ("memory://from-module", "Asia/Tokyo", 300.0)


def test_config_from_object_reads_objects_classes_and_mappings():
    class Config:
        task_default_queue = "from-class"
        worker_concurrency = 2
        helper = staticmethod(len)

        @property
        def not_a_setting(self):
            raise AssertionError("only settings are read")

    app = _app()
    app.config_from_object(Config)
    app.config_from_object(Config())
    assert (app.conf.task_default_queue, app.conf.worker_concurrency) == ("from-class", 2)
    app.config_from_object({"task_default_queue": "from-dict", "NOT_A_SETTING": 1})
    assert app.conf.task_default_queue == "from-dict"


def test_config_from_object_refuses_a_refused_name_naming_it():
    with pytest.raises(ConfigurationError, match=r"config_from_object: CELERY_RESULT_PERSISTENT "
                                                 r"\(Celery's result_persistent\): not supported"):
        _app().config_from_object({"CELERY_RESULT_PERSISTENT": True})
    with pytest.raises(ConfigurationError, match="result_backend: 'rpc' is not supported"):
        _app().config_from_object({"result_backend": "rpc://"})


DJANGO_STYLE = """
class Settings:
    DEBUG = False
    TIME_ZONE = "Europe/Paris"
    BROKER_URL = "memory://not-in-the-namespace"
    CELERY_BROKER_URL = "memory://django"
    CELERY_TASK_DEFAULT_QUEUE = "django-q"
    CELERY_BEAT_SCHEDULE = {"tick": {"task": "tasks.add", "schedule": 30.0}}
    CELERY_ACKS_LATE = False

settings = Settings()
"""


def test_namespace_reads_only_prefixed_names_django_style_from_module_attr(tmp_path,
                                                                           monkeypatch):
    module = _settings_module(tmp_path, monkeypatch, DJANGO_STYLE)
    app = _app()
    _, messages = _warnings_of(lambda: app.config_from_object(f"{module}:settings",
                                                              namespace="CELERY"))
    assert app.conf.broker_url == "memory://django"
    assert (app.conf.task_default_queue, app.conf.task_acks_late) == ("django-q", False)
    assert list(app.conf.beat_schedule) == ["tick"]
    assert app.conf.timezone == "UTC"  # TIME_ZONE is Django's, outside the namespace
    assert len(messages) == 1 and "CELERY_ACKS_LATE" in messages[0]  # the rest are current


def test_an_unknown_name_under_the_namespace_is_refused_clearly():
    with pytest.raises(ConfigurationError, match="config_from_object: CELERY_BROKR_URL: "
                                                 "unknown setting 'brokr_url'"):
        _app().config_from_object({"CELERY_BROKR_URL": "memory://"}, namespace="CELERY")


def test_the_config_file_and_hutch_variables_still_override_config_from_object(monkeypatch):
    monkeypatch.setenv("HUTCH_DEFAULT_QUEUE", "ops-choice")
    app = _app()
    app.config_from_object({"task_default_queue": "code", "task_serializer": "msgpack"})
    assert (app.conf.task_default_queue, app.conf.task_serializer) == ("ops-choice", "msgpack")
    assert app.conf.source_of("task_default_queue") == "env HUTCH_DEFAULT_QUEUE"


@pytest.mark.parametrize(("path", "message"), [
    ("no_such_module_for_hutch", "cannot import 'no_such_module_for_hutch' "
                                 "(ModuleNotFoundError"),
    ("json:no_such_settings", "'json' has no attribute 'no_such_settings'"),
])
def test_config_from_object_says_what_it_could_not_import(path, message):
    with pytest.raises(ConfigurationError) as caught:
        _app().config_from_object(path)
    assert message in str(caught.value)


def test_config_from_envvar_reads_the_module_the_variable_names(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJ_SETTINGS", _settings_module(tmp_path, monkeypatch, MODULE))
    app = _app()
    with pytest.warns(CeleryNameWarning, match="CELERY_TIMEZONE"):
        app.config_from_envvar("PROJ_SETTINGS")
    assert app.conf.broker_url == "memory://from-module"


def test_config_from_envvar_with_the_variable_unset_says_so(monkeypatch):
    monkeypatch.delenv("PROJ_SETTINGS_UNSET", raising=False)
    with pytest.raises(ConfigurationError, match="the environment variable "
                                                 "PROJ_SETTINGS_UNSET is not set"):
        _app().config_from_envvar("PROJ_SETTINGS_UNSET")


def test_silent_loading_returns_false_instead_of_raising_and_true_when_it_read(monkeypatch):
    monkeypatch.delenv("PROJ_SETTINGS_UNSET", raising=False)
    app = _app()
    assert app.config_from_envvar("PROJ_SETTINGS_UNSET", silent=True) is False
    assert app.config_from_object("no_such_module_for_hutch", silent=True) is False
    assert app.config_from_object({"task_default_queue": "read"}, force=True) is True
    assert app.conf.task_default_queue == "read"


def test_a_flag_given_a_celery_name_records_it_under_the_hutch_setting():
    app = _app()
    with pytest.warns(CeleryNameWarning):
        app.conf.set_from("flag --queue", CELERY_DEFAULT_QUEUE="flagged")
    assert app.conf.source_of("task_default_queue") == "flag --queue"
