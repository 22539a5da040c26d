"""The client library and the ``hutch`` command against the real RabbitMQ and PostgreSQL:
quiet inside user programs, one clear line under bad conditions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support.processes import TESTS_DIR

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
