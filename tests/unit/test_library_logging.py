"""Library code logs through ``hutch.logs.get_logger`` only (issue #11): structlog's own
``get_logger`` prints to stdout while the application has not configured structlog, which
put hutch's lines into user programs' output."""

from __future__ import annotations

import ast
from pathlib import Path

import hutch

PACKAGE = Path(hutch.__file__).parent


def _structlog_logger_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "get_logger"
            and isinstance(node.value, ast.Name) and node.value.id == "structlog"]


def test_no_module_takes_a_logger_from_structlogs_global_configuration():
    offenders = {str(path.relative_to(PACKAGE)): lines
                 for path in sorted(PACKAGE.rglob("*.py"))
                 if path.name != "logs.py" and (lines := _structlog_logger_calls(path))}
    assert offenders == {}
