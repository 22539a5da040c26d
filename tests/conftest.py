"""Shared fixtures: databases (support.databases), RabbitMQ (support.rabbit)."""

import os

import pytest

pytest_plugins = ["support.databases", "support.rabbit"]


@pytest.fixture(autouse=True)
def _no_hutch_environment(monkeypatch):
    """A developer's own HUTCH_* variables must not leak into the tests' apps."""
    for name in [n for n in os.environ if n.startswith("HUTCH_")]:
        monkeypatch.delenv(name)
