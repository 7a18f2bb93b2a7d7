"""An example config file:
``theframework examples.hello:app --config examples/theframework.conf.py``.

Module-level names are options (the long options with underscores) and server hooks; anything
else must start with ``_`` (or come from an import statement), so that a misspelt name stops the
start with exit 2 instead of being ignored. The command line and THEFRAMEWORK_* variables win
over this file, which wins over PORT / WEB_CONCURRENCY and the defaults. README.md, "Config file
and hooks", says where and when each hook runs.
"""

import logging
import os
import time

# -- options ------------------------------------------------------------------------------------

host = "127.0.0.1"
# The file wins over PORT: read it here to keep a platform's choice (Heroku, Cloud Run).
port = int(os.environ.get("PORT", "8000"))
workers = 2
graceful_timeout = 10.0
max_requests = 10_000
max_requests_jitter = 500
access_log = True
proc_name = "hello"

# -- hooks --------------------------------------------------------------------------------------

_log = logging.getLogger("hello.hooks")


def on_starting(config):
    """Supervisor (or the single process), before any worker starts: raising stops the start
    (exit 3)."""
    _log.info("starting %d workers on port %d", config.workers, config.port)


def when_ready(config):
    """Supervisor, once every worker reported ready (the first time)."""
    _log.info("all %d workers ready", config.workers)


def worker_start(worker_id):
    """Each worker, before the application is imported (gunicorn's post_fork is the same hook):
    per-process set-up of a WSGI app; raising stops the start (exit 3)."""
    os.environ["HELLO_WORKER"] = str(worker_id)


def worker_shutdown(worker_id):
    """Each worker, after its drain: close what worker_start opened."""
    _log.info("worker %d done", worker_id)


def worker_exit(worker_id, exit_code):
    """Supervisor, after a worker process ended (for any reason)."""
    if exit_code != 0:
        _log.warning("worker %d exited with %d", worker_id, exit_code)


def post_request(request, status, seconds):
    """Each worker, after the response was sent (defining it installs the callback; without it
    requests cost nothing extra)."""
    if seconds > 1.0:
        _log.warning("slow: %s %s -> %d in %.2f s", request.method, request.path, status, seconds)


_started = time.monotonic()


def on_exit(config):
    """Supervisor (or the single process), last."""
    _log.info("served for %.0f s", time.monotonic() - _started)
