"""The client library and the ``hutch`` command against the real RabbitMQ and PostgreSQL:
quiet inside user programs, one clear line under bad conditions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from sqlalchemy.engine import make_url

from apps.tasks import make_app
from hutch import AsyncClient
from hutch.brokers.amqp.backoff import REFUSED_RETRY
from hutch.config import mask_secrets
from hutch.errors import BrokerAccessRefused
from hutch.results.migrate import heads
from support.logs import capture_logs
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

USER_SCRIPT = textwrap.dedent("""
    import asyncio
    from hutch import AsyncClient
    from apps.env_app import app

    add = app.tasks["tests.add"]
    print("sum", add.delay(2, 3).get(timeout=60))
    print("failed", type(app.tasks["tests.fail"].delay("x").get(
        timeout=60, propagate=False)).__name__)
    late = add.apply_async((1, 1), countdown=600)
    late.revoke()
    print("revoked", late.state)

    async def main():
        async with AsyncClient(conf=app.conf, app=app) as client:
            handle = await client.submit("tests.add", 4, 4)
            print("async", await handle.get(timeout=60))

    asyncio.run(main())
    app.close()
""")


def run_script(source: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", source], env=env, capture_output=True,
                          text=True, timeout=120, cwd=TESTS_DIR)


def test_a_user_script_prints_only_its_own_lines(env, workers):
    workers(env, pool="threads", concurrency=2).wait_ready()
    out = run_script(USER_SCRIPT, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["sum 5", "failed CustomError", "revoked REVOKED",
                                       "async 8"]
    assert out.stderr == ""


APP_WITH_ITS_OWN_LOGGING = textwrap.dedent("""
    import logging, sys
    import structlog
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    structlog.configure(processors=[structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(sys.stdout))
    before = structlog.get_config()
    from apps.env_app import app

    late = app.tasks["tests.add"].apply_async((1, 1), countdown=600)
    late.revoke()
    app.close()
    structlog.get_logger().info("app line", revoked=late.id)
    assert structlog.get_config() == before, "hutch changed structlog's configuration"
""")


def test_an_application_that_configures_logging_sees_hutch_through_it(env):
    out = run_script(APP_WITH_ITS_OWN_LOGGING, env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('{"revoked": "') and out.stdout.count("\n") == 1
    assert "DEBUG hutch.amqp: publisher connecting url=amqp://guest:***@" in out.stderr
    assert "INFO hutch.control: tasks revoked ids=[" in out.stderr
    assert "ERROR" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def hutch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hutch", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=TESTS_DIR)


def test_submit_wait_and_result_exit_1_for_a_failed_task(env, workers):
    workers(env, pool="threads", concurrency=2).wait_ready()
    failed = hutch("-A", "apps.env_app", "submit", "tests.fail", "--args", '["bad input"]',
                   "--wait", "--timeout", "60", env=env)
    task_id = failed.stdout.strip()
    assert failed.returncode == 1 and len(task_id) == 36
    assert failed.stderr.strip() == (
        f"task {task_id} FAILURE: apps.tasks.CustomError: bad input")
    shown = hutch("-A", "apps.env_app", "result", task_id, env=env)
    assert shown.returncode == 1 and json.loads(shown.stdout)["state"] == "FAILURE"
    assert shown.stderr.strip() == failed.stderr.strip()


def test_submit_wait_prints_results_json_cannot_hold_in_the_tagged_form(env, workers):
    workers(env, pool="threads", concurrency=2).wait_ready()
    out = hutch("-A", "apps.env_app", "submit", "tests.as_set", "--args", "[3, 3]",
                "--wait", "--timeout", "60", env=env)
    assert out.returncode == 0 and out.stderr == ""
    task_id, printed = out.stdout.splitlines()
    assert json.loads(printed) == {"set": {"__hutch__": "set", "v": [3]},
                                   "tuple": {"__hutch__": "tuple", "v": [3, 3]}}
    shown = hutch("-A", "apps.env_app", "result", task_id, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["result"] == json.loads(printed)


@pytest.mark.parametrize("url, error, attempts", [
    ("amqp://guest:wrong-password@127.0.0.1:5672//", "RabbitMQ refused the login "
     "(ACCESS_REFUSED): check the user name and password in the broker URL", 1),
    ("amqp://guest:guest@127.0.0.1:5999//",
     "ConnectionRefusedError: [Errno 111] Connection refused", 4),  # the default policy's 3
], ids=["refused-login", "closed-port"])
def test_broker_failures_are_one_line_and_only_an_unreachable_broker_is_retried(
        env, url, error, attempts):
    bad = {**env, "HUTCH_BROKER_URL": url}
    out = hutch("-A", "apps.env_app", "submit", "tests.add", "1", "2", env=bad)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: cannot connect to {mask_secrets(url)}: {error}"]
    verbose = hutch("-A", "apps.env_app", "--log-format", "json", "-l", "debug", "submit",
                    "tests.add", "1", "2", env=bad)
    assert verbose.returncode == 2 and "wrong-password" not in verbose.stderr
    lines = [json.loads(line) for line in verbose.stderr.splitlines() if line.startswith("{")]
    assert sum(line["event"] == "publisher cannot connect" for line in lines) == attempts
    assert [line["level"] for line in lines if "retrying publish" in line["event"]] == \
        ["info"] * (attempts - 1)


def test_the_async_client_fails_a_refused_login_at_once(amqp_url, postgres_url, topology_prefix):
    app = make_app("amqp://guest:wrong-password@127.0.0.1:5672//", postgres_url,
                   topology_prefix=topology_prefix)

    async def submit() -> None:
        async with AsyncClient(conf=app.conf, app=app) as client:
            await client.submit("tests.add", 1, 2)

    with capture_logs() as logs, pytest.raises(BrokerAccessRefused, match="ACCESS_REFUSED"):
        asyncio.run(submit())
    assert logs == []  # no retry: nothing to say before the error


def test_db_commands_name_the_postgresql_database_with_its_password_masked(
        empty_postgres_url):
    url = make_url(empty_postgres_url).set(password="s3cret").render_as_string(
        hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    up = hutch("--backend", url, "db", "upgrade", env=env)
    assert up.returncode == 0 and up.stdout.strip() == f"database at {heads()[0]}", up.stderr
    assert up.stderr.strip() == f"database: {mask_secrets(url)}"
    assert ":***@" in up.stderr and "s3cret" not in up.stderr


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def broker_user(amqp_url):
    """A RabbitMQ user of this test alone (name, password), deleted afterwards."""
    name, password = f"hutchtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
        yield name, password
    finally:
        rabbitmqctl("delete_user", name)


def test_a_worker_whose_login_is_refused_says_so_once_and_comes_back(env, workers, app,
                                                                      broker_user):
    name, password = broker_user
    worker = workers({**env, "HUTCH_BROKER_URL": f"amqp://{name}:{password}@127.0.0.1:5672//"},
                     pool="threads", concurrency=1)
    worker.wait_ready()
    rabbitmqctl("change_password", name, "not-the-workers")
    rabbitmqctl("close_all_user_connections", name, "password changed by the test")
    refused = '"broker refuses the worker\'s connection; retrying"'
    assert eventually(lambda: refused in worker.output(), timeout=30), worker.output()
    rabbitmqctl("change_password", name, password)
    consuming = lambda: worker.output().split(refused)[-1].count('"consuming"')  # noqa: E731
    assert eventually(lambda: consuming() == 1, timeout=3 * REFUSED_RETRY), worker.output()
    assert worker.output().count(refused) == 1
    assert worker.proc.poll() is None
    assert app.tasks["tests.add"].delay(2, 2).get(timeout=30) == 4


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_worker_started_with_a_refused_login_exits_2_with_one_line(env, pool):
    bad = {**env, "HUTCH_BROKER_URL": "amqp://guest:wrong-password@127.0.0.1:5672//"}
    out = hutch("-A", "apps.env_app", "worker", "-P", pool, "-c", "1", env=bad)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: cannot connect to amqp://guest:***@127.0.0.1:5672//: RabbitMQ refused the "
        "login (ACCESS_REFUSED): check the user name and password in the broker URL"]
