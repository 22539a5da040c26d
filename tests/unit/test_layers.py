"""Imports between hutch's packages run one way: down the layers of issue #12.

The target graph is ``cli -> app/ops -> client/worker/beat -> workflows ->
results/brokers -> messages/serialization/config/schedules/errors``. Each top-level
module or package of ``platform/hutch`` has a layer in ``LAYERS``; a runtime import
may point to its own layer or a lower one, never higher. Inside the layer of
client, beat and worker the code has a direction too, so they get one number each:
beat sends through the client, and ``worker -B`` embeds beat, so client < beat <
worker. (The
worker's use of client helpers, pending_changes, decode_result and encode_notice,
points down by that order; issue #12 moves them lower still.)
``tasks``, ``call_options`` and ``workflows/`` share a layer: a task builds
signatures, call options carry link/link_error signatures, and planning a workflow
turns signatures into call options.

What counts: every ``import`` of a hutch module found by ``ast``, at module level
and inside functions (an import moved into a function still runs, so it is runtime
too; ``test_no_hutch_import_inside_a_function`` keeps that habit out anyway).
Imports under ``if TYPE_CHECKING:`` are collected separately and may point up: with
``from __future__ import annotations`` they never run, and annotating a parameter
with the type of the object an upper layer passes in (``Hutch``, ``Client``) is
how a lower layer names its caller without depending on it. They may not reach
the top layer (the CLI and entry points), which nothing should know about.

``ALLOWED`` lists runtime imports that point up, each with why it is there. It
only shrinks, and is empty since issue #12 moved the last ones' code down (the
schedule kinds below config, revocation into the client); an entry whose import
is gone fails the test too, so the list stays true.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import hutch

PACKAGE = Path(hutch.__file__).parent

LAYERS: dict[str, int] = {
    # 0: no hutch dependencies beyond each other
    "errors": 0,
    "exceptions": 0,  # celery.exceptions' place: a second name for errors
    "stopping": 0,
    "config": 0,
    "celery_names": 0,  # Celery's setting names and what they are here (config.py reads it)
    "config_file": 0,  # which settings file is read, and its TOML (config.py reads it)
    "routing": 0,  # task_routes: checked by settings, applied by call options (pure)
    "discovery": 0,  # imports, include and autodiscover_tasks: the modules to import
    "logs": 0,
    "serialization": 0,
    "schedules": 0,  # the pure schedule kinds settings validate beat_schedule with
    "systemd": 0,  # sd_notify over NOTIFY_SOCKET, for the worker and beat services
    "diagnostics": 0,  # SIGUSR1 (stack dump) and SIGHUP (reload) in every process
    "signals": 0,  # Celery's signals (hutch.signals), sent from every layer above
    # 1: the task message and its validation, and the request of the task running here
    "messages": 1,
    "envelope": 1,
    "current": 1,
    "publishing": 1,  # before/after_task_publish around a publish, for clients and workers
    # 2: the SQL side and the brokers, independent of each other
    "results": 2,
    "brokers": 2,
    "events": 2,  # sends task events over a broker's fan-out (brokers.base.TASK_EVENTS)
    # 3: tasks, call options and workflows (no I/O of their own)
    "tasks": 3,
    "call_options": 3,
    "retries": 3,  # when a failed attempt runs again: the worker's rules, eager runs' too
    "annotations": 3,  # task_annotations applied to a task's options
    "workflows": 3,
    "shared": 3,  # @shared_task: declarations registered on every app (app.py attaches them)
    "hooks": 3,  # a task's on_success/on_failure/on_retry/after_return, for worker and eager
    # 4-6: the three processes' sides
    "client": 4,
    "beat": 5,
    "worker": 6,
    # 7: the app object and the operator tools shared by the CLI and the dashboard
    "app": 7,
    "ops": 7,
    # 8: the public face (``from hutch import ...``, ``__version__``), and the dashboard's
    # process over the app and ops (started by the CLI, never importing it)
    "__init__": 8,
    "web": 8,
    "testing": 8,  # pytest fixtures over the app and an in-process worker
    # 9: the entry points
    "__main__": 9,
    "cli": 9,
    "benchmarks": 9,
}
TOP = max(LAYERS.values())

ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # module name relative to hutch: "worker.chords", "__init__"
    imported: str
    line: int
    kind: str  # "module", "function" or "type"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if len(parts) > 1 and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    base = PACKAGE.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def relative(absolute: str) -> str:
    """``hutch.a.b`` -> ``a.b``; the package itself is ``__init__``."""
    return absolute.removeprefix("hutch").removeprefix(".") or "__init__"


def targets(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    """The hutch modules one import statement loads (``from . import x`` loads x)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [relative(n) for n in names if n == "hutch" or n.startswith("hutch.")]
    if node.level == 0:
        if node.module is None or not (node.module == "hutch" or node.module.startswith("hutch.")):
            return []
        base = relative(node.module)
    else:
        package = module_name(path).split(".")
        if path.name != "__init__.py" or package == ["__init__"]:
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    found = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}" if base else alias.name
        found.append(submodule if is_module(submodule) else (base or "__init__"))
    return found


def is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imports_in(node: ast.AST, kind: str, path: Path, out: list[Import]) -> None:
    for child in ast.iter_child_nodes(node):
        child_kind = kind
        if isinstance(child, ast.If) and is_type_checking(child.test):
            for statement in child.body:
                imports_in(ast.Module(body=[statement], type_ignores=[]), "type", path, out)
            for statement in child.orelse:
                imports_in(ast.Module(body=[statement], type_ignores=[]), kind, path, out)
            continue
        if kind == "module" and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            child_kind = "function"
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            for imported in targets(child, path):
                out.append(Import(module_name(path), imported, child.lineno, child_kind))
        imports_in(child, child_kind, path, out)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        imports_in(ast.parse(path.read_text(), str(path)), "module", path, found)
    return found


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def upward(imports: list[Import]) -> set[tuple[str, str]]:
    return {(i.importer, i.imported) for i in imports if layer(i.imported) > layer(i.importer)}


def test_every_module_has_a_layer():
    modules = {module_name(p).split(".")[0] for p in PACKAGE.rglob("*.py")}
    assert modules - set(LAYERS) == set(), "add the new module or package to LAYERS"
    assert set(LAYERS) - modules == set(), "LAYERS names a module that no longer exists"


def test_runtime_imports_point_down_except_the_allowlist():
    runtime = [i for i in all_imports() if i.kind != "type"]
    assert runtime, "the scan found no imports at all"
    new = {
        f"{i.importer} (layer {layer(i.importer)}) -> {i.imported} (layer {layer(i.imported)}) line {i.line}"
        for i in runtime if (i.importer, i.imported) in upward(runtime) - set(ALLOWED)
    }
    assert new == set(), "imports that point up a layer: move the code down, or the import up"


def test_the_allowlist_only_lists_imports_that_still_exist():
    runtime = [i for i in all_imports() if i.kind != "type"]
    gone = set(ALLOWED) - upward(runtime)
    assert gone == set(), "these allowed imports are gone or point down now: remove them from ALLOWED"


def test_type_only_imports_never_reach_the_entry_points():
    typed = [i for i in all_imports() if i.kind == "type"]
    assert [i for i in typed if layer(i.imported) == TOP and layer(i.importer) < TOP] == []


DEFERRED = {
    ("brokers.factory", "brokers.amqp.aio"):
        "aio-pika and aiormq load for asyncio apps only: a twentieth of a second of every "
        "worker start and CLI call that never awaits",
}
"""Imports made inside a function on purpose, to keep a heavy optional dependency out
of start-up, each with why (never to dodge a cycle); an entry whose import is gone
fails the test too."""


def test_no_hutch_import_inside_a_function():
    """An import hidden in a function dodges a cycle instead of removing it (STYLE.md);
    only the start-up savings of ``DEFERRED`` are made that way."""
    inside = {(i.importer, i.imported) for i in all_imports() if i.kind == "function"}
    assert inside == set(DEFERRED)


def test_the_scan_sees_relative_absolute_and_type_only_imports():
    imports = all_imports()
    assert any(i.importer == "messages" and i.imported == "envelope" for i in imports)  # from . import
    assert any(i.importer == "benchmarks.tasks" and i.imported == "__init__" for i in imports)
    assert any(i.kind == "type" and i.importer == "tasks" and i.imported == "app" for i in imports)
