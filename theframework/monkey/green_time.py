"""Cooperative ``time.sleep``."""

from __future__ import annotations

import math

from .. import _core
from . import _originals

__all__ = ["sleep"]


def sleep(seconds: float, /) -> None:
    """time.sleep: inside a hub only the calling greenlet sleeps (``sleep(0)`` yields to the
    other ready greenlets); elsewhere the original."""
    if not _core.in_hub() or not isinstance(seconds, (int, float)):
        _originals.sleep(seconds)  # also raises the original TypeError for other types
        return
    if math.isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _core.sleep(float(seconds))
