"""The steering of the supervisor's SO_REUSEPORT group (theframework.process.steering): the
group's order after sockets leave it, which indexes are avoided, the classic BPF program (its
bytes and what it returns), and, on this machine's kernel, that the program attached with
``attach_steering`` keeps connections away from the avoided sockets and that the order the
policy predicts after a leave is the kernel's."""

from __future__ import annotations

import collections
import socket
import struct
from collections.abc import Iterator

import pytest

from theframework.process import steering
from theframework.server.sockets import attach_steering

# -- the group's order ---------------------------------------------------------------------------


def test_the_last_socket_takes_the_place_of_the_one_that_leaves() -> None:
    assert steering.group_after_leave(("a", "b", "c", "d"), "b") == ("a", "d", "c")
    assert steering.group_after_leave(("a", "b", "c", "d"), "d") == ("a", "b", "c")
    assert steering.group_after_leave(("a", "b", "c", "d"), "a") == ("d", "b", "c")
    assert steering.group_after_leave(("a",), "a") == ()
    assert steering.group_after_leave(("a", "b"), "z") == ("a", "b")


def test_leaves_in_a_different_order_give_a_different_array() -> None:
    # Why the supervisor applies each leave itself, as it happens.
    first_b = steering.group_after_leave(steering.group_after_leave("abcde", "b"), "c")
    first_c = steering.group_after_leave(steering.group_after_leave("abcde", "c"), "b")
    assert first_b == ("a", "e", "d")
    assert first_c == ("a", "d", "e")


def test_avoided_indexes_follow_compaction() -> None:
    order = steering.group_after_leave(("s1", "s2", "s3", "s4"), "s2")  # s1 s4 s3
    assert steering.avoided_indexes(order, {"s1", "s3"}) == (1,)
    assert steering.avoided_indexes(order, {"s4"}) == (0, 2)
    assert steering.avoided_indexes(order, {"s1", "s3", "s4"}) == ()


# -- the program ---------------------------------------------------------------------------------


def test_nothing_to_avoid_or_nothing_left_is_the_hash_fallback() -> None:
    assert steering.steering_program(4, ()) == steering.HASH_FALLBACK
    assert steering.steering_program(2, (0, 1)) == steering.HASH_FALLBACK
    assert steering.steering_program(0, ()) == steering.HASH_FALLBACK
    # An index beyond any group: the kernel's hash selection.
    assert steering.run(steering.HASH_FALLBACK, 7) >= 2**16


def test_program_bytes_for_four_sockets_avoiding_index_one() -> None:
    program = steering.steering_program(4, [1])
    random_load = (steering.SKF_AD_OFF + steering.SKF_AD_RANDOM) & 0xFFFFFFFF
    assert program == (
        (0x20, 0, 0, random_load),  # A = random
        (0x94, 0, 0, 3),  # A %= 3
        (0x35, 0, 1, 1),  # if A >= 1
        (0x04, 0, 0, 1),  #   A += 1
        (0x16, 0, 0, 0),  # return A
    )
    assert steering.encode(program) == b"".join(
        struct.pack("<HBBI", *instruction) for instruction in program
    )
    assert steering.encode(program)[:8] == bytes.fromhex("2000 00 00 38f0ffff".replace(" ", ""))


@pytest.mark.parametrize(
    ("size", "avoid"),
    [
        (4, [1]),
        (4, [0]),
        (4, [3]),
        (5, [1, 3]),
        (6, [5, 0, 2]),
        (8, [7, 6, 5, 4, 3, 2, 1]),
        (3, []),
    ],
)
def test_every_allowed_index_is_reached_and_no_avoided_one(size: int, avoid: list[int]) -> None:
    program = steering.steering_program(size, avoid)
    allowed = size - len(avoid)
    results = [steering.run(program, value) for value in range(4 * allowed)]
    if not avoid:
        assert all(result >= size for result in results)
        return
    assert set(results) == set(range(size)) - set(avoid)
    # Evenly: each allowed index for the same share of random values.
    assert set(collections.Counter(results).values()) == {4}


# -- on this kernel ------------------------------------------------------------------------------


@pytest.fixture
def group() -> Iterator[list[socket.socket]]:
    """Five listening SO_REUSEPORT sockets on one loopback port, in listen() order."""
    members: list[socket.socket] = []
    port = 0
    try:
        for _ in range(5):
            member = socket.socket()
            members.append(member)
            member.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            member.bind(("127.0.0.1", port))
            port = member.getsockname()[1]
            member.listen(256)
            member.setblocking(False)
        yield members
    finally:
        for member in members:
            member.close()


def _landings(members: list[socket.socket], count: int) -> collections.Counter[int]:
    """Connects ``count`` times; how many connections each member's queue received."""
    port = members[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    landed: collections.Counter[int] = collections.Counter()
    for index, member in enumerate(members):
        while True:
            try:
                accepted, _ = member.accept()
            except (BlockingIOError, OSError):
                break
            accepted.close()
            landed[index] += 1
    for client in clients:
        client.close()
    assert sum(landed.values()) == count
    return landed


def test_attached_program_keeps_connections_off_the_avoided_sockets(
    group: list[socket.socket],
) -> None:
    program = steering.steering_program(len(group), [1, 3])
    attach_steering(group[4], steering.encode(program))  # any member steers the whole group
    landed = _landings(group, 150)
    assert landed[1] == 0 and landed[3] == 0
    assert all(landed[index] > 10 for index in (0, 2, 4)), landed
    # The hash fallback replaces it: every socket receives connections again.
    attach_steering(group[0], steering.encode(steering.HASH_FALLBACK))
    assert set(_landings(group, 150)) == set(range(5))


def test_the_predicted_order_after_a_leave_is_the_kernels(group: list[socket.socket]) -> None:
    order = tuple(range(len(group)))
    for leaving in (1, 0):
        group[leaving].shutdown(socket.SHUT_RD)
        order = steering.group_after_leave(order, leaving)
    assert order == (3, 4, 2)
    for index, member in enumerate(order):
        # A program returning ``index``: the connections land on the member the policy names.
        attach_steering(group[2], steering.encode([(0x06, 0, 0, index)]))
        assert _landings(group, 5) == {member: 5}
