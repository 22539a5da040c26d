"""The Django example of docs/celery.md, run: tests/apps/django_proj is a tiny Django
project whose ``proj/hutch.py`` reads its settings with ``config_from_object(
'django.conf:settings', namespace='CELERY')`` and finds ``shop.tasks`` with
``autodiscover_tasks()``. A real worker (``hutch -A proj worker``) runs the shop's
tasks, sent from a Django process as a view would send them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import django
import pytest

from support.processes import TESTS_DIR, worker_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

PROJECT = TESTS_DIR / "apps" / "django_proj"

SENDER = """
import json
import os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")  # as manage.py does
django.setup()  # a Django process: manage.py, a view, a shell
from proj.hutch import app
from shop.tasks import add, shop_name
summed, named = add.delay(2, 3), shop_name.delay()
print(json.dumps({"add": summed.get(timeout=30), "shop_name": named.get(timeout=30),
                  "queue": app.client().store.get(summed.id).queue,
                  "timezone": app.conf.timezone, "rate_limit": add.options.rate_limit}))
app.close()
"""


@pytest.fixture
def env(amqp_url, postgres_url, topology_prefix):
    env = worker_env(amqp_url, postgres_url, topology_prefix)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), env["PYTHONPATH"]])
    env.pop("DJANGO_SETTINGS_MODULE", None)  # proj/hutch.py sets it, as Celery's example does
    return env


def test_a_django_project_runs_the_tasks_autodiscovered_from_its_apps(env, workers):
    assert django.VERSION >= (4, 2)
    worker = workers(env, queues=["shop"], pool="threads", concurrency=2, app="proj")
    worker.wait_ready()
    sent = subprocess.run([sys.executable, "-c", SENDER], env=env, capture_output=True,
                          text=True, timeout=60, cwd=PROJECT)
    assert sent.returncode == 0, sent.stderr + worker.output()[-3000:]
    assert json.loads(sent.stdout) == {
        "add": 5,
        "shop_name": "The Test Shop (orders)",  # Django set up in the worker
        "queue": "shop",  # CELERY_TASK_ROUTES from Django's settings
        "timezone": "Europe/Paris",  # CELERY_TIMEZONE
        "rate_limit": "100/s",  # CELERY_TASK_ANNOTATIONS
    }
    assert worker.stop() == 0


CONNECTIONS = """
import json
import os
import sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
from hutch.testing import running_worker
from proj.hutch import app
app.conf.update(broker_url="memory://django-connections",
                result_backend="sqlite:///" + sys.argv[1])
with running_worker(app, queues=["shop"], concurrency=1):  # one thread: one connection
    from shop.tasks import connection_was_closed
    print(json.dumps([connection_was_closed.delay().get(timeout=30) for _ in range(3)]))
app.close()
"""


def test_a_worker_closes_djangos_database_connection_after_each_task(tmp_path):
    """With CONN_MAX_AGE 0 each task starts with its thread's connection closed: the one
    the previous task opened was closed after it (without that, it would still be open)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), str(TESTS_DIR)]),
           "SHOP_DB": str(tmp_path / "shop.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    ran = subprocess.run([sys.executable, "-c", CONNECTIONS, str(tmp_path / "r.sqlite")],
                         env=env, capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout) == [True, True, True]
