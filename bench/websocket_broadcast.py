"""WebSocket broadcast fan-out, 1 to 1,000: 1,000 connections (``--clients``) join one group;
connection 0 sends a 32-byte text message, the server broadcasts it to every member (itself
included), and the next message goes once all of them have received it. One server worker
each: theframework (``theframework.websocket.Group.broadcast``), uvicorn with its
``websockets`` implementation and Granian's ASGI interface (both running apps/ws_asgi_app.py,
which loops over its members awaiting each ``send``).

Reported: messages delivered per second, the time one broadcast takes to reach all members
(median and p99 over the broadcasts; measured by the client from its send to the last arrival),
and the server's CPU time per delivered message (``/proc/PID/stat`` of its process tree over the
client's run, divided by every delivery including the warm-up). The client is
build/bench/ws_client on CPU 1, the server on CPU 0; rounds alternate the server order.

    .venv/bin/python bench/websocket_broadcast.py [--clients 1000] [--seconds 5] [--rounds 3]
        [--servers theframework,uvicorn,granian] [--output bench/results/websocket_broadcast.md]
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
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVER_NAMES))
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    arguments = parser.parse_args()
    prepare(arguments.clients + 1024)
    servers = select(arguments.servers, SERVER_NAMES)
    figures: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for round_index in range(arguments.rounds):
        this_round: dict[str, float] = {}
        for server in rotated(servers, round_index):
            with running(server, LOGS, "broadcast") as process:
                cpu_before = process.cpu_seconds()
                report = run_client(
                    process.port, "broadcast", arguments.clients, arguments.seconds,
                    arguments.warmup,
                )  # fmt: skip
                cpu_used = process.cpu_seconds() - cpu_before
            measured = figures[server.name]
            measured["rate"].append(report["rate"])
            measured["p50"].append(report["p50"])
            measured["p99"].append(report["p99"])
            measured["cpu"].append(cpu_used / report["messages_total"] * 1e6)
            this_round[server.name] = report["rate"]
        for name, rate in this_round.items():
            if REFERENCE in this_round and rate > 0:
                figures[name]["ratio"].append(this_round[REFERENCE] / rate)
    lines = [
        f"WebSocket broadcast, 1 sender to {arguments.clients:,} members, 32-byte text, one "
        f"broadcast at a time (ws_client, {arguments.rounds} round(s) of {arguments.warmup:g} s "
        f"warm-up + {arguments.seconds:g} s; medians):",
        "",
        "| server | messages delivered/s | theframework's rate / this | one broadcast to all: "
        "p50 | p99 | server CPU per delivered message |",
        "|---|---|---|---|---|---|",
    ]
    for server in servers:
        measured = figures[server.name]
        ratio = f"{median(measured['ratio']):.2f}x" if measured["ratio"] else "-"
        lines.append(
            f"| {server.description} | {median(measured['rate']):,.0f} | {ratio} | "
            f"{median(measured['p50']):.2f} ms | {median(measured['p99']):.2f} ms | "
            f"{median(measured['cpu']):.2f} µs |"
        )
    emit("\n".join(lines), arguments.output)


if __name__ == "__main__":
    main()
