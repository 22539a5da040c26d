"""Signatures: a task call packed up to be sent later, by name, with no I/O here.

A signature names its task by string, so it can travel inside a message and be
applied by a worker that imports the task while the sender never did.
Workflow primitives (chain, group, chord, map, starmap, chunks) build on this
class in a later issue.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .current import current_app
from .messages import SignatureDict

if TYPE_CHECKING:
    from .app import Hutch
    from .results.handles import AsyncResult


class Signature:
    """``add.s(2, 2)``: the task name, partial arguments and call options."""

    def __init__(self, task: str, args: tuple[Any, ...] | list[Any] = (),
                 kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 immutable: bool = False, app: Hutch | None = None) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.immutable = immutable
        self.app = app

    # -- building -----------------------------------------------------------------
    def clone(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy with ``args`` prepended and ``kwargs``/``options`` merged (caller wins).

        Immutable signatures ignore the extra arguments but still take options.
        """
        new = Signature(self.task, self.args, self.kwargs, copy.deepcopy(self.options),
                        self.immutable, self.app)
        if not self.immutable:
            new.args = tuple(args) + self.args
            new.kwargs = {**self.kwargs, **(kwargs or {})}
        new.options.update(options)
        return new

    def set(self, **options: Any) -> Signature:
        """Set call options (``queue=``, ``countdown=``, ...) in place; returns self."""
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    # -- sending ------------------------------------------------------------------
    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult:
        sig = self.clone(args, kwargs, **options)
        return self._require_app().client().send_signature(sig)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def __invert__(self) -> Any:
        """``~sig``: apply and wait for the result."""
        return self.apply_async().get()

    def _require_app(self) -> Hutch:
        if self.app is None:
            self.app = current_app()
        return self.app

    # -- wire form ----------------------------------------------------------------
    def to_dict(self) -> SignatureDict:
        return {"task": self.task, "args": list(self.args), "kwargs": self.kwargs,
                "options": _wire_options(self.options), "immutable": self.immutable}

    @classmethod
    def from_dict(cls, data: SignatureDict, app: Hutch | None = None) -> Signature:
        return cls(data["task"], tuple(data.get("args") or ()), data.get("kwargs") or {},
                   data.get("options") or {}, bool(data.get("immutable")), app)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}{'!' if self.immutable else ''}({', '.join(parts)})"


def _wire_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as they can travel: nested signatures become dicts."""
    out = {}
    for key, value in options.items():
        if isinstance(value, Signature):
            value = value.to_dict()
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Signature) for v in value):
            value = [v.to_dict() if isinstance(v, Signature) else v for v in value]
        out[key] = value
    return out


def signature(task: str | Signature | SignatureDict, args: tuple[Any, ...] = (),
              kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
              immutable: bool = False, app: Hutch | None = None, **extra: Any) -> Signature:
    """A signature for a task by name, for tasks the caller cannot import."""
    if isinstance(task, Signature):
        return task
    if isinstance(task, dict):
        return Signature.from_dict(task, app)
    return Signature(task, args, kwargs, {**(options or {}), **extra}, immutable, app)
