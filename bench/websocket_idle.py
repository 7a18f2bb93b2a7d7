"""Memory of idle WebSockets: one server process holds N upgraded connections (default 100,000)
whose handlers wait for a message; the RSS (VmRSS) of the server's processes is read before and
after, and the difference divided by N is the cost of one idle WebSocket, everything the server
allocates included (the kernel's socket buffers are not in RSS).

Rows (``--rows``): ``theframework`` (``--ws-compression none``, no extension offered),
``theframework-listen`` (the same server, its WebSockets on ``/echo-listen``, which calls
``WebSocket.listen``: no greenlet waits for an idle one),
``theframework-deflate`` (permessage-deflate negotiated and one compressed message echoed on
each connection, so both zlib streams exist: context takeover, the server's 4 KiB windows),
``theframework-deflate-nct`` (the same with client_no_context_takeover and
server_no_context_takeover, so no zlib state survives a message),
``theframework-deflate-no-context`` (the client's offer of ``theframework-deflate`` answered by
``--ws-compression deflate-no-context``: no context takeover either way), ``uvicorn`` (its
``websockets`` implementation) and ``granian`` (ASGI interface), both without compression,
serving apps/ws_asgi_app.py's echo from bench/.venv-peers (bench/setup.sh). One worker each.

The client is this process (the server runs apart, on CPU 0): blocking sockets, one handshake
after the other, from several source addresses (127.0.0.2, .3, ...: 10,000 connections each,
under the ephemeral port range of one address). After the second RSS reading every connection
sends one message and must get its echo back: the figure counts live WebSockets only. The open
file limit is raised for the client and the server (the hard limit too where allowed: root with
CAP_SYS_RESOURCE); when it stays below the count asked for, the largest count that fits is
measured and the table says so.

    .venv/bin/python bench/websocket_idle.py [--connections 100000]
        [--rows theframework,theframework-listen,theframework-deflate,theframework-deflate-nct,
                theframework-deflate-no-context,uvicorn,granian]
        [--output bench/results/websocket_idle.md]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import time
import zlib
from pathlib import Path

from run import ServerProcess, running
from websocket_servers import LOGS, SERVERS, emit, prepare, select

# Row name -> (server in websocket_servers.SERVERS, the client's extension offer).
ROWS = {
    "theframework": ("theframework", ""),
    "theframework-deflate": (
        "theframework-deflate",
        "permessage-deflate; client_max_window_bits",
    ),
    "theframework-deflate-nct": (
        "theframework-deflate",
        "permessage-deflate; client_max_window_bits; client_no_context_takeover; "
        "server_no_context_takeover",
    ),
    "theframework-deflate-no-context": (
        "theframework-deflate-no-context",
        "permessage-deflate; client_max_window_bits",
    ),
    "uvicorn": ("uvicorn", ""),
    "granian": ("granian", ""),
    "theframework-listen": ("theframework", ""),
}
# Rows whose WebSockets open another route than /echo.
PATHS = {"theframework-listen": "/echo-listen"}
PER_SOURCE_ADDRESS = 10_000
FILE_MARGIN = 256  # files a server or the client opens beside its connections
IP_BIND_ADDRESS_NO_PORT = 24  # <linux/in.h>: the port is chosen at connect(), per destination
PROBE = b"ping"


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("server closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> bytes:
    """The payload of one unmasked server frame (short: under 126 bytes)."""
    head = b""
    while len(head) < 2:
        chunk = sock.recv(2 - len(head))
        if not chunk:
            raise EOFError("server closed")
        head += chunk
    remaining = head[1] & 0x7F
    payload = b""
    while len(payload) < remaining:
        chunk = sock.recv(remaining - len(payload))
        if not chunk:
            raise EOFError("server closed")
        payload += chunk
    return payload


def masked_frame(first_byte: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    length = len(payload)
    header = (
        struct.pack("!BB", first_byte, 0x80 | length)
        if length < 126
        else struct.pack("!BBH", first_byte, 0x80 | 126, length)
    )
    return header + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def open_websocket(port: int, offer: str, index: int, path: str = "/echo") -> socket.socket:
    """WebSocket number ``index`` to the echo route ``path``, from 127.0.0.(2 + index //
    10,000)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((f"127.0.0.{2 + index // PER_SOURCE_ADDRESS}", 0))
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    extension = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
        ).encode()
    )
    head = read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    if offer:
        assert b"permessage-deflate" in head, head
        # One compressed message each way: the zlib streams are created on first use.
        compressor = zlib.compressobj(wbits=-12)
        text = b"hello idle websocket " * 8
        payload = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        sock.sendall(masked_frame(0xC1, payload[:-4]))
        read_frame(sock)  # the echo (compressed or not, as the server decides)
    return sock


def live(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` echo a message (all sent first, then all read)."""
    frame = masked_frame(0x81, PROBE)
    for sock in sockets:
        sock.sendall(frame)
    answered = 0
    for sock in sockets:
        try:
            answered += read_frame(sock) == PROBE
        except TimeoutError:
            break  # one silent connection (60 s): the server stopped answering; count no further
        except (OSError, EOFError):
            continue
    return answered


def total_rss_kib(process: ServerProcess) -> int:
    return sum(process.rss_kib().values())


def measure(row: str, connections: int) -> str:
    """Opens ``connections`` idle WebSockets on a fresh server; the row of the table."""
    server_name, offer = ROWS[row]
    server = SERVERS[server_name]
    path = PATHS.get(row, "/echo")
    with running(server, LOGS, f"idle-{row}") as process:
        sockets = [open_websocket(process.port, offer, 0, path)]  # warm-up: code paths, pools
        before = total_rss_kib(process)
        started = time.monotonic()
        try:
            sockets += [
                open_websocket(process.port, offer, index, path) for index in range(connections)
            ]
            opened = time.monotonic() - started
            after = total_rss_kib(process)
            answered = live(sockets[1:])
        finally:
            for sock in sockets:
                sock.close()
    each = (after - before) * 1024 / connections
    return (
        f"| {row} | {connections:,} | {answered:,} | {before / 1024:,.1f} MiB | "
        f"{after / 1024:,.1f} MiB | {each:,.0f} B ({each / 1024:.1f} KiB) | {opened:.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument(
        "--rows",
        default="theframework,theframework-listen,theframework-deflate,theframework-deflate-nct,"
        "theframework-deflate-no-context,uvicorn,granian",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    arguments = parser.parse_args()
    rows = arguments.rows.split(",")
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}: choose among {', '.join(ROWS)}")
    file_limit = prepare(arguments.connections + FILE_MARGIN)
    connections = min(arguments.connections, file_limit - FILE_MARGIN)
    limited = (
        f" (the {arguments.connections:,} asked for do not fit: one process may open "
        f"{file_limit:,} files here, and this machine does not let us raise that)"
        if connections < arguments.connections
        else ""
    )
    runnable = {server.name for server in select(",".join({ROWS[row][0] for row in rows}), SERVERS)}
    lines = [
        f"{connections:,} idle WebSockets{limited}, one server process each (RSS of the server's "
        "processes; answered: connections that echoed a message after the second reading):",
        "",
        "| server | idle WebSockets | answered | RSS before | RSS after | per WebSocket | "
        "time to open |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if ROWS[row][0] in runnable:
            lines.append(measure(row, connections))
            print(lines[-1], flush=True)
    emit("\n".join(lines), arguments.output)


if __name__ == "__main__":
    main()
