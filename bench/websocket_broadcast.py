"""WebSocket broadcast fan-out, 1 to 1,000: 1,000 connections (``--clients``) join one group;
connection 0 sends a 32-byte text message, the server broadcasts it to every member (itself
included), and the next message goes once all of them have received it. One server worker
each: theframework (``theframework.websocket.Group.broadcast``), uvicorn with its
``websockets`` implementation and Granian's ASGI interface (both running apps/ws_asgi_app.py,
which loops over its members awaiting each ``send``), and Granian's RSGI interface
(apps/ws_rsgi_app.py, the same loop over its members' transports).

Reported: messages delivered per second, the time one broadcast takes to reach all members
(median and p99 over the broadcasts; measured by the client from its send to the last arrival),
and the server's CPU time per delivered message (``/proc/PID/stat`` of its process tree over the
client's run, divided by every delivery including the warm-up). The client is
build/bench/ws_client on CPU 1, the server on CPU 0; rounds alternate the server order.

    .venv/bin/python bench/websocket_broadcast.py [--clients 1000] [--seconds 5] [--rounds 3]
        [--servers theframework,uvicorn,granian,granian-rsgi]
        [--output bench/results/websocket_broadcast.md]
"""

from __future__ import annotations

from websocket_servers import client_arguments, emit, measure_rounds, median


def main() -> None:
    arguments = client_arguments(__doc__.split("\n\n")[0], clients=1000)
    servers, figures = measure_rounds("broadcast", arguments)
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
