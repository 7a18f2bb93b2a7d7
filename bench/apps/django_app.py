"""The same small Django project for every WSGI server (scenarios 10 and 11), configured in this
module: DEBUG off, no database, the middleware of a typical API project (security, common), a
plaintext view and a view rendering a small template (a title and a ten-row list, auto-escaped)
through Django's template engine."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from payloads import PLAINTEXT

PAGE = """<!DOCTYPE html>
<html><head><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1><ul>
{% for row in rows %}<li id="row-{{ row.id }}">{{ row.text }}</li>
{% endfor %}</ul></body></html>
"""
ROWS = [{"id": number, "text": f"Row <{number}> & more"} for number in range(10)]


def plaintext(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PLAINTEXT, content_type="text/plain")


def template(request: HttpRequest) -> HttpResponse:
    return render(request, "page.html", {"title": "Hello, World!", "rows": ROWS})


urlpatterns = [path("django/plaintext", plaintext), path("django/template", template)]

settings.configure(
    DEBUG=False,
    SECRET_KEY="benchmark-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    INSTALLED_APPS=[],
    DATABASES={},
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [("django.template.loaders.locmem.Loader", {"page.html": PAGE})]
            },
        }
    ],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - needs the settings above

application: Any = get_wsgi_application()
