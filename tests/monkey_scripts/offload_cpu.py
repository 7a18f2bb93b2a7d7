"""offload() from HTTP handlers: 10 handlers offload a CPU-bound function to the process pool
and 10 offload a blocking call to the thread pool, while a probe keeps asking /hello.
Usage: offload_cpu.py BACKEND"""

from theframework.monkey import patch_all

patch_all()

import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from common import HelloProbe, Server, join, run, spawn_all  # noqa: E402

from theframework import offload  # noqa: E402
from theframework.monkey import _originals  # noqa: E402
from theframework.runtime.offload import configure, shutdown  # noqa: E402

HANDLERS = 10


def burn(seconds: float) -> int:
    """Keeps a CPU busy for about ``seconds`` (in a pool process)."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += sum(range(1000))
    return count


def block(seconds: float) -> str:
    """A blocking call, as a driver written in C would make (in a pool thread)."""
    _originals.sleep(seconds)
    return "slept"


def main() -> dict[str, Any]:
    configure(threads=HANDLERS, processes=2)

    def cpu(_request: Any, response: Any) -> None:
        response.write(str(offload(burn, 0.2, process=True) > 0))

    def blocking(_request: Any, response: Any) -> None:
        response.write(offload(block, 0.5))

    server = Server({"/cpu": cpu, "/blocking": blocking})
    offload(burn, 0.01, process=True)  # start the pool processes before measuring
    probe = HelloProbe(server)
    started = time.monotonic()
    cpu_greenlets, cpu_results = spawn_all(HANDLERS, lambda _index: server.get("/cpu"))
    io_greenlets, io_results = spawn_all(HANDLERS, lambda _index: server.get("/blocking"))
    join(cpu_greenlets + io_greenlets, timeout=60)
    elapsed = time.monotonic() - started
    hello = probe.stop()
    server.stop()
    shutdown()
    return {"cpu": cpu_results, "blocking": io_results, "elapsed": elapsed, "hello": hello}


if __name__ == "__main__":
    run(sys.argv[1], main)
