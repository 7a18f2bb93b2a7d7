"""theframework.offload: results and exceptions come back to the calling greenlet, only that
greenlet waits, a killed waiter leaves nothing behind, it works outside a hub, and (in a
patched worker script) CPU-bound work offloaded from 10 handlers lets /hello keep answering."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import greenlet
import pytest
from helpers import join, let_hub_run
from monkey_scripts.runner import run_script

from theframework import _core, offload
from theframework.runtime.offload import configure

pytestmark = pytest.mark.timeout(60)


class Failure(Exception):
    pass


def fail(message: str) -> None:
    raise Failure(message)


def block(seconds: float, *, tag: str = "") -> str:
    time.sleep(seconds)  # unpatched here: blocks the pool thread, as a C driver would
    return f"{tag}{threading.current_thread().name}"


@pytest.fixture(autouse=True)
def pool_of_ten() -> Iterator[None]:
    configure(threads=10)
    yield
    configure(threads=10)


def test_result_and_keyword_arguments(hub: _core.Hub) -> None:
    def main() -> str:
        return offload(block, 0.0, tag="ran in ")

    result = hub.run(main)
    assert result.startswith("ran in theframework-offload")


def test_exception_comes_back_to_the_caller(hub: _core.Hub) -> None:
    def main() -> None:
        with pytest.raises(Failure, match="boom"):
            offload(fail, "boom")

    hub.run(main)


def test_only_the_calling_greenlets_wait(hub: _core.Hub) -> None:
    ticks = 0

    def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            _core.sleep(0.01)

    def main() -> float:
        counter = _core.spawn(ticker)
        started = time.monotonic()
        workers = [_core.spawn(offload, block, 0.3) for _ in range(10)]
        join(*workers)
        elapsed = time.monotonic() - started
        _core.kill(counter)
        join(counter)
        return elapsed

    elapsed = hub.run(main)
    assert 0.3 <= elapsed < 1.5  # ten 0.3 s calls on ten threads: serially 3 s
    assert ticks >= 15


def test_killed_waiter_leaves_nothing_behind(hub: _core.Hub) -> None:
    outcome: list[str] = []

    def waiter() -> None:
        try:
            offload(block, 0.2)
        except greenlet.GreenletExit:
            outcome.append("killed")
            raise

    def main() -> None:
        victim = _core.spawn(waiter)
        let_hub_run()
        _core.kill(victim)
        join(victim)
        # The pool call still finishes; its completion must find the eventfd closed.
        _core.sleep(0.3)
        assert offload(block, 0.0)

    hub.run(main)
    assert outcome == ["killed"]


def test_outside_a_hub_the_thread_waits() -> None:
    assert offload(block, 0.01, tag="x").startswith("x")
    with pytest.raises(Failure):
        offload(fail, "outside")


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError):
        configure(threads=0)
    with pytest.raises(ValueError):
        configure(processes=-1)
    with pytest.raises(ValueError):
        configure(start_method="teleport")


def test_cpu_bound_offload_keeps_hello_answering(backend: str) -> None:
    report = run_script("offload_cpu.py", backend)
    assert report["cpu"] == [[200, "True"]] * 10
    assert report["blocking"] == [[200, "slept"]] * 10
    assert report["elapsed"] < 10
    hello = report["hello"]
    assert hello["failures"] == []
    assert hello["answers"] >= 10
    assert hello["slowest"] < 0.5, hello
