"""WebSocket echo round trips: 64 connections (``--clients``), each sending a 32-byte text
message and sending the next when the echo is back, for a fixed time; one server worker each:
theframework, uvicorn with its ``websockets`` implementation and Granian's ASGI interface (the
peers from bench/.venv-peers, bench/setup.sh).

The client is build/bench/ws_client (C++, epoll, one thread, pinned to CPU 1; the server to
CPU 0). Round trips per second can still be capped by the client on two cores, so the server's
CPU time per round trip (``/proc/PID/stat`` of its process tree over the client's whole run,
divided by every round trip including the warm-up) is reported too: it does not depend on the
client's speed. Rounds alternate the server order; medians are reported, and ratios to
theframework are taken within each round.

    .venv/bin/python bench/websocket_echo.py [--clients 64] [--seconds 5] [--rounds 3]
        [--servers theframework,uvicorn,granian] [--output bench/results/websocket_echo.md]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from run import running
from websocket_servers import LOGS, emit, median, prepare, rotated, run_client, select

SERVER_NAMES = ("theframework", "uvicorn", "granian")
REFERENCE = "theframework"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVER_NAMES))
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    arguments = parser.parse_args()
    prepare(arguments.clients + 1024)
    servers = select(arguments.servers, SERVER_NAMES)
    rates: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    for round_index in range(arguments.rounds):
        this_round: dict[str, float] = {}
        for server in rotated(servers, round_index):
            with running(server, LOGS, "echo") as process:
                cpu_before = process.cpu_seconds()
                report = run_client(
                    process.port, "echo", arguments.clients, arguments.seconds, arguments.warmup
                )
                cpu_used = process.cpu_seconds() - cpu_before
            rates[server.name].append(report["rate"])
            cpu[server.name].append(cpu_used / report["messages_total"] * 1e6)
            this_round[server.name] = report["rate"]
        for name, rate in this_round.items():
            if REFERENCE in this_round:
                ratios[name].append(this_round[REFERENCE] / rate)
    lines = [
        f"WebSocket echo, {arguments.clients} connections, 32-byte text, closed loop "
        f"(ws_client, {arguments.rounds} round(s) of {arguments.warmup:g} s warm-up + "
        f"{arguments.seconds:g} s; medians):",
        "",
        "| server | round trips/s | theframework's rate / this | server CPU per round trip |",
        "|---|---|---|---|",
    ]
    for server in servers:
        ratio = f"{median(ratios[server.name]):.2f}x" if ratios[server.name] else "-"
        lines.append(
            f"| {server.description} | {median(rates[server.name]):,.0f} | {ratio} | "
            f"{median(cpu[server.name]):.1f} µs |"
        )
    emit("\n".join(lines), arguments.output)


if __name__ == "__main__":
    main()
