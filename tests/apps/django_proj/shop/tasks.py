"""The shop app's tasks: nothing imports this module but the app's autodiscovery."""

from django.conf import settings
from proj.hutch import app

from shop.models import Order  # needs django.setup() done: the worker did it


@app.task
def add(x, y):
    return x + y


@app.task
def shop_name():
    """Reads Django's settings and a model's metadata: the worker has set Django up."""
    return f"{settings.SHOP_NAME} ({Order._meta.verbose_name_plural})"
