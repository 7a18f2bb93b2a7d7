"""A Django project in one module (settings, URLs, views) on PostgreSQL (PG_TEST_PORT, and
PG_TEST_APPLICATION naming its connections, from the environment) with CONN_MAX_AGE, served as
WSGI under --patch-all by tests/test_monkey_postgres.py. With the patch Django keeps its
connections per context (asgiref's Local): under our server, per greenlet.

/backend?seconds=S runs pg_sleep(S) through the ORM's connection and answers "PID START END": the
backend pid and when the query started and ended (this process's monotonic clock); /hello answers
how many of those are running."""

from __future__ import annotations

import os
import time

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="not a secret: tests only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": os.environ["PG_TEST_PORT"],
            "NAME": "postgres",
            "USER": "postgres",
            "CONN_MAX_AGE": 60,
            "OPTIONS": {"application_name": os.environ["PG_TEST_APPLICATION"]},
        }
    },
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

running = {"queries": 0}


def backend(request: HttpRequest) -> HttpResponse:
    seconds = float(request.GET.get("seconds", "0.5"))
    running["queries"] += 1
    try:
        with connection.cursor() as cursor:
            started = time.monotonic()
            cursor.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [seconds])
            pid = cursor.fetchone()[0]
            ended = time.monotonic()
    finally:
        running["queries"] -= 1
    return HttpResponse(f"{pid} {started} {ended}")


def hello(request: HttpRequest) -> HttpResponse:
    return JsonResponse(running)


def driver(request: HttpRequest) -> HttpResponse:
    return HttpResponse(connection.Database.__name__)


urlpatterns = [path("backend", backend), path("hello", hello), path("driver", driver)]
application = get_wsgi_application()
