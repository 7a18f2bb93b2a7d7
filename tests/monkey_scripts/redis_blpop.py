"""redis-py under patch_all(): 200 handlers of theframework's HTTP server each block in BLPOP
(timeout 10 s) while a pusher feeds their lists one by one and a probe keeps asking /hello.
Usage: redis_blpop.py BACKEND REDIS_PORT"""

from theframework.monkey import patch_all

patch_all()

import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402
from common import HelloProbe, Server, join, run, spawn_all  # noqa: E402

HANDLERS = 200


def main() -> dict[str, Any]:
    client = redis.Redis(
        host="127.0.0.1", port=int(sys.argv[2]), socket_timeout=30, max_connections=1000
    )
    client.flushall()

    def blpop(request: Any, response: Any) -> None:
        index = request.query_params["i"]
        popped = client.blpop([f"list:{index}"], timeout=10)
        response.write(b"timeout" if popped is None else popped[1])

    server = Server({"/blpop": blpop})
    probe = HelloProbe(server)
    started = time.monotonic()
    greenlets, results = spawn_all(HANDLERS, lambda index: server.get(f"/blpop?i={index}"))
    # Readiness signal: redis counts the clients blocked in BLPOP.
    most_blocked = 0
    deadline = time.monotonic() + 20
    while most_blocked < HANDLERS and time.monotonic() < deadline:
        most_blocked = max(most_blocked, client.info("clients")["blocked_clients"])
        time.sleep(0.01)
    for index in range(HANDLERS):
        client.rpush(f"list:{index}", f"value {index}")
        if index % 20 == 0:
            time.sleep(0.01)  # spread the pushes so the probe runs meanwhile
    join(greenlets, timeout=30)
    elapsed = time.monotonic() - started
    wrong = [repr(r) for i, r in enumerate(results) if r != [200, f"value {i}"]]
    hello = probe.stop()
    server.stop()
    client.close()
    return {"most_blocked": most_blocked, "wrong": wrong[:5], "elapsed": elapsed, "hello": hello}


if __name__ == "__main__":
    run(sys.argv[1], main)
