"""The pure parts of systemd's protocols (theframework.process.systemd) and of the socket
options: $LISTEN_FDS / $LISTEN_PID / $LISTEN_FDNAMES, $WATCHDOG_USEC, the watchdog's freshness
rule, the octal mode parser. The real-process tests are in test_socket_activation.py and
test_systemd_notify.py."""

from __future__ import annotations

import os
import time

import pytest

from theframework.config import octal_mode
from theframework.process.systemd import (
    ActivatedSocket,
    Activation,
    reloading_message,
    stale_heartbeat,
    take_listen_fds,
    watchdog_interval,
)


def test_listen_fds_for_this_process_with_names_are_taken_and_removed() -> None:
    environ = {
        "LISTEN_FDS": "2",
        "LISTEN_PID": str(os.getpid()),
        "LISTEN_FDNAMES": "web:admin",
        "OTHER": "kept",
    }
    assert take_listen_fds(environ) == Activation(
        (ActivatedSocket(3, "web"), ActivatedSocket(4, "admin"))
    )
    assert environ == {"OTHER": "kept"}


def test_missing_names_are_unknown() -> None:
    environ = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "web"}
    activation = take_listen_fds(environ)
    assert [entry.name for entry in activation.sockets] == ["web", "unknown"]
    assert environ == {}


@pytest.mark.parametrize(
    ("environ", "note"),
    [
        ({"LISTEN_FDS": "1", "LISTEN_PID": "1"}, "LISTEN_FDS is for pid 1, not this one: ignored"),
        ({"LISTEN_FDS": "1"}, "LISTEN_FDS without LISTEN_PID: ignored (as sd_listen_fds does)"),
        (
            {"LISTEN_FDS": "many", "LISTEN_PID": str(os.getpid())},
            "LISTEN_FDS='many' is not a count of descriptors: ignored",
        ),
        (
            {"LISTEN_FDS": "-1", "LISTEN_PID": str(os.getpid())},
            "LISTEN_FDS='-1' is not a count of descriptors: ignored",
        ),
    ],
)
def test_listen_fds_not_for_us_are_removed_with_a_note(environ: dict[str, str], note: str) -> None:
    assert take_listen_fds(environ) == Activation(note=note)
    assert environ == {}


def test_no_listen_fds_is_no_activation() -> None:
    assert take_listen_fds({}) == Activation()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_watchdog_usec_for_this_process(
    environ: dict[str, str], interval: float | None
) -> None:
    assert watchdog_interval(environ) == interval


def test_a_heartbeat_older_than_watchdog_usec_and_a_beat_period_stops_the_pings() -> None:
    # WATCHDOG_USEC 2 s (pings every 1 s); an idle hub beats every 0.5 s.
    assert stale_heartbeat([(1, 10, 0.5), (2, 11, 2.4)], 1.0, 0.5) is None
    assert stale_heartbeat([(1, 10, 0.5), (2, 11, 2.5), (3, 12, 5.0)], 1.0, 0.5) == (2, 11, 2.5)
    assert stale_heartbeat([], 1.0, 0.5) is None


def test_reloading_message_carries_the_monotonic_clock() -> None:
    before = time.monotonic_ns() // 1000
    first, second = reloading_message().split("\n")
    assert first == "RELOADING=1"
    name, value = second.split("=")
    assert name == "MONOTONIC_USEC"
    assert before <= int(value) <= time.monotonic_ns() // 1000


@pytest.mark.parametrize(
    ("text", "mode"),
    [("0660", 0o660), ("660", 0o660), ("0o600", 0o600), (" 0777 ", 0o777), ("", None)],
)
def test_octal_mode(text: str, mode: int | None) -> None:
    assert octal_mode(text) == mode


def test_octal_mode_refuses_non_octal_digits() -> None:
    with pytest.raises(ValueError):
        octal_mode("0989")
