"""Process titles as shown by ps/top: setproctitle when installed (the whole command line), else
the kernel's thread name through prctl(PR_SET_NAME) (15 bytes, shown by ``ps -o comm`` and top).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["set_process_title"]

_PR_SET_NAME = 15
_COMM_LENGTH = 15  # TASK_COMM_LEN (16) minus the terminating NUL


def set_process_title(title: str) -> str:
    """Sets the title of this process; returns how: "setproctitle", "prctl" or "none" (neither
    worked). Never raises."""
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(title)
        return "setproctitle"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        name = ctypes.create_string_buffer(title.encode(errors="replace")[:_COMM_LENGTH])
        if libc.prctl(_PR_SET_NAME, name, 0, 0, 0) == 0:
            return "prctl"
    except (OSError, AttributeError):
        pass
    return "none"
