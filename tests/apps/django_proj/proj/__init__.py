"""A tiny Django project, as ``django-admin startproject proj`` lays one out, with hutch
where Celery would be (docs/celery.md, "Django"): importing the project loads the app."""

from .hutch import app as hutch_app

__all__ = ("hutch_app",)
