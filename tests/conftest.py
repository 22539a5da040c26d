"""Shared fixtures: databases (support.databases), RabbitMQ (support.rabbit), private
servers to restart and crash (support.servers)."""

import os

import pytest

pytest_plugins = ["support.databases", "support.rabbit", "support.servers"]


@pytest.fixture(autouse=True)
def _no_hutch_environment(monkeypatch):
    """A developer's own HUTCH_* variables must not leak into the tests' apps."""
    for name in [n for n in os.environ if n.startswith("HUTCH_")]:
        monkeypatch.delenv(name)
