"""Running ``hutch`` in-process, as its console entry point would."""

from __future__ import annotations

import pytest

from hutch.cli.main import main


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``hutch *argv`` through :func:`hutch.cli.main.main`: (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
