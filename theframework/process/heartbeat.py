"""The heartbeat cells shared by the supervisor and its workers' hubs: ONE description of the
layout. Each cell is CELL_SIZE bytes: two native-endian uint64, the hub's loop iteration count
and the CLOCK_MONOTONIC time of its last beat in nanoseconds (0: no beat yet). The hub writes
them (src/python/hub.cpp, ``_core.HEARTBEAT_CELL_SIZE``, checked equal by a test); the
supervisor reads them."""

from __future__ import annotations

import mmap
import struct

__all__ = ["CELL_FORMAT", "CELL_SIZE", "Memory", "cell_offset", "clear", "read"]

# The shared memory as the supervisor maps it (tests use a bytearray).
Memory = mmap.mmap | bytearray

CELL_FORMAT = "QQ"
CELL_SIZE = struct.calcsize(CELL_FORMAT)


def cell_offset(cell: int) -> int:
    """Byte offset of cell number ``cell``."""
    return cell * CELL_SIZE


def clear(memory: Memory, cell: int) -> None:
    """Zeroes ``cell`` (before a new worker uses it)."""
    struct.pack_into(CELL_FORMAT, memory, cell_offset(cell), 0, 0)


def read(memory: Memory, cell: int) -> tuple[int, int]:
    """(iterations, last beat in monotonic ns) of ``cell``."""
    iterations, beat_ns = struct.unpack_from(CELL_FORMAT, memory, cell_offset(cell))
    return iterations, beat_ns
