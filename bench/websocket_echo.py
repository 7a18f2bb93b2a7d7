"""WebSocket echo round trips: 64 connections (``--clients``), each sending a 32-byte text
message and sending the next when the echo is back, for a fixed time; one server worker each:
theframework, uvicorn with its ``websockets`` implementation and Granian's ASGI and RSGI
interfaces (the peers from bench/.venv-peers, bench/setup.sh).

The client is build/bench/ws_client (C++, epoll, one thread, pinned to CPU 1; the server to
CPU 0). Round trips per second can still be capped by the client on two cores, so the server's
CPU time per round trip (``/proc/PID/stat`` of its process tree over the client's whole run,
divided by every round trip including the warm-up) is reported too: it does not depend on the
client's speed. Rounds alternate the server order; medians are reported, and ratios to
theframework are taken within each round.

    .venv/bin/python bench/websocket_echo.py [--clients 64] [--seconds 5] [--rounds 3]
        [--servers theframework,uvicorn,granian,granian-rsgi]
        [--output bench/results/websocket_echo.md]
"""

from __future__ import annotations

from websocket_servers import client_arguments, emit, measure_rounds, median


def main() -> None:
    arguments = client_arguments(__doc__.split("\n\n")[0], clients=64)
    servers, figures = measure_rounds("echo", arguments)
    lines = [
        f"WebSocket echo, {arguments.clients} connections, 32-byte text, closed loop "
        f"(ws_client, {arguments.rounds} round(s) of {arguments.warmup:g} s warm-up + "
        f"{arguments.seconds:g} s; medians):",
        "",
        "| server | round trips/s | theframework's rate / this | server CPU per round trip |",
        "|---|---|---|---|",
    ]
    for server in servers:
        measured = figures[server.name]
        ratio = f"{median(measured['ratio']):.2f}x" if measured["ratio"] else "-"
        lines.append(
            f"| {server.description} | {median(measured['rate']):,.0f} | {ratio} | "
            f"{median(measured['cpu']):.1f} µs |"
        )
    emit("\n".join(lines), arguments.output)


if __name__ == "__main__":
    main()
