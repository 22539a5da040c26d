"""Shared fixtures: databases (support.databases), RabbitMQ (support.rabbit), private
servers to restart and crash (support.servers)."""

import os
import uuid

import pytest

from apps.tasks import make_app

pytest_plugins = ["support.databases", "support.rabbit", "support.servers", "support.browser",
                  "support.scheduling", "hutch.testing"]


@pytest.fixture(autouse=True)
def _no_hutch_environment(monkeypatch):
    """A developer's own HUTCH_* variables must not leak into the tests' apps."""
    for name in [n for n in os.environ if n.startswith("HUTCH_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def memory_app(tmp_path):
    """The test tasks' app on a private memory:// broker and a SQLite file, two slots."""
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   worker_concurrency=2)
    yield app
    app.close()
