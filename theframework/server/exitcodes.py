"""Exit codes: why a serving process (a worker, or the single process) ended. The supervisor acts
on them (theframework.process.slots) and exits with the one that stopped the server; README.md
and docs/processes.md have the table."""

from __future__ import annotations

import enum
import errno

__all__ = ["ExitCode", "exit_code_for_hub_failure", "exit_code_for_os_error"]


class ExitCode(enum.IntEnum):
    """Exit status of a worker (and of the supervisor, which exits with the code that stopped the
    server). docs/processes.md has the table with what the supervisor does for each."""

    OK = 0
    # Any other failure, including bind errors without a code of their own.
    GENERIC = 1
    # Bad usage: option values, an application reference that names nothing callable.
    USAGE = 2
    # The application could not be imported, or one of its startup hooks raised.
    APP_FAILED = 3
    # EADDRINUSE while binding: transient, respawned with backoff.
    ADDRESS_IN_USE = 42
    # EACCES/EPERM while binding: permanent, not respawned.
    PERMISSION_DENIED = 43
    # EMFILE/ENFILE: out of file descriptors; the supervisor runs one worker fewer.
    TOO_MANY_FILES = 44
    # Exceptions escaping the hub while serving.
    HUB_MEMORY_ERROR = 50
    HUB_OS_ERROR = 51
    HUB_EXCEPTION = 52
    # Stopped at once by a second SIGINT (128 + SIGINT, as a shell reports it).
    INTERRUPTED = 130


def exit_code_for_os_error(error: OSError) -> ExitCode:
    """The exit code of a server or worker that failed to start with ``error`` (binding)."""
    if error.errno == errno.EADDRINUSE:
        return ExitCode.ADDRESS_IN_USE
    if error.errno in (errno.EACCES, errno.EPERM):
        return ExitCode.PERMISSION_DENIED
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return ExitCode.TOO_MANY_FILES
    return ExitCode.GENERIC


def exit_code_for_hub_failure(error: BaseException) -> ExitCode:
    """The exit code of a worker or single process whose hub failed with ``error`` while
    serving: 50 MemoryError, 51 OSError, 52 any other exception."""
    if isinstance(error, MemoryError):
        return ExitCode.HUB_MEMORY_ERROR
    if isinstance(error, OSError):
        return ExitCode.HUB_OS_ERROR
    return ExitCode.HUB_EXCEPTION
