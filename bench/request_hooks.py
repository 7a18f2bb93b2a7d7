"""What the config file's request hooks cost: one serving process (``--workers 1``) answering
``GET /plaintext`` (bench/apps/tf_app.py) under wrk, with no config file, with a config file that
defines only ``on_exit`` (the request path must be untouched: no wrapper, no callback), and with
no-op ``pre_request`` + ``post_request``. Rounds alternate the three so that load on a shared
machine spreads over all of them. Then, in this process, what each hook adds per request: the
pre_request wrapper around a handler and the post_request after-response callback, timed
directly (a figure that the machine's load blurs much less than wrk's).

    .venv/bin/python bench/request_hooks.py [--rounds 3] [--seconds 5] [--connections 64]

Prints two Markdown tables (requests per second: median and every round; nanoseconds per call).
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "no config file": None,
    "on_exit only": "def on_exit(config):\n    pass\n",
    "pre_request + post_request (no-op)": (
        "def pre_request(request):\n    pass\n\n"
        "def post_request(request, status, seconds):\n    pass\n"
    ),
}


def _serve(config_file: str | None) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "theframework", "tf_app:app", "--port", "0"]
    if config_file is not None:
        command += ["--config", config_file]
    server = subprocess.Popen(
        command,
        cwd=ROOT / "bench" / "apps",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return server, int(match.group(1))
    raise RuntimeError(f"the server exited with {server.wait()} before listening")


def _wrk(port: int, seconds: int, connections: int) -> float:
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/plaintext"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match is not None, output
    return float(match.group(1))


def _call_costs(config_file: str) -> dict[str, float]:
    """Nanoseconds per call (best of 5 runs of 200,000) of a handler alone, behind the
    pre_request wrapper, and of the post_request callback, with ``config_file``'s no-op hooks."""
    from theframework.configfile import NO_HOOKS, load_config_file
    from theframework.server.serve import with_post_request, with_request_hooks

    hooks = load_config_file(config_file).hooks

    def handler(request: object, response: object) -> None:
        return None

    alone = with_request_hooks(handler, NO_HOOKS)
    wrapped = with_request_hooks(handler, hooks)
    after = with_post_request(None, hooks)
    assert after is not None
    calls: dict[str, Callable[[], object]] = {
        "handler alone": lambda: alone(None, None),  # type: ignore[arg-type]
        "pre_request wrapper + handler": lambda: wrapped(None, None),  # type: ignore[arg-type]
        "post_request callback": lambda: after(None, 200, 13, 0.001, None),
    }
    number = 200_000
    return {
        name: min(timeit.repeat(call, number=number, repeat=5)) / number * 1e9
        for name, call in calls.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    arguments = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in CONFIGS}
    costs: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        paths: dict[str, str | None] = {}
        for index, (name, text) in enumerate(CONFIGS.items()):
            if text is None:
                paths[name] = None
                continue
            path = Path(directory) / f"config{index}.py"
            path.write_text(text, encoding="utf-8")
            paths[name] = str(path)
        for _ in range(arguments.rounds):
            for name, path in paths.items():
                server, port = _serve(path)
                try:
                    _wrk(port, 1, arguments.connections)  # warm-up
                    results[name].append(_wrk(port, arguments.seconds, arguments.connections))
                finally:
                    server.send_signal(signal.SIGTERM)
                    server.wait(30)
        hooked = paths["pre_request + post_request (no-op)"]
        assert hooked is not None
        costs = _call_costs(hooked)
    print(f"| `GET /plaintext`, wrk -t2 -c{arguments.connections} -d{arguments.seconds}s | "
          "req/s (median) | rounds |")  # fmt: skip
    print("|---|---:|---|")
    for name, figures in results.items():
        rounds = ", ".join(f"{figure:,.0f}" for figure in figures)
        print(f"| {name} | {statistics.median(figures):,.0f} | {rounds} |")
    print()
    print("| in-process call | ns per call |")
    print("|---|---:|")
    for name, cost in costs.items():
        print(f"| {name} | {cost:.0f} |")


if __name__ == "__main__":
    main()
