"""Which sockets of the supervisor's SO_REUSEPORT group new connections may reach, as pure
functions: the group's order as the kernel keeps it, and the classic BPF program that steers
connections away from the sockets nobody accepts on. ``server.sockets.attach_steering`` carries
the program out (SO_ATTACH_REUSEPORT_CBPF); docs/processes.md explains the listener design.

The kernel (net/core/sock_reuseport.c) keeps a group's listening sockets in an array, in the
order they were listen()ed; when one leaves the group (shutdown or close) the LAST socket is moved
into its hole. A classic BPF program attached to any socket of the group runs for each new
connection (its SYN) and returns an index into that array; an index beyond it falls back to the
kernel's hash selection over every socket of the group.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Hashable, Sequence
from typing import TypeVar

__all__ = [
    "HASH_FALLBACK",
    "SKF_AD_OFF",
    "SKF_AD_RANDOM",
    "Instruction",
    "avoided_indexes",
    "encode",
    "group_after_leave",
    "run",
    "steering_program",
]

# linux/filter.h: ancillary loads, at SKF_AD_OFF + SKF_AD_*.
SKF_AD_OFF = -0x1000
SKF_AD_RANDOM = 56

# Classic BPF opcodes (linux/bpf_common.h) used here.
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_ALU_MOD_K = 0x04 | 0x90 | 0x00  # BPF_ALU | BPF_MOD | BPF_K
_ALU_ADD_K = 0x04 | 0x00 | 0x00  # BPF_ALU | BPF_ADD | BPF_K
_JMP_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_RET_A = 0x06 | 0x10  # BPF_RET | BPF_A
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

# One struct sock_filter: (code, jt, jf, k).
Instruction = tuple[int, int, int, int]

Member = TypeVar("Member", bound=Hashable)

# The program that leaves every choice to the kernel's hash selection (an index beyond any
# group): what replaces a steering program once nothing is to be avoided (detaching with
# SO_DETACH_REUSEPORT_BPF fails with EINVAL on the kernels tried).
HASH_FALLBACK: tuple[Instruction, ...] = ((_RET_K, 0, 0, 0xFFFFFFFF),)


def group_after_leave(order: Sequence[Member], member: Member) -> tuple[Member, ...]:
    """The group's order once ``member`` left it: the last socket takes its place (the kernel's
    reuseport_detach_sock). Unchanged when ``member`` is not in it."""
    if member not in order:
        return tuple(order)
    members = list(order)
    index = members.index(member)
    members[index] = members[-1]
    members.pop()
    return tuple(members)


def avoided_indexes(order: Sequence[Member], served: Collection[Member]) -> tuple[int, ...]:
    """The array indexes (ascending) of the group's sockets that are not ``served``."""
    return tuple(index for index, member in enumerate(order) if member not in served)


def steering_program(size: int, avoid: Collection[int]) -> tuple[Instruction, ...]:
    """A program spreading a group of ``size`` sockets' new connections at random over every
    index but ``avoid``: A = random % (size - len(avoid)), then for each avoided index k in
    ascending order "if A >= k: A += 1" (the rank among the allowed indexes becomes an index).
    HASH_FALLBACK when there is nothing to avoid, or nothing left to steer to."""
    skipped = sorted({index for index in avoid if 0 <= index < size})
    allowed = size - len(skipped)
    if not skipped or allowed <= 0:
        return HASH_FALLBACK
    program: list[Instruction] = [
        (_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RANDOM) & 0xFFFFFFFF),
        (_ALU_MOD_K, 0, 0, allowed),
    ]
    for index in skipped:
        program.append((_JMP_JGE_K, 0, 1, index))
        program.append((_ALU_ADD_K, 0, 0, 1))
    program.append((_RET_A, 0, 0, 0))
    return tuple(program)


def encode(program: Sequence[Instruction]) -> bytes:
    """The program as an array of struct sock_filter (u16 code, u8 jt, u8 jf, u32 k)."""
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def run(program: Sequence[Instruction], random_value: int) -> int:
    """What ``program`` returns when the kernel's random number is ``random_value`` (an
    interpreter of the few opcodes steering_program emits, for tests)."""
    accumulator = 0
    position = 0
    while True:
        code, jump_true, jump_false, constant = program[position]
        position += 1
        if code == _LD_W_ABS:
            accumulator = random_value & 0xFFFFFFFF
        elif code == _ALU_MOD_K:
            accumulator %= constant
        elif code == _ALU_ADD_K:
            accumulator = (accumulator + constant) & 0xFFFFFFFF
        elif code == _JMP_JGE_K:
            position += jump_true if accumulator >= constant else jump_false
        elif code == _RET_A:
            return accumulator
        elif code == _RET_K:
            return constant
        else:
            raise ValueError(f"opcode {code:#x} is not one steering_program emits")
