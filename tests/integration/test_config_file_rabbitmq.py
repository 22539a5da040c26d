"""A worker configured by a settings file alone (`hutch --config FILE worker`), on RabbitMQ
and PostgreSQL: the broker, the result database and the topology prefix come from the
file, in the prefork children too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.processes import TESTS_DIR, WorkerProc

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

FROM_FILE = ("HUTCH_BROKER_URL", "HUTCH_BACKEND_URL", "HUTCH_TOPOLOGY_PREFIX")


def test_a_worker_started_with_config_uses_the_files_broker_and_backends(
        app, env, amqp_url, postgres_url, topology_prefix, tmp_path):
    path = tmp_path / "hutch.toml"
    path.write_text(f'[hutch]\nbroker_url = "{amqp_url}"\nresult_backend = "{postgres_url}"\n'
                    f'topology_prefix = "{topology_prefix}"\n')
    # Without the file this worker would use the defaults: prefix "hutch" and a SQLite
    # file, where the client below would never see its results.
    file_only = {name: value for name, value in env.items() if name not in FROM_FILE}
    worker = WorkerProc(file_only, pool="prefork", concurrency=2)
    worker.args[3:3] = ["--config", str(path)]  # after `-m hutch`: an option of hutch itself
    worker.start()
    try:
        worker.wait_ready(count=2)
        results = [app.tasks["tests.add"].delay(i, i) for i in range(10)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(10)]
    finally:
        assert worker.stop() == 0

    shown = subprocess.run([sys.executable, "-m", "hutch", "--config", str(path), "config",
                            "show", "--json"], env=file_only, capture_output=True, text=True,
                           timeout=60, cwd=TESTS_DIR)
    settings = json.loads(shown.stdout)["settings"]
    assert settings["result_backend"]["source"] == f"file {path}"
    assert settings["topology_prefix"] == {"value": topology_prefix, "source": f"file {path}"}
