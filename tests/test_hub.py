"""The hub itself: construction and backend choice, run/stop, spawn/schedule/kill/sleep, and the
switching rules (HubSwitchError, NoHubError)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import greenlet
import pytest
from helpers import let_hub_run, wait_for

from theframework import _core

pytestmark = pytest.mark.timeout(60)


class Boom(Exception):
    """An exception no library code raises."""


@pytest.fixture
def sigalrm_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def sigusr1_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, previous)


# --------------------------------------------------------------------------------------------
# Construction and backend choice


def test_bogus_backend_raises_value_error() -> None:
    with pytest.raises(ValueError):
        _core.Hub(backend="bogus")
    with pytest.raises(ValueError):
        _core.Hub("epol")


def test_default_backend_is_io_uring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THEFRAMEWORK_BACKEND", raising=False)
    default = _core.Hub()
    assert default.backend == "io_uring"
    assert default.fallback_reason is None
    assert _core.Hub("auto").backend == "io_uring"


def test_forced_backend_is_used(backend: str) -> None:
    instance = _core.Hub(backend)
    assert instance.backend == backend
    assert instance.fallback_reason is None
    assert not instance.running
    assert instance.pending == 0


@pytest.mark.parametrize("name", ["epoll", "io_uring"])
def test_environment_variable_picks_the_backend(name: str) -> None:
    environment = dict(os.environ, THEFRAMEWORK_BACKEND=name)
    program = "from theframework import _core; print(_core.Hub().backend)"
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_explicit_backend_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEFRAMEWORK_BACKEND", "epoll")
    assert _core.Hub("io_uring").backend == "io_uring"
    assert _core.Hub().backend == "epoll"


# --------------------------------------------------------------------------------------------
# run / stop


def test_run_returns_main_value_and_passes_arguments(hub: _core.Hub) -> None:
    def main(a: int, b: int, *, c: int) -> tuple[int, int, int]:
        assert hub.running
        assert _core.get_hub() is hub
        assert _core.in_hub()
        _core.sleep(0.001)
        return a, b, c

    assert not hub.running
    assert hub.run(main, 1, 2, c=3) == (1, 2, 3)
    assert not hub.running
    assert _core.get_hub() is None


def test_run_reraises_main_exception(hub: _core.Hub) -> None:
    error = Boom("from main")

    def main() -> None:
        _core.sleep(0)
        raise error

    with pytest.raises(Boom) as raised:
        hub.run(main)
    assert raised.value is error
    assert not hub.running


def test_hub_can_run_again(hub: _core.Hub) -> None:
    assert hub.run(lambda: 1) == 1
    assert hub.run(lambda: 2) == 2


def test_exception_in_spawned_greenlet_does_not_kill_the_hub(hub: _core.Hub) -> None:
    ran_after: list[bool] = []

    def crash() -> None:
        raise Boom("in a spawned greenlet")

    def main() -> str:
        crashing = _core.spawn(crash)
        let_hub_run()
        assert crashing.dead
        _core.spawn(ran_after.append, True)
        _core.sleep(0.01)
        return "alive"

    assert hub.run(main) == "alive"
    assert ran_after == [True]


def test_stop_from_signal_handler_via_itimer(hub: _core.Hub, sigalrm_restored: None) -> None:
    signal.signal(signal.SIGALRM, lambda signum, frame: hub.stop())
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    started = time.monotonic()
    assert hub.run() is None
    assert time.monotonic() - started < 5
    assert not hub.running


def test_stop_from_signal_handler_via_kill(hub: _core.Hub, sigusr1_restored: None) -> None:
    signal.signal(signal.SIGUSR1, lambda signum, frame: hub.stop())
    exits: list[BaseException] = []

    def main() -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        try:
            _core.sleep(30)
        except greenlet.GreenletExit as exit_:
            exits.append(exit_)
            raise

    started = time.monotonic()
    # How run reports a main ended by stop() is left open by the contract.
    with contextlib.suppress(greenlet.GreenletExit):
        hub.run(main)
    assert time.monotonic() - started < 5
    assert len(exits) == 1
    assert not hub.running


def test_stop_from_another_thread(hub: _core.Hub) -> None:
    hub_running = threading.Event()
    exits: list[BaseException] = []

    def stopper() -> None:
        assert hub_running.wait(10)
        hub.stop()

    def main() -> None:
        hub_running.set()
        try:
            _core.sleep(30)
        except greenlet.GreenletExit as exit_:
            exits.append(exit_)
            raise

    thread = threading.Thread(target=stopper)
    thread.start()
    started = time.monotonic()
    try:
        hub.run(main)
    except greenlet.GreenletExit:
        pass
    finally:
        thread.join(10)
    assert time.monotonic() - started < 5
    assert len(exits) == 1


def test_stop_from_a_greenlet(hub: _core.Hub) -> None:
    def stopper() -> None:
        hub.stop()

    def main() -> None:
        _core.spawn(stopper)
        _core.sleep(30)

    started = time.monotonic()
    with contextlib.suppress(greenlet.GreenletExit):
        hub.run(main)
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------------------------
# Switching rules


def test_blocking_call_without_hub_raises_no_hub_error() -> None:
    assert _core.get_hub() is None
    assert not _core.in_hub()
    assert _core.pending() == 0
    with pytest.raises(_core.NoHubError):
        _core.sleep(0)
    with pytest.raises(_core.NoHubError):
        _core.sleep(0.01)
    reader, writer = os.pipe()
    try:
        with pytest.raises(_core.NoHubError):
            _core.recv(reader, 1)
        with pytest.raises(_core.NoHubError):
            _core.wait_readable(reader)
    finally:
        os.close(reader)
        os.close(writer)
    assert issubclass(_core.NoHubError, _core.HubError)
    assert issubclass(_core.HubSwitchError, _core.HubError)
    assert issubclass(_core.HubError, RuntimeError)


def test_blocking_call_after_the_hub_stopped_raises_no_hub_error(hub: _core.Hub) -> None:
    hub.run(lambda: None)
    with pytest.raises(_core.NoHubError):
        _core.sleep(0)


def test_blocking_call_in_another_thread_raises_no_hub_error(hub: _core.Hub) -> None:
    outcome: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            _core.sleep(0)
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(None)

    def main() -> None:
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(10)  # blocks the hub briefly; nothing else runs in it

    hub.run(main)
    assert len(outcome) == 1
    assert isinstance(outcome[0], _core.NoHubError)


def test_blocking_call_from_the_hub_greenlet_raises_hub_switch_error(
    hub: _core.Hub, sigalrm_restored: None
) -> None:
    # A Python signal handler runs in whichever greenlet is current when the signal is checked:
    # while every greenlet sleeps, that is the hub waiting in the kernel.
    seen: list[tuple[Any, BaseException | None, bool]] = []

    def handler(signum: int, frame: object) -> None:
        current = greenlet.getcurrent()
        in_hub = _core.in_hub()
        try:
            _core.sleep(0)
        except BaseException as error:
            seen.append((current, error, in_hub))
        else:
            seen.append((current, None, in_hub))

    def main() -> Any:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        _core.sleep(0.3)
        return greenlet.getcurrent().parent

    hub_greenlet = hub.run(main)
    assert len(seen) == 1
    current, error, in_hub = seen[0]
    assert current is hub_greenlet, "the signal handler did not run in the hub greenlet"
    assert in_hub is False
    assert isinstance(error, _core.HubSwitchError), error


def test_spawned_greenlets_have_the_hub_as_parent(hub: _core.Hub) -> None:
    def main() -> None:
        hub_greenlet = greenlet.getcurrent().parent
        child = _core.spawn(lambda: None)
        assert child.parent is hub_greenlet
        let_hub_run()
        assert child.dead

    hub.run(main)


# --------------------------------------------------------------------------------------------
# spawn / schedule / kill / sleep


def test_spawn_passes_arguments(hub: _core.Hub) -> None:
    results: list[tuple[Any, ...]] = []

    def main() -> None:
        _core.spawn(lambda *args, **kwargs: results.append((args, kwargs)), 1, "two", three=3)
        let_hub_run()

    hub.run(main)
    assert results == [((1, "two"), {"three": 3})]


def test_sleep_zero_yields_and_greenlets_interleave(hub: _core.Hub) -> None:
    order: list[str] = []

    def worker(name: str) -> None:
        for index in range(5):
            order.append(f"{name}{index}")
            _core.sleep(0)

    def main() -> None:
        first = _core.spawn(worker, "a")
        second = _core.spawn(worker, "b")
        wait_for(lambda: first.dead and second.dead)

    hub.run(main)
    assert order == [f"{name}{index}" for index in range(5) for name in "ab"]


def test_sleep_lasts_at_least_its_duration(hub: _core.Hub) -> None:
    def main() -> float:
        started = time.monotonic()
        _core.sleep(0.1)
        return time.monotonic() - started

    elapsed = hub.run(main)
    assert 0.1 <= elapsed < 0.6


def test_sleeps_wake_in_deadline_order(hub: _core.Hub) -> None:
    woken: list[str] = []

    def sleeper(name: str, seconds: float) -> None:
        _core.sleep(seconds)
        woken.append(name)

    def main() -> None:
        for name, seconds in (("c", 0.03), ("a", 0.01), ("d", 0.04), ("b", 0.02)):
            _core.spawn(sleeper, name, seconds)
        _core.sleep(0.06)
        wait_for(lambda: len(woken) == 4)

    hub.run(main)
    assert woken == ["a", "b", "c", "d"]


def test_io_is_polled_between_timer_wakeups(hub: _core.Hub) -> None:
    # 64 sleeps fall due together; the first to wake sends a byte to a greenlet blocked in recv.
    # That greenlet must run within the next few wake-ups, not after all of them: a request that
    # arrives while many timers fire starts at once instead of queuing behind them.
    order: list[str] = []
    reader_end, writer_end = socket.socketpair()

    def sleeper(number: int) -> None:
        _core.sleep(0.02)
        if number == 0:
            writer_end.send(b"x")
        order.append(f"sleeper {number}")

    def reader() -> None:
        assert _core.recv(reader_end.fileno(), 1) == b"x"
        order.append("reader")

    def main() -> None:
        _core.spawn(reader)
        for number in range(64):
            _core.spawn(sleeper, number)
        _core.sleep(0)  # everyone is waiting now
        time.sleep(0.05)  # blocks the whole hub: every sleep is due when the loop next looks
        wait_for(lambda: len(order) == 65)

    try:
        hub.run(main)
    finally:
        reader_end.close()
        writer_end.close()
    assert order[0] == "sleeper 0"
    assert sorted(order) == sorted(["reader", *(f"sleeper {n}" for n in range(64))])
    assert order.index("reader") <= 8, order[:12]


def test_pending_counts_waiting_sleeps(hub: _core.Hub) -> None:
    def main() -> None:
        assert _core.pending() == 0
        sleepers = [_core.spawn(_core.sleep, 0.05) for _ in range(3)]
        _core.sleep(0)
        assert _core.pending() == 3
        assert hub.pending == 3
        wait_for(lambda: all(sleeper.dead for sleeper in sleepers))
        assert _core.pending() == 0

    hub.run(main)
    assert _core.pending() == 0


def test_schedule_resumes_greenlet_with_value(hub: _core.Hub) -> None:
    received: list[Any] = []

    def parked() -> None:
        # Suspends without any operation; only schedule() brings it back.
        hub_greenlet = greenlet.getcurrent().parent
        assert hub_greenlet is not None
        received.append(hub_greenlet.switch())

    def main() -> None:
        target = _core.spawn(parked)
        let_hub_run()
        assert not target.dead and received == []
        _core.schedule(target, "value")
        wait_for(lambda: target.dead)

    hub.run(main)
    assert received == ["value"]


def test_kill_default_is_greenlet_exit(hub: _core.Hub) -> None:
    caught: list[BaseException] = []

    def victim() -> None:
        try:
            while True:
                _core.sleep(0)
        except BaseException as error:
            caught.append(error)
            raise

    def main() -> None:
        target = _core.spawn(victim)
        let_hub_run()
        _core.kill(target)
        wait_for(lambda: target.dead)
        _core.kill(target)  # killing a dead greenlet does nothing
        _core.kill(target, Boom("ignored"))
        let_hub_run()

    hub.run(main)
    assert len(caught) == 1
    assert type(caught[0]) is greenlet.GreenletExit


def test_kill_with_exception_class_and_instance(hub: _core.Hub) -> None:
    caught: list[BaseException] = []

    def victim() -> None:
        try:
            _core.sleep(30)
        except Boom as error:
            caught.append(error)

    def main() -> None:
        by_class = _core.spawn(victim)
        by_instance = _core.spawn(victim)
        let_hub_run()
        _core.kill(by_class, Boom)
        instance = Boom("instance")
        _core.kill(by_instance, instance)
        wait_for(lambda: by_class.dead and by_instance.dead)
        assert any(error is instance for error in caught)

    hub.run(main)
    assert len(caught) == 2
    assert all(type(error) is Boom for error in caught)


def test_kill_before_the_greenlet_started(hub: _core.Hub) -> None:
    def main() -> None:
        target = _core.spawn(_core.sleep, 30)
        _core.kill(target)
        wait_for(lambda: target.dead)

    started = time.monotonic()
    hub.run(main)
    assert time.monotonic() - started < 5


def test_main_returning_ends_run_and_kills_the_others(hub: _core.Hub) -> None:
    exits: list[str] = []

    def lingering(name: str) -> None:
        try:
            _core.sleep(30)
        except greenlet.GreenletExit:
            exits.append(name)
            raise

    def main() -> int:
        for name in ("x", "y"):
            _core.spawn(lingering, name)
        let_hub_run()
        return 7

    started = time.monotonic()
    assert hub.run(main) == 7
    assert time.monotonic() - started < 5
    assert sorted(exits) == ["x", "y"]


# --------------------------------------------------------------------------------------------
# Misuse and threads


def test_run_inside_a_running_hub_raises_hub_error(hub: _core.Hub, backend: str) -> None:
    def main() -> None:
        with pytest.raises(_core.HubError):
            hub.run(lambda: None)
        other = _core.Hub(backend)
        with pytest.raises(_core.HubError):
            other.run(lambda: None)
        assert not other.running

    hub.run(main)


def test_spawn_without_a_hub_raises_no_hub_error() -> None:
    with pytest.raises(_core.NoHubError):
        _core.spawn(lambda: None)


def test_kill_and_schedule_need_a_greenlet(hub: _core.Hub) -> None:
    def main() -> None:
        with pytest.raises(TypeError):
            _core.kill("not a greenlet")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            _core.schedule(42)  # type: ignore[arg-type]
        target = _core.spawn(_core.sleep, 30)
        with pytest.raises(TypeError):
            _core.kill(target, 42)  # type: ignore[arg-type]
        _core.kill(target)
        wait_for(lambda: target.dead)

    hub.run(main)


def test_exception_from_a_signal_handler_ends_run(hub: _core.Hub, sigalrm_restored: None) -> None:
    def handler(signum: int, frame: object) -> None:
        raise Boom("from the signal handler")

    exits: list[str] = []

    def waiting() -> None:
        try:
            _core.sleep(30)
        except greenlet.GreenletExit:
            exits.append("waiting")
            raise

    def main() -> None:
        _core.spawn(waiting)
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        _core.sleep(30)

    started = time.monotonic()
    with pytest.raises(Boom):
        hub.run(main)
    assert time.monotonic() - started < 5
    assert exits == ["waiting"]


def test_hubs_in_two_threads_at_once(backend: str) -> None:
    # One hub per thread: each thread runs its own at the same time, and sees only its own.
    results: dict[str, object] = {}
    both_running = threading.Barrier(2, timeout=10)

    def work(name: str) -> None:
        own = _core.Hub(backend)

        def main() -> tuple[bool, bytes]:
            left, right = socket.socketpair()
            with left, right:
                received: list[bytes] = []
                reader = _core.spawn(lambda: received.append(_core.recv(right.fileno(), 100)))
                let_hub_run()
                both_running.wait()  # blocks this hub briefly, while the other one runs
                _core.sendall(left.fileno(), name.encode())
                wait_for(lambda: reader.dead)
                return _core.get_hub() is own, received[0]

        try:
            results[name] = own.run(main)
        except BaseException as error:
            results[name] = error

    threads = [threading.Thread(target=work, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {"one": (True, b"one"), "two": (True, b"two")}
