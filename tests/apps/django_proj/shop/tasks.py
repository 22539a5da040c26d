"""The shop app's tasks: nothing imports this module but the app's autodiscovery. They are
declared with shared_task, as a reusable Django app does: they bind to the project's app."""

from django.conf import settings

from hutch import shared_task
from shop.models import Order  # needs django.setup() done: the worker did it


@shared_task
def add(x, y):
    return x + y


@shared_task
def shop_name():
    """Reads Django's settings and a model's metadata: the worker has set Django up."""
    return f"{settings.SHOP_NAME} ({Order._meta.verbose_name_plural})"


@shared_task
def connection_was_closed():
    """Whether Django's connection was closed when this task began (hutch closes it after
    each task, as Django does after each request), then uses it."""
    from django.db import connection
    closed = connection.connection is None
    connection.ensure_connection()
    return closed
