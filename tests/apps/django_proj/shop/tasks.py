"""The shop app's tasks: nothing imports this module but the app's autodiscovery."""

from django.conf import settings
from proj.hutch import app


@app.task
def add(x, y):
    return x + y


@app.task
def shop_name():
    """Reads Django's settings: the worker has set Django up."""
    return settings.SHOP_NAME
