"""The public surface is exactly __all__ (guarded like httpx's exported-members test),
and __all__ is exactly what docs/guide.md documents under "The public API"."""

import importlib
import re
from pathlib import Path

import hutch

GUIDE = Path(__file__).parents[2] / "docs" / "guide.md"

CONTRACT = {  # the names ../shared/MISSION.md promises to users and their scripts
    "Hutch", "Client", "AsyncClient", "group", "chain", "chord", "signature", "GroupResult",
    "AsyncResult", "PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED",
}


def documented_names() -> list[str]:
    """The backticked names in the first column of the guide's public API table."""
    section = GUIDE.read_text().split("\n## The public API\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row)]


def test_all_names_are_exported_and_nothing_public_is_missing():
    public = {n for n in dir(hutch) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(hutch, n)).__name__ == "module"}
    assert set(hutch.__all__) - {"__version__"} == public - modules


def test_all_is_what_the_guide_documents():
    documented = documented_names()
    assert len(documented) == len(set(documented))
    assert len(hutch.__all__) == len(set(hutch.__all__))
    assert set(hutch.__all__) == set(documented)


def test_the_mission_contract_is_public():
    assert CONTRACT <= set(hutch.__all__)


def test_every_public_name_imports():
    for module in ("hutch", "hutch.schedules", "hutch.errors"):
        for name in importlib.import_module(module).__all__:
            namespace: dict[str, object] = {}
            exec(f"from {module} import {name}", namespace)  # the way users spell it
            assert namespace[name] is getattr(importlib.import_module(module), name)


def test_seed_api_shapes():
    app = hutch.Hutch("tasks", broker="memory://", backend="sqlite:///:memory:")

    @app.task
    def add(x, y):
        return x + y

    assert add.name == "test_public_api.add" or add.name.endswith(".add")
    assert add(2, 3) == 5
    sig = add.s(16)
    assert sig.clone((4,)).args == (4, 16)
    assert add.si(1, 2).clone((9,)).args == (1, 2)
    assert hutch.signature("tasks.add", (1, 2)).to_dict()["task"] == "tasks.add"
    assert isinstance(add.s(1) | add.s(2), hutch.chain)
    assert isinstance(hutch.group(add.s(1, 1)) | add.s(2), hutch.chord)
    assert issubclass(hutch.ChordError, hutch.HutchError)
    assert hutch.GroupResult.restore.__doc__


def test_crontab_is_exported_where_celery_users_look_for_it():
    from hutch.beat import crontab as beat_crontab
    from hutch.schedules import crontab as schedules_crontab

    assert hutch.crontab is beat_crontab is schedules_crontab
    assert hutch.crontab(hour=7, minute=30, day_of_week=1).to_string() == "30 7 * * 1"
