"""A task's exception as its row keeps it, and as ``get()`` and ``result`` rebuild it.

The row keeps the type's dotted name, ``str(exc)`` and, when JSON can hold them,
the arguments (``exc.args``, tagged as results are: hutch.serialization). The
exception is rebuilt from its arguments, as Celery does, so ``ValueError('a', 'b')``
comes back with both rather than as ``ValueError("('a', 'b')")``; from the message
where the arguments could not be kept. A type whose constructor does not take its
own ``args`` back (it formats them, or wants other parameters) is rebuilt without
calling it, so the caller still catches the type it raised.
"""

from __future__ import annotations

import builtins
import importlib
import json
from typing import Any

from .. import serialization
from ..errors import TaskFailure


def encode_args(exc: BaseException) -> list[Any] | None:
    """``exc.args`` as ``hutch_tasks.exception_args`` keeps them; None when JSON cannot
    hold them all (an object, a NaN), and the message stands in for them."""
    args: list[Any] | None = serialization.encode_args_for_row(list(exc.args))
    try:
        json.dumps(args, allow_nan=False)
    except ValueError:  # a NaN or an infinity: JSON columns refuse them
        return None
    return args


def rebuild(type_name: str | None, message: str | None, args: Any) -> BaseException:
    """The exception a row describes: its own type when this process can import it,
    else :class:`~hutch.errors.TaskFailure`.

    Tried in order, the first whose ``str()`` reads as recorded wins: the type called
    with the stored arguments, then with the message; then an instance made without
    its constructor, carrying the stored arguments (or the message) as ``args``.
    When none reads as recorded, the first that could be made is returned.
    """
    name = type_name or "Exception"
    text = message or ""
    exc_type = _import_type(name)
    if exc_type is None:
        return TaskFailure(name, text)
    stored = _decoded(args)
    made: list[BaseException] = []
    for values in ([stored] if stored is not None else []) + [(text,)]:
        exc = _construct(exc_type, values)
        if exc is None:
            continue
        if _reads(exc, text):
            return exc
        made.append(exc)
    bare = _bare(exc_type, stored if stored is not None else (text,))
    if bare is not None and (_reads(bare, text) or not made):
        return bare
    return made[0] if made else TaskFailure(name, text)


def _import_type(name: str) -> type[BaseException] | None:
    module_name, _, qualname = name.rpartition(".")
    try:
        found: Any = importlib.import_module(module_name) if module_name else builtins
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - any failure to import means: not importable here
        return None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _decoded(args: Any) -> tuple[Any, ...] | None:
    """The stored arguments, or None when there are none usable (an old row, a value
    kept as text by the store's last resort, a tag this process cannot read)."""
    if not isinstance(args, list):
        return None
    try:
        return tuple(serialization.from_primitive(args))
    except Exception:  # noqa: BLE001 - unreadable arguments: the message stands in
        return None


def _construct(exc_type: type[BaseException], values: tuple[Any, ...]) -> BaseException | None:
    try:
        return exc_type(*values)
    except Exception:  # noqa: BLE001 - a constructor that refuses these values
        return None


def _bare(exc_type: type[BaseException], values: tuple[Any, ...]) -> BaseException | None:
    """An instance of ``exc_type`` made without running its ``__init__``, as unpickling
    an exception whose constructor cannot be called with its ``args`` would need."""
    try:
        exc = exc_type.__new__(exc_type, *values)
        exc.args = values
    except Exception:  # noqa: BLE001 - a type that cannot be made this way either
        return None
    return exc


def _reads(exc: BaseException, text: str) -> bool:
    try:
        return str(exc) == text
    except Exception:  # noqa: BLE001 - a __str__ needing attributes __init__ would set
        return False
