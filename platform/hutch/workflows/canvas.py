"""Signatures and the workflow primitives built from them, with no I/O here.

A signature names its task by string, so it can travel inside a message and be
applied by a worker that imports the task while the sender never did. The
primitives (:class:`chain`, :class:`group`, :class:`chord`, :class:`chunks`, and
``task.map``/``task.starmap``, which are plain signatures of built-in tasks) are
signatures too: they compose with ``|``, travel in the same wire form (a
``subtask_type`` key says which kind) and are sent by
:meth:`hutch.client.sync.Client.apply_workflow`, which hands them to
:mod:`hutch.workflows.plan`. docs/workflows.md explains each one.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ..current import current_app
from ..errors import ConfigurationError
from ..messages import SignatureDict
from .stamping import StampingVisitor, stamp

if TYPE_CHECKING:
    from ..app import Hutch
    from ..client.handles import AsyncResult, GroupResult

MAP_TASK = "hutch.map"
STARMAP_TASK = "hutch.starmap"
COLLECT_TASK = "hutch.collect"
"""Built-in tasks registered on every app (hutch.workflows.builtins)."""


def new_id() -> str:
    return str(uuid.uuid4())


SCALARS = frozenset({str, int, float, bool, type(None)})
"""Option values a copy may share: immutable, so copying them deeply changes nothing."""


def copied_options(options: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``options``; a dict of scalars (``queue=``, ``task_id``, the
    common case, thousands of times in a big chord) only as a new dict, which costs
    a tenth of ``copy.deepcopy``."""
    if all(type(value) in SCALARS for value in options.values()):
        return dict(options)
    return copy.deepcopy(options)


class Signature:
    """``add.s(2, 2)``: the task name, partial arguments and call options."""

    subtask_type: ClassVar[str | None] = None

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
        new = Signature(self.task, self.args, self.kwargs, copied_options(self.options),
                        self.immutable, self.app)
        if not self.immutable:
            new.args = tuple(args) + self.args
            new.kwargs = {**self.kwargs, **(kwargs or {})}
        new.options.update(options)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        """Copies share the app (which holds connections) and copy everything else."""
        new = copy.copy(self)
        for name, value in vars(self).items():
            if name != "app":
                setattr(new, name, copy.deepcopy(value, memo))
        return new

    def set(self, **options: Any) -> Signature:
        """Set call options (``queue=``, ``countdown=``, ...) in place; returns self."""
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def link(self, callback: Signature) -> Signature:
        """Add a callback (run with this signature's result); returns the callback."""
        self.options["link"] = [*as_list(self.options.get("link")), callback]
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Add an errback (run with the failed task's id); returns the errback."""
        self.options["link_error"] = [*as_list(self.options.get("link_error")), errback]
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """As :meth:`link_error`, returning self so calls can be chained."""
        self.link_error(errback)
        return self

    def freeze(self) -> str:
        """Give this signature its task id now (kept if it has one); returns it."""
        if "task_id" not in self.options:  # no id drawn for one already frozen
            self.options["task_id"] = new_id()
        return str(self.options["task_id"])

    @property
    def id(self) -> str | None:  # noqa: A003 - Celery's name
        """The task id ``freeze()`` gave (None before): the id of the handle sending it
        returns, so it can be recorded or passed on before anything runs."""
        return self.options.get("task_id")

    def __or__(self, other: Any) -> Signature:
        if not isinstance(other, Signature):
            return NotImplemented
        return pipe(self, other)

    def stamp(self, visitor: StampingVisitor | None = None, append_stamps: bool = False,
              **headers: Any) -> Signature:
        """Label this signature and every task in it (steps, members, header, body,
        callbacks) with ``headers`` and a ``StampingVisitor``'s stamps; returns self.
        See hutch.workflows.stamping."""
        stamp(self, visitor, append_stamps, headers)
        return self

    # -- sending ------------------------------------------------------------------
    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult | GroupResult:
        """Send it: a task's signature gives an AsyncResult, a group (or chunks) a
        GroupResult, a chain or chord the handle of its last step, which may be either."""
        sig = self.clone(args, kwargs, **options)
        app = self._require_app()
        task = app.tasks.get(sig.task)
        if task is not None:  # a task this process has: its typing= check, as delay()'s
            task.check_arguments(sig.args, sig.kwargs)
        return app.client().send_signature(sig)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
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
        data: SignatureDict = {"task": self.task, "args": list(self.args), "kwargs": self.kwargs,
                               "options": _wire_options(self.options),
                               "immutable": self.immutable}
        if self.subtask_type:
            data["subtask_type"] = self.subtask_type
        return data

    @classmethod
    def from_dict(cls, data: SignatureDict | Signature, app: Hutch | None = None) -> Signature:
        """The signature (of whichever kind ``subtask_type`` names) a wire dict describes."""
        if isinstance(data, Signature):
            return data
        kind = data.get("subtask_type")
        if kind:
            try:
                composite = COMPOSITES[kind]
            except KeyError:
                raise ConfigurationError(f"unknown signature kind {kind!r}") from None
            return composite.from_wire(data, app)
        return Signature(data["task"], tuple(data.get("args") or ()), data.get("kwargs") or {},
                         data.get("options") or {}, bool(data.get("immutable")), app)

    def __json__(self) -> dict[str, Any]:
        """A signature passed to or returned by a task, in Celery's dict form (every
        key, ``subtask_type`` None for a task's); ``signature(d)`` rebuilds it."""
        data = self.to_dict()
        return {"task": data["task"], "args": data["args"], "kwargs": data["kwargs"],
                "options": data["options"], "subtask_type": self.subtask_type,
                "immutable": data["immutable"]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}{'!' if self.immutable else ''}({', '.join(parts)})"


class chain(Signature):  # noqa: N801 - Celery's name
    """``chain(a, b, c)`` or ``a | b | c``: each task gets the previous one's result.

    Nested chains are flattened, and a group followed by another step becomes a
    chord (the step runs once with the group's results), also where the group ends a
    chord's body: ``g1 | g2 | t`` is ``chord(g1, chord(g2, t))``. The result is the last
    task's, whose ``.parent`` walks back through the chain.
    """

    subtask_type = "chain"

    def __init__(self, *tasks: Signature | Iterable[Signature], options: dict[str, Any] | None = None,
                 app: Hutch | None = None) -> None:
        steps = _steps(_sigs(tasks, "chain"))
        super().__init__("hutch.chain", (), {}, options, False, app or _app_of(steps))
        self.tasks: list[Signature] = steps

    def clone(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> chain:
        """Arguments given go to the first task; options are the chain's own."""
        new = chain(*[t.clone() for t in self.tasks], options=copy.deepcopy(self.options),
                    app=self.app)
        if (args or kwargs) and new.tasks:
            new.tasks[0] = new.tasks[0].clone(args, kwargs)
        new.options.update(options)
        return new

    def freeze(self) -> str:
        """Ids for every step; returns the last one's (the chain's result)."""
        if not self.tasks:
            raise ConfigurationError("chain: no tasks to run")
        return [step.freeze() for step in self.tasks][-1]

    @property
    def id(self) -> str | None:  # noqa: A003 - Celery's name
        """The last step's id once frozen (the chain's result)."""
        return self.tasks[-1].id if self.tasks else None

    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult | GroupResult:
        return self._require_app().client().apply_workflow(self, args, kwargs, options)

    def to_dict(self) -> SignatureDict:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [t.to_dict() for t in self.tasks]}
        return data

    @classmethod
    def from_wire(cls, data: SignatureDict, app: Hutch | None) -> chain:
        tasks = [Signature.from_dict(t, app) for t in data["kwargs"]["tasks"]]
        return cls(*tasks, options=data.get("options"), app=app)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)


class group(Signature):  # noqa: N801 - Celery's name
    """``group(sigs)``: run the tasks in parallel; the result is a GroupResult.

    Takes signatures as arguments or one iterable (a generator is fine). Nested
    groups are flattened into this one.
    """

    subtask_type = "group"

    def __init__(self, *tasks: Signature | Iterable[Signature], options: dict[str, Any] | None = None,
                 app: Hutch | None = None) -> None:
        members: list[Signature] = []
        for sig in _sigs(tasks, "group"):
            members.extend(sig.tasks if isinstance(sig, group) else [sig])
        super().__init__("hutch.group", (), {}, options, False, app or _app_of(members))
        self.tasks: list[Signature] = members

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    def clone(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> group:
        """Arguments given are prepended to every member."""
        new = group([t.clone(args, kwargs) for t in self.tasks],
                    options=copy.deepcopy(self.options), app=self.app)
        new.options.update(options)
        return new

    def freeze(self) -> str:
        """Ids for the group and every member; returns the group id."""
        for member in self.tasks:
            member.freeze()
        return super().freeze()

    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> GroupResult:
        # The client types every workflow's handle as AsyncResult | GroupResult; a
        # group's is always its GroupResult (workflows.apply.handle).
        return cast("GroupResult",
                    self._require_app().client().apply_workflow(self, args, kwargs, options))

    def __or__(self, other: Any) -> Signature:
        if isinstance(other, Signature) and not isinstance(other, chain):
            return chord(self, other, app=self.app)
        return super().__or__(other)

    def to_dict(self) -> SignatureDict:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [t.to_dict() for t in self.tasks]}
        return data

    @classmethod
    def from_wire(cls, data: SignatureDict, app: Hutch | None) -> group:
        return cls([Signature.from_dict(t, app) for t in data["kwargs"]["tasks"]],
                   options=data.get("options"), app=app)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Signature]:
        return iter(self.tasks)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


class chord(Signature):  # noqa: N801 - Celery's name
    """``chord(header, body)``: run the header group, then the body once with the
    list of header results, in header order.

    Completion is counted in the database by the workers that record the header
    outcomes (worker/chords.py); no task polls for it. A failed header task
    fails the chord: the body does not run and its rows say ChordError, while
    ``get()`` raises the failed header task's own exception (results/causes.py).
    """

    subtask_type = "chord"

    def __init__(self, header: group | Signature | Iterable[Signature], body: Signature | None = None,
                 options: dict[str, Any] | None = None, app: Hutch | None = None) -> None:
        if body is None:
            raise ConfigurationError("chord: a body signature is required")
        head = header if isinstance(header, group) else group(header)
        if not isinstance(body, Signature):
            raise ConfigurationError(f"chord: the body must be a signature, got {body!r}")
        super().__init__("hutch.chord", (), {}, options, False, app or head.app or body.app)
        self.header: group = head
        self.body: Signature = body

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    def clone(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> chord:
        """Arguments given are prepended to every header task (as in Celery)."""
        new = chord(self.header.clone(args, kwargs), self.body.clone(),
                    options=copy.deepcopy(self.options), app=self.app)
        new.options.update(options)
        return new

    def link(self, callback: Signature) -> Signature:
        """A chord's callbacks belong to its body: they run with the body's result."""
        return self.body.link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """A chord's errbacks belong to its body: called once if the chord fails."""
        return self.body.link_error(errback)

    def freeze(self) -> str:
        """Ids for the header group and the body; returns the body's (the chord's result)."""
        self.header.freeze()
        return self.body.freeze()

    @property
    def id(self) -> str | None:  # noqa: A003 - Celery's name
        """The body's id once frozen (the chord's result)."""
        return self.body.id

    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> AsyncResult | GroupResult:
        return self._require_app().client().apply_workflow(self, args, kwargs, options)

    def to_dict(self) -> SignatureDict:
        data = super().to_dict()
        data["kwargs"] = {"header": self.header.to_dict(), "body": self.body.to_dict()}
        return data

    @classmethod
    def from_wire(cls, data: SignatureDict, app: Hutch | None) -> chord:
        kwargs = data["kwargs"]
        return cls(Signature.from_dict(kwargs["header"], app), Signature.from_dict(kwargs["body"], app),
                   options=data.get("options"), app=app)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


class chunks(Signature):  # noqa: N801 - Celery's name
    """``task.chunks(items, n)``: the items split into groups of n argument tuples,
    each chunk one ``hutch.starmap`` task; applied as a group of those."""

    subtask_type = "chunks"

    def __init__(self, task: Signature, items: Iterable[Any], n: int,
                 options: dict[str, Any] | None = None, app: Hutch | None = None) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"chunks: n must be a positive integer, got {n!r}")
        super().__init__("hutch.chunks", (), {}, options, False, app or task.app)
        self.sig = task
        self.items = materialise(items)
        self.n = n

    def group(self) -> group:
        """The chunks as a group of ``hutch.starmap`` tasks."""
        parts = [self.items[i:i + self.n] for i in range(0, len(self.items), self.n)]
        stamps = {"stamps": self.options["stamps"]} if self.options.get("stamps") else None
        return group([Signature(STARMAP_TASK, (), {"task": self.sig.to_dict(), "it": part},
                                copy.deepcopy(stamps), app=self.app) for part in parts],
                     options=copy.deepcopy(self.options), app=self.app)

    def clone(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
              **options: Any) -> chunks:
        new = chunks(self.sig, self.items, self.n, copy.deepcopy(self.options), self.app)
        new.options.update(options)
        return new

    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **options: Any) -> GroupResult:
        return self.group().apply_async(args, kwargs, **options)

    def to_dict(self) -> SignatureDict:
        data = super().to_dict()
        data["kwargs"] = {"task": self.sig.to_dict(), "it": self.items, "n": self.n}
        return data

    @classmethod
    def from_wire(cls, data: SignatureDict, app: Hutch | None) -> chunks:
        kwargs = data["kwargs"]
        return cls(Signature.from_dict(kwargs["task"], app), kwargs["it"], kwargs["n"],
                   data.get("options"), app)


COMPOSITES: dict[str, type[chain | group | chord | chunks]] = {
    "chain": chain, "group": group, "chord": chord, "chunks": chunks}


def pipe(left: Signature, right: Signature) -> Signature:
    """``left | right``: a chain (flattened), or a chord when a group meets a task."""
    steps = chain(left, right, app=left.app or right.app).tasks
    return steps[0] if len(steps) == 1 else chain(*steps, app=left.app or right.app)


def _steps(sigs: list[Signature]) -> list[Signature]:
    """Flatten nested chains, chunks become groups, and fold each group that is followed
    by another step into a chord with that step as its body."""
    flat: list[Signature] = []
    for sig in sigs:
        if isinstance(sig, chain):
            flat.extend(sig.tasks if not sig.options else _with_chain_options(sig))
        elif isinstance(sig, chunks):
            flat.append(sig.group())
        else:
            flat.append(sig)
    out: list[Signature] = []
    for sig in flat:
        gathered = _gathered(out[-1], sig) if out else None
        if gathered is not None:
            out[-1] = gathered
        else:
            out.append(sig)
    return out


def _gathered(prev: Signature, step: Signature) -> Signature | None:
    """``prev | step`` when ``prev`` ends in a group: that group becomes the header of a
    chord with ``step`` as its body, wherever it sits (a chord's body, a chain's last
    step), as in Celery; None when ``prev`` ends in a task."""
    if isinstance(prev, group):
        return chord(prev, step, app=prev.app)
    if isinstance(prev, chord):
        body = _gathered(prev.body, step)
        return None if body is None else chord(prev.header, body, options=prev.options,
                                              app=prev.app)
    if isinstance(prev, chain) and prev.tasks:
        last = _gathered(prev.tasks[-1], step)
        return None if last is None else chain(*prev.tasks[:-1], last, options=prev.options,
                                              app=prev.app)
    return None


def _with_chain_options(inner: chain) -> list[Signature]:
    """A nested chain with links of its own keeps them on its last step (link) and
    every step (link_error) once flattened."""
    steps = [s.clone() for s in inner.tasks]
    for callback in as_list(inner.options.get("link")):
        steps[-1].link(callback)
    for errback in as_list(inner.options.get("link_error")):
        for step in steps:
            step.link_error(errback)
    return steps


def _sigs(tasks: tuple[Any, ...], what: str) -> list[Signature]:
    """The signatures given as arguments, or as one iterable (e.g. a generator)."""
    items: Iterable[Any] = tasks
    if len(tasks) == 1 and not isinstance(tasks[0], Signature):
        items = tasks[0]
    out = list(items)
    for item in out:
        if not isinstance(item, Signature):
            raise ConfigurationError(f"{what}: expected signatures (task.s(...)), got {item!r}")
    return out


def _app_of(sigs: list[Signature]) -> Hutch | None:
    return next((s.app for s in sigs if s.app is not None), None)


def as_list(value: Any) -> list[Any]:
    """An option that may be one value or several (link=, link_error=) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def materialise(items: Iterable[Any]) -> list[Any]:
    """Generators, ranges and zips as lists (each item too), as every serializer sends them."""
    return [list(i) if isinstance(i, (range, map, filter, zip)) or _is_iterator(i) else i
            for i in items]


def _is_iterator(value: Any) -> bool:
    return hasattr(value, "__next__") and hasattr(value, "__iter__")


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
