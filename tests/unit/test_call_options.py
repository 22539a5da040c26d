"""Call options are checked where they are given: a value that cannot cross RabbitMQ (a
NaN or infinite header double closes the publishing connection) or makes no sense is
one ConfigurationError naming the option, before anything is published."""

import math

import pytest

from hutch import Hutch
from hutch.call_options import build_message
from hutch.config import Settings
from hutch.errors import ConfigurationError, InvalidTimeLimits


@pytest.mark.parametrize("option, value", [
    ("time_limit", math.nan), ("time_limit", math.inf), ("time_limit", 0),
    ("soft_time_limit", -1.5), ("soft_time_limit", True), ("soft_time_limit", "10"),
    ("countdown", math.nan), ("countdown", -math.inf), ("countdown", "3"),
    ("expires", math.inf), ("expires", math.nan),
])
def test_bad_seconds_are_refused_naming_the_option(option, value):
    with pytest.raises(ConfigurationError, match=f"^{option}: expected"):
        build_message("t.x", (), {}, {option: value}, Settings())


def test_good_seconds_are_kept():
    message = build_message("t.x", (), {}, {"time_limit": 2, "soft_time_limit": 1.5,
                                            "countdown": 0, "expires": 60}, Settings())
    assert (message.time_limit, message.soft_time_limit) == (2.0, 1.5)
    assert message.eta is not None and message.expires > message.eta


def test_a_task_declared_with_a_bad_time_limit_fails_at_import():
    app = Hutch("opts", broker="memory://")
    def f():
        return None

    with pytest.raises(ConfigurationError, match=r"^@app.task \S*\.f: time_limit: expected a number"):
        app.task(time_limit=math.nan)(f)


def test_a_task_declared_with_a_soft_limit_not_shorter_than_its_hard_one_fails_at_import():
    app = Hutch("opts", broker="memory://")

    def f():
        return None

    for soft, hard in ((2, 1), (1, 1)):
        with pytest.raises(InvalidTimeLimits, match=rf"^@app.task \S*\.f: soft_time_limit={soft} s "
                                                    rf"must be shorter than time_limit={hard} s"):
            app.task(soft_time_limit=soft, time_limit=hard)(f)
    assert app.task(soft_time_limit=1, time_limit=2)(f).options.soft_time_limit == 1


def test_a_call_with_a_soft_limit_not_shorter_than_its_hard_one_is_refused():
    app = Hutch("opts", broker="memory://")
    soft_only = app.task(name="t.soft", soft_time_limit=5)(lambda: None)
    hard_only = app.task(name="t.hard", time_limit=3)(lambda: None)
    refused = [
        (app.task(name="t.free")(lambda: None), {"soft_time_limit": 2, "time_limit": 1}),
        (soft_only, {"time_limit": 5}),        # per call against the task's soft limit
        (hard_only, {"soft_time_limit": 4.5}),  # per call against the task's hard limit
    ]
    for task, options in refused:
        soft, hard = options.get("soft_time_limit", 5), options.get("time_limit", 3)
        with pytest.raises(InvalidTimeLimits, match=rf"^{task.name}: soft_time_limit={soft:g} s "
                                                    rf"must be shorter than time_limit={hard:g} s"):
            task.apply_async(**options)
    assert issubclass(InvalidTimeLimits, ConfigurationError)
    options = app.tasks["t.hard"].options
    message = build_message("t.hard", (), {}, {"soft_time_limit": 2}, Settings(), options)
    assert (message.soft_time_limit, message.time_limit) == (2.0, 3.0)
