"""Stamping: labels put on every task of a workflow, as Celery 5.3's stamping API.

``sig.stamp(visitor=None, append_stamps=False, **stamps)`` walks a signature (a
chain's steps, a group's members, a chord's header and body, and each one's
``link``/``link_error`` callbacks) and stores the stamps in each signature's
``stamps`` option, so they travel in every task message that the workflow sends
(the ``stamps`` header, docs/protocol.md) and land in ``self.request.stamps`` and in
``hutch_tasks.stamps``. A :class:`StampingVisitor` picks the stamps per place: its
methods return a dict of stamps to add there, and what a composite's visit returns
goes to everything inside it. ``app.control.revoke_by_stamped_headers`` refuses the
tasks carrying a stamp. docs/workflows.md ("Stamping") has examples.

Precedence, when a name is stamped twice: the visitor's value for this place beats
the stamps passed down, which beat what the signature carried before; with
``append_stamps=True`` the values are kept together instead, as a list (old first,
no value twice).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, cast

from ..envelope import stamp_values
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .canvas import Signature, chain, chord, group

Stamps = dict[str, Any]

STAMPED_HEADERS = "stamped_headers"
"""A key a visitor may return (Celery's): only the names it lists are stamps."""


class StampingVisitor(ABC):
    """Decides the stamps of each place in a workflow; subclass it and write
    :meth:`on_signature` (every task signature), and the others where a composite or a
    callback should add stamps of its own. Each method gets the place and the stamps
    passed down to it (``**headers``) and returns the stamps to add (a dict, may be
    empty); the ``*_end`` methods only observe. The place is a positional-only
    argument here, so a stamp may have any name (an override that names it keeps it
    from being a stamp's name)."""

    @abstractmethod
    def on_signature(self, sig: Signature, /, **headers: Any) -> Stamps:
        """Stamps for one task signature (also a callback's, and a ``chunks``
        signature, whose stamps go to each of its chunk tasks)."""

    def on_group_start(self, group: group, /, **headers: Any) -> Stamps:
        """Stamps for a group, given to every member."""
        return {}

    def on_group_end(self, group: group, /, **headers: Any) -> None:
        """Called once every member of ``group`` is stamped."""
        return None

    def on_chain_start(self, chain: chain, /, **headers: Any) -> Stamps:
        """Stamps for a chain, given to every step."""
        return {}

    def on_chain_end(self, chain: chain, /, **headers: Any) -> None:
        """Called once every step of ``chain`` is stamped."""
        return None

    def on_chord_header_start(self, sig: chord, /, **headers: Any) -> Stamps:
        """Stamps for a chord, given to its header's tasks and its body; by default
        those of :meth:`on_group_start` for the header group (as Celery)."""
        return self.on_group_start(sig.header, **headers)

    def on_chord_header_end(self, sig: chord, /, **headers: Any) -> None:
        """Called once the header is stamped; by default :meth:`on_group_end`."""
        self.on_group_end(sig.header, **headers)

    def on_chord_body(self, sig: chord, /, **headers: Any) -> Stamps:
        """Stamps for a chord's body only."""
        return {}

    def on_callback(self, callback: Signature, /, **headers: Any) -> Stamps:
        """Stamps for a ``link`` callback only (it is stamped as a signature too)."""
        return {}

    def on_errback(self, errback: Signature, /, **headers: Any) -> Stamps:
        """Stamps for a ``link_error`` errback only (it is stamped as a signature too)."""
        return {}


def stamp(sig: Signature, visitor: StampingVisitor | None = None,
          append_stamps: bool = False, headers: Mapping[str, Any] | None = None) -> None:
    """Stamp ``sig`` and everything in it with ``headers`` and the visitor's stamps."""
    given = _checked(dict(headers or {}), "stamp()")
    kind = sig.subtask_type  # canvas.py calls this module: it dispatches by kind
    if kind == "chain":
        _stamp_chain(cast("chain", sig), visitor, append_stamps, given)
    elif kind == "chord":
        _stamp_chord(cast("chord", sig), visitor, append_stamps, given)
    elif kind == "group":
        _stamp_group(cast("group", sig), visitor, append_stamps, given)
    else:
        _stamp_links(sig, visitor, append_stamps, given)
        found = visitor.on_signature(sig, **given) if visitor is not None else None
        _record(sig, _merged(given, _returned(found, "on_signature"), append_stamps),
                append_stamps)


def _stamp_chain(sig: chain, visitor: StampingVisitor | None, append: bool,
                 given: Stamps) -> None:
    _stamp_steps(sig, visitor, append, given, "on_chain_start", "on_chain_end")


def _stamp_group(sig: group, visitor: StampingVisitor | None, append: bool,
                 given: Stamps) -> None:
    _stamp_steps(sig, visitor, append, given, "on_group_start", "on_group_end")


def _stamp_steps(sig: chain | group, visitor: StampingVisitor | None, append: bool,
                 given: Stamps, start: str, end: str) -> None:
    """A chain's or a group's stamps, its links', then each of its tasks', between the
    visitor's ``start`` and ``end`` calls (the two differ only in those names)."""
    found = getattr(visitor, start)(sig, **given) if visitor is not None else None
    stamps = _merged(given, _returned(found, start), append)
    _record(sig, stamps, append)
    _stamp_links(sig, visitor, append, stamps)
    for step in sig.tasks:
        stamp(step, visitor, append, stamps)
    if visitor is not None:
        getattr(visitor, end)(sig, **stamps)


def _stamp_chord(sig: chord, visitor: StampingVisitor | None, append: bool,
                 given: Stamps) -> None:
    found = visitor.on_chord_header_start(sig, **given) if visitor is not None else None
    stamps = _merged(given, _returned(found, "on_chord_header_start"), append)
    _record(sig, stamps, append)
    _record(sig.header, stamps, append)
    _stamp_links(sig, visitor, append, stamps)
    for member in sig.header.tasks:
        stamp(member, visitor, append, stamps)
    if visitor is None:
        stamp(sig.body, None, append, stamps)
        return
    visitor.on_chord_header_end(sig, **stamps)
    body = _returned(visitor.on_chord_body(sig, **stamps), "on_chord_body")
    stamp(sig.body, visitor, append, _merged(stamps, body, append))


def _stamp_links(sig: Signature, visitor: StampingVisitor | None, append: bool,
                 given: Stamps) -> None:
    """Each callback gets ``given`` and ``on_callback``'s stamps, each errback
    ``on_errback``'s (not the stamps the linking signature carried before)."""
    for option, method in (("link", "on_callback"), ("link_error", "on_errback")):
        linked = _as_list(sig.options.get(option))
        if not linked:
            continue
        stamped = []
        for item in linked:
            callback = sig.from_dict(item, sig.app)
            found = getattr(visitor, method)(callback, **given) if visitor is not None else None
            stamp(callback, visitor, append, _merged(given, _returned(found, method), append))
            stamped.append(callback)
        sig.options[option] = stamped


def _returned(found: Any, method: str) -> Stamps:
    """What a visitor method returned, as stamps: a dict (None: none), only the names
    its ``stamped_headers`` lists when it has that key."""
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ConfigurationError(f"stamps: StampingVisitor.{method} must return a dict, "
                                 f"got {found!r}")
    names = found.get(STAMPED_HEADERS)
    if names is None:
        return _checked(found, method)
    return _checked({name: found[name] for name in _as_list(names) if name in found}, method)


def _checked(stamps: Stamps, where: str) -> Stamps:
    stamps.pop(STAMPED_HEADERS, None)
    try:
        return stamp_values(stamps)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"stamps from {where}: {exc}") from None


def _record(sig: Signature, stamps: Stamps, append: bool) -> None:
    if stamps:
        sig.options["stamps"] = _merged(dict(sig.options.get("stamps") or {}), stamps, append)


def _merged(old: Stamps, new: Stamps, append: bool) -> Stamps:
    """``old`` with ``new`` over it, or beside it (``append``: a list of both)."""
    out = dict(old)
    for name, value in new.items():
        if append and name in out and out[name] != value:
            kept = _as_list(out[name])
            out[name] = kept + [v for v in _as_list(value) if v not in kept]
        else:
            out[name] = value
    return out


def _as_list(value: Any) -> list[Any]:
    """canvas.as_list, which this module cannot import (canvas.py imports it)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
