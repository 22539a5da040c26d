"""Django settings of the test project: just enough for apps and hutch's CELERY_* names."""

SECRET_KEY = "test-only-not-secret"
DEBUG = False
INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
DATABASES: dict = {}
USE_TZ = True
TIME_ZONE = "UTC"

SHOP_NAME = "The Test Shop"

CELERY_TIMEZONE = "Europe/Paris"
CELERY_TASK_ROUTES = {"shop.tasks.*": {"queue": "shop"}}
CELERY_TASK_ANNOTATIONS = {"shop.tasks.add": {"rate_limit": "100/s"}}
CELERY_BROKER_URL = "memory://"  # HUTCH_BROKER_URL overrides it in the test's worker
