"""The pid file (``--pid-file``): refused when it names a live process, written atomically once
the server is ready, removed at exit only while it still holds our pid."""

from __future__ import annotations

import errno
import os

__all__ = ["check_pid_file", "remove_pid_file", "write_pid_file"]


def check_pid_file(path: str) -> None:
    """Refuses (OSError EEXIST) a pid file naming a live process other than this one; a stale
    file (dead pid, or not a pid) is left to be overwritten."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(64).strip()
    except FileNotFoundError:
        return
    try:
        pid = int(text)
    except ValueError:
        return
    if pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # alive, owned by another user
    raise FileExistsError(
        errno.EEXIST,
        f"the pid file {path} names a live process (pid {pid}): is the server already running? "
        "stop it, or remove the file if that process is not a server",
    )


def write_pid_file(path: str) -> None:
    """Writes this pid to ``path`` atomically (temporary file, then rename)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as stream:
        stream.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def remove_pid_file(path: str) -> bool:
    """Removes ``path`` only when it still holds this pid; True when removed."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            if stream.read(64).strip() != str(os.getpid()):
                return False
        os.unlink(path)
    except OSError:
        return False
    return True
