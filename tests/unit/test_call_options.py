"""Call options are checked where they are given: a value that cannot cross RabbitMQ (a
NaN or infinite header double closes the publishing connection) or makes no sense is
one ConfigurationError naming the option, before anything is published."""

import math

import pytest

from hutch import Hutch
from hutch.config import Settings
from hutch.errors import ConfigurationError
from hutch.options import build_message


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
