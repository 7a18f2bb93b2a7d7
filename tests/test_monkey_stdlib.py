"""patch_all(): time.sleep, sockets (timeouts, non-blocking mode, accept/connect, makefile,
close), select/poll/selectors, subprocess and DNS inside a hub, and the unchanged behaviour of
the same calls in a plain thread. The scenario runs in tests/monkey_scripts/sleep_and_sockets.py
(its own process: patching is process-wide)."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from monkey_scripts.runner import run_script

pytestmark = pytest.mark.timeout(120)

# Timeouts must fire no earlier than asked and not much later (CI machines are noisy).
MARGIN = 0.4


def assert_timed_out(outcome: list[Any], expected: float, name: str = "TimeoutError") -> None:
    kind, elapsed = outcome
    assert kind == name
    assert expected - 0.01 <= elapsed < expected + MARGIN, elapsed


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    return {}


@pytest.fixture
def report(backend: str, reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The script's report on ``backend`` (run once per backend)."""
    if backend not in reports:
        reports[backend] = run_script("sleep_and_sockets.py", backend)
    return reports[backend]


def test_everything_is_patched(report: dict[str, Any]) -> None:
    assert report["patched"] == [True] * 6


def test_hundred_sleeps_overlap(report: dict[str, Any]) -> None:
    # 100 greenlets each calling time.sleep(0.5): serially 50 s.
    assert report["sleep"]["errors"] == []
    assert 0.5 <= report["sleep"]["elapsed"] < 2.0


def test_recv_timeout_while_others_run(report: dict[str, Any]) -> None:
    result = report["recv_timeout"]
    assert_timed_out([result["outcome"], result["elapsed"]], 0.2)
    assert result["message"] == "timed out"
    # The ticker greenlet ran every 10 ms during both 0.2 s waits.
    assert result["ticks"] >= 15


def test_default_timeout_accept_connect_and_makefile(report: dict[str, Any]) -> None:
    result = report["accept"]
    assert result["default"] == 0.15
    assert_timed_out(result["accept"], 0.15)
    assert result["echoed"] == "ping"
    assert result["lines"] == ["line one\n", "line two\n"]
    assert result["kinds"] == ["GreenSocket", "GreenSocket", 2.0]


def test_connect_timeout(report: dict[str, Any]) -> None:
    result = report["connect_timeout"]
    assert_timed_out([result["outcome"], result["elapsed"]], 0.2)
    # connect_ex reports a timeout as EWOULDBLOCK, like CPython; a refused port as ECONNREFUSED.
    assert result["connect_ex"] == errno.EWOULDBLOCK
    assert result["refused"] == errno.ECONNREFUSED


def test_non_blocking_sockets_keep_their_semantics(report: dict[str, Any]) -> None:
    assert report["non_blocking"]["outcomes"] == ["BlockingIOError", False, 0.0, "z"]


def test_sendall_waits_for_room(report: dict[str, Any]) -> None:
    assert report["sendall"]["intact"]


def test_close_wakes_a_waiting_greenlet(report: dict[str, Any]) -> None:
    assert report["close"]["outcome"] == ["OSError"]


def test_select_poll_and_selectors(report: dict[str, Any]) -> None:
    result = report["select"]
    assert_timed_out(result["select_timeout"], 0.2, "ok")
    assert result["select_ready"]
    assert result["poll"]
    assert_timed_out(result["poll_timeout"], 0.15, "ok")
    assert result["selector"] == ["GreenPollSelector", ["data"]]
    assert result["hidden"] == [False, False]
    assert result["ticks"] >= 20


def test_subprocess_waits_cooperatively(report: dict[str, Any]) -> None:
    result = report["subprocess"]
    assert result["results"] == ["0", "1", "2", "3", "4"]
    # Five children sleeping 0.4 s each, waited for concurrently (serially 2 s).
    assert result["elapsed"] < 1.6
    assert result["echo"] == "through the pipe"
    assert result["timeout"][0] == "TimeoutExpired"
    assert 0.19 <= result["timeout"][1] < 0.2 + MARGIN
    assert result["killed"] == -9
    assert result["ticks"] >= 20


def test_dns_off_the_hub(report: dict[str, Any]) -> None:
    result = report["dns"]
    assert result["localhost"] == ["127.0.0.1", 80]
    assert result["numeric"] == ["127.0.0.1", 80]
    assert result["byname"] == "127.0.0.1"
    assert "127.0.0.1" in result["byname_ex"]
    assert result["nameinfo"] == "127.0.0.1"
    assert result["missing"] == "gaierror"


def test_plain_thread_behaves_like_the_original(report: dict[str, Any]) -> None:
    result = report["thread"]
    assert result["in_hub"] is False
    assert 0.05 <= result["sleep"] < 0.05 + MARGIN
    assert_timed_out(result["recv"], 0.1)
    assert result["data"] == "t"
    assert result["select"] == [[], [], []]
    assert result["dns"] == "127.0.0.1"


def test_a_timeout_beyond_polls_int_range_waits_outside_a_hub() -> None:
    # poll() takes an int of milliseconds: settimeout(2**31) used to raise OverflowError in a
    # patched recv outside a hub (CPython's test_socket testLargeTimeout, gh-126876).
    import socket
    import time

    from theframework.monkey._wait import wait_fd

    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"x")
        wait_fd(left.fileno(), write=False, deadline=time.monotonic() + 2**31)
        assert left.recv(1) == b"x"
        with pytest.raises(TimeoutError, match="timed out"):
            wait_fd(left.fileno(), write=False, deadline=time.monotonic() + 0.05)
