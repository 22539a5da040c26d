"""The project's hutch app: Celery's ``proj/celery.py`` with the imports changed."""

import os

from hutch import Hutch

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Hutch("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # shop.tasks, found through INSTALLED_APPS when the worker starts
