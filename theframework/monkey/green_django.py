"""Django's database connections per greenlet.

Django keeps one connection per alias in ``django.db.connections``, whose storage is an
``asgiref.local.Local(thread_critical=True)``: a plain ``threading.local`` in synchronous code.
Every greenlet of a worker runs in the same thread, so concurrent requests would share one
connection and, with psycopg 3, block the worker on its lock. Switching that storage to the
non-thread-critical kind keeps connections per ``contextvars`` context, and every greenlet has
its own context: each concurrent request gets its own connection, a parked request greenlet
keeps it for the next request (``CONN_MAX_AGE``), as a thread of a threaded server does.
"""

from __future__ import annotations

import threading
from types import ModuleType

from ._imports import when_imported

__all__ = ["patch_django"]


def _per_context(module: ModuleType) -> None:
    from asgiref.local import Local

    module.ConnectionHandler.thread_critical = False  # handlers made from now on
    inner = getattr(module.connections._connections, "_storage", None)
    # Replaced only while it is thread-local and holds no connection (in this thread: the only
    # one a worker serves from); connections opened before the patch stay where they are.
    if isinstance(inner, threading.local) and not vars(inner):
        module.connections._connections = Local(thread_critical=False)


def patch_django() -> None:
    """Makes Django's database connections per greenlet, once ``django.db`` is imported (at
    once if it already is). Connections opened before stay where they are."""
    when_imported("django.db", _per_context)
