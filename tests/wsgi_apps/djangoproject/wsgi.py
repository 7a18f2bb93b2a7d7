"""WSGI entry point of the Django test project (``...djangoproject.wsgi:application``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.wsgi_apps.djangoproject.settings")

application = get_wsgi_application()
