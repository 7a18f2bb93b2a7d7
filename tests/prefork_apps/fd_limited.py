"""Lowers this worker's own open-files limit to the descriptors it already holds, so that the
next one it opens fails with EMFILE: a single process's listening socket, a supervised worker's
hub (its listener comes from the supervisor)."""

import os
import resource

from prefork_apps.pid_app import app

_probe = os.dup(0)
os.close(_probe)
resource.setrlimit(resource.RLIMIT_NOFILE, (_probe, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

__all__ = ["app"]
