"""Paths of hutch's code named in the docs exist, so a move cannot leave a stale one."""

import re
from pathlib import Path

import hutch.errors

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def mentions(pattern: str) -> set[tuple[str, str]]:
    return {(doc.name, found) for doc in DOCS for found in re.findall(pattern, doc.read_text())}


def test_every_file_path_named_in_the_docs_exists():
    named = mentions(r"platform/hutch/[\w/.]*\w")
    assert named, "the docs name no code path: is the pattern still right?"
    assert {(doc, path) for doc, path in named if not (ROOT / path).exists()} == set()


def test_every_error_named_in_the_docs_is_in_the_tree():
    named = mentions(r"hutch\.errors\.(\w+)")
    assert {(doc, name) for doc, name in named if name not in hutch.errors.__all__} == set()


def test_no_file_keeps_merge_conflict_markers():
    """A merge resolved in haste once left them in the README."""
    texts = [*DOCS, *(ROOT / "platform").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "deploy").rglob("*.*")]
    marker = re.compile(r"^(<{7}|>{7}) ", re.MULTILINE)
    assert [p.relative_to(ROOT) for p in texts if marker.search(p.read_text(errors="replace"))
            ] == []
