"""Start-method preflight: before the first worker under spawn or forkserver, the supervisor makes
sure a child can start that way, so that a machine where it cannot fails at once with one line
naming the cause and the remedy (exit 2, usage) instead of a crash loop of "Connection refused".

What is checked, in order: the temporary directory the environment names (multiprocessing puts
the fork server's socket in a directory made there; an unwritable one is an operator's mistake
that Python would otherwise paper over by falling back to another directory), then a real child
started through the context (the interpreter must be executable by this user, the fork server
must come up and answer), which also leaves the fork server running for the workers.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

__all__ = ["start_method_problem", "temp_dir_problem"]

# Longest wait for the no-op child (an interpreter start, plus the fork server's on first use).
PREFLIGHT_TIMEOUT = 30.0
_REMEDY = "use --start-method fork"


def temp_dir_problem(environment: Mapping[str, str]) -> str | None:
    """The error line when the temporary directory the environment names (TMPDIR, else TEMP,
    else TMP: tempfile's order) is missing or not writable; None when it is fine or none is set.
    Writes and removes a directory there to know."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        value = environment.get(name)
        if not value:
            continue
        try:
            probe = tempfile.mkdtemp(prefix="theframework-preflight-", dir=value)
        except OSError as error:
            reason = error.strerror or str(error)
            return f"{name}={value} not writable ({reason}): set {name} or {_REMEDY}"
        shutil.rmtree(probe, ignore_errors=True)
        return None
    return None


def _nothing() -> None:
    """The preflight child's target: starting is the test."""


def start_method_problem(
    method: str, context: Any, timeout: float = PREFLIGHT_TIMEOUT
) -> str | None:
    """None when a child starts and exits 0 through ``context`` (the multiprocessing context of
    ``method``: spawn or forkserver; fork needs no check), else the one error line naming the
    cause and the remedy."""
    if method not in ("spawn", "forkserver"):
        return None
    if method == "forkserver":
        problem = temp_dir_problem(os.environ)
        if problem is not None:
            return problem
    executable = sys.executable
    if not os.access(executable, os.X_OK):
        return (
            f"the interpreter {executable} cannot be run by uid {os.getuid()}, which {method} "
            f"needs to start workers: make it executable for this user or {_REMEDY}"
        )
    process = context.Process(target=_nothing, name="theframework-preflight", daemon=True)
    try:
        process.start()
    except Exception as error:  # whatever multiprocessing raises: reported, not a traceback
        return f"the {method} start method cannot start a process ({error!r}): {_REMEDY}"
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        return f"a {method} test process did not finish within {timeout:g} s: {_REMEDY}"
    if process.exitcode != 0:
        return (
            f"a {method} test process exited with status {process.exitcode} (see above): {_REMEDY}"
        )
    return None
