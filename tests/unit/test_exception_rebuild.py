"""A task's exception kept in its row and rebuilt (hutch.results.exceptions), without a
database: each case goes through the same encode/rebuild pair the worker and get() use."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from apps.tasks import CustomError, Formatted, NeedsTwo, Opaque
from hutch.errors import TaskFailure
from hutch.results.exceptions import encode_args, rebuild


class Coded(Exception):
    """Its ``__str__`` reads an attribute only its constructor sets."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code

    def __str__(self):
        return f"code {self.code}"


def round_trip(exc: BaseException) -> BaseException:
    name = type(exc).__qualname__ if type(exc).__module__ == "builtins" \
        else f"{type(exc).__module__}.{type(exc).__qualname__}"
    return rebuild(name, str(exc), encode_args(exc))


@pytest.mark.parametrize("exc", [
    ValueError("a", "b"), ValueError(), KeyError("missing"), OSError(2, "No such file"),
    CustomError("x", 1, (2, 3), {"k": [dt.date(2024, 3, 1)]}), NeedsTwo(404, "gone"),
    Coded(7), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
])
def test_an_exception_comes_back_with_its_type_args_and_message(exc):
    back = round_trip(exc)
    assert type(back) is type(exc) and back.args == exc.args and str(back) == str(exc)


def test_a_constructor_that_formats_its_arguments_is_not_called_again():
    back = round_trip(Formatted(404, "/x"))
    assert type(back) is Formatted and back.args == ("404 at /x",) and str(back) == "404 at /x"


@pytest.mark.parametrize("exc", [CustomError("bad", Opaque()), ValueError(math.nan)])
def test_arguments_json_cannot_hold_fall_back_to_the_message(exc):
    assert encode_args(exc) is None
    back = round_trip(exc)
    assert type(back) is type(exc) and back.args == (str(exc),)


def test_a_row_without_arguments_is_rebuilt_from_its_message():
    back = rebuild("builtins.ValueError", "bad value", None)
    assert type(back) is ValueError and back.args == ("bad value",)
    # the store's last resort keeps a value as text; an unreadable tag: the message again
    assert rebuild("builtins.ValueError", "m", "['a']").args == ("m",)
    assert rebuild("builtins.ValueError", "m", [{"__hutch__": "nope", "v": 1}]).args == ("m",)


def test_a_type_this_process_cannot_import_is_a_task_failure():
    for name in ("nowhere.Oops", "builtins.len", "apps.tasks.Opaque"):
        back = rebuild(name, "gone", ["gone"])
        assert isinstance(back, TaskFailure) and back.exc_type == name
