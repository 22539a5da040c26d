"""Django settings of the test project: just enough for apps and hutch's CELERY_* names."""

import os

SECRET_KEY = "test-only-not-secret"
DEBUG = False
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
# A file the test names (SHOP_DB); CONN_MAX_AGE 0: a connection lives for one task.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": 0,
                         "NAME": os.environ.get("SHOP_DB", ":memory:")}}
USE_TZ = True
TIME_ZONE = "UTC"

SHOP_NAME = "The Test Shop"

CELERY_TIMEZONE = "Europe/Paris"
CELERY_TASK_ROUTES = {"shop.tasks.*": {"queue": "shop"}}
CELERY_TASK_ANNOTATIONS = {"shop.tasks.add": {"rate_limit": "100/s"}}
CELERY_BROKER_URL = "memory://"  # HUTCH_BROKER_URL overrides it in the test's worker
