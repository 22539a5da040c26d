"""A model, so that importing shop.tasks needs Django's apps ready (as in real projects)."""

from django.db import models


class Order(models.Model):
    total = models.IntegerField(default=0)

    class Meta:
        app_label = "shop"
        verbose_name_plural = "orders"
