"""Exits (code 9, no Python cleanup) every time a worker imports it: a crash loop. With
$SPAWN_TIMES set, first appends "PID CLOCK_MONOTONIC_SECONDS" to that file (one line per
worker started), so a test can measure the respawn delays themselves."""

import os
import time

_times = os.environ.get("SPAWN_TIMES")
if _times:
    with open(_times, "a") as stream:
        stream.write(f"{os.getpid()} {time.monotonic()}\n")
os._exit(9)
