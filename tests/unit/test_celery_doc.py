"""docs/celery.md, the migration guide, stays true: every hutch name its tables list
as code (a module attribute, a setting, a command line) exists, and its settings table lists every name hutch.celery_names knows."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click

from hutch import celery_names
from hutch.cli.main import cli
from hutch.config import SETTING_NAMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "celery.md"
SETTING = re.compile(r"[a-z][a-z0-9_]*")


def _rows() -> list[list[str]]:
    """The cells of every "Celery name | hutch | note" table's body rows."""
    rows, in_table = [], False
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| Celery name"):
            in_table = cells[1:] == ["hutch", "note"]
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            rows.append(cells)
    return rows


def _command_exists(line: str) -> bool:
    """``hutch call NAME``, ``hutch worker --prefetch-multiplier``: each word a command of
    the ``hutch`` CLI, each word starting with ``-`` one of its options; upper-case
    words and ``proj`` are placeholders."""
    command: click.Command = cli
    for word in line.split()[1:]:
        if word.startswith("-"):
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            if word.split("=")[0] not in options:
                return False
        elif isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
        elif not (word.isupper() or word == "proj"):
            return False
    return True


def _exists(name: str) -> bool:
    """``hutch.a.B.c`` imports (the longest module prefix, then attributes); ``hutch
    ...`` with a space is a command line; a bare lower-case name is a setting."""
    if name.startswith("hutch "):
        return _command_exists(name)
    if not name.startswith("hutch."):
        return bool(SETTING.fullmatch(name)) and name in SETTING_NAMES
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_the_guide_has_its_tables():
    rows = _rows()
    assert len(rows) > 80
    assert all(len(row) == 3 for row in rows), [row for row in rows if len(row) != 3]


def test_every_hutch_name_the_tables_list_as_code_exists():
    listed = [name for _, hutch, _ in _rows() for name in re.findall(r"`([^`]+)`", hutch)]
    assert "hutch.Hutch.config_from_object" in listed and "result_backend" in listed
    assert [name for name in listed if not _exists(name)] == []


def test_the_settings_table_lists_every_celery_name_hutch_knows():
    in_doc = {name for celery, _, _ in _rows() for name in re.findall(r"`([^`]+)`", celery)}
    known = set(celery_names.OLD_NAMES) | set(celery_names.OLD_NAMES.values()) \
        | set(celery_names.CELERY_NAMES) | celery_names.PLANNED
    assert sorted(known - in_doc) == []
