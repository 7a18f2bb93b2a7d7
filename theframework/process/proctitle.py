"""Process titles as shown by ps/top: setproctitle when installed (the whole command line), else
the kernel's thread name through prctl(PR_SET_NAME) (15 bytes, shown by ``ps -o comm`` and top),
where a short form that survives the cut is used ("tf:master", "tf:w1").
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["set_process_title", "short_title"]

_PR_SET_NAME = 15
_COMM_LENGTH = 15  # TASK_COMM_LEN (16) minus the terminating NUL


def short_title(proc_name: str, role: str) -> str:
    """The 15-byte form of "<proc_name> <role>": "tf:master", "tf:w1" for the default name,
    else the name cut so that ":<role>" always survives ("myapp:w12")."""
    prefix = "tf" if proc_name == "theframework" else proc_name
    room = max(1, _COMM_LENGTH - len(role) - 1)
    return f"{prefix[:room]}:{role}"[:_COMM_LENGTH]


def set_process_title(title: str, short: str | None = None) -> str:
    """Sets the title of this process; returns how: "setproctitle", "prctl" or "none" (neither
    worked). Without setproctitle, ``short`` (15 bytes at most) replaces ``title``, which the
    kernel would cut. Never raises."""
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(title)
        return "setproctitle"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        text = title if short is None else short
        name = ctypes.create_string_buffer(text.encode(errors="replace")[:_COMM_LENGTH])
        if libc.prctl(_PR_SET_NAME, name, 0, 0, 0) == 0:
            return "prctl"
    except (OSError, AttributeError):
        pass
    return "none"
