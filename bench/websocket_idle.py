"""Memory of idle WebSockets: one server process holds N upgraded connections whose handlers
wait in ``receive()`` (greenlet suspended on the hub); the server's RSS (VmRSS) is read before
and after, and the difference divided by N is the cost of one idle WebSocket, everything
included (kernel socket excluded: RSS is user memory).

Variants: ``plain`` (no compression), ``deflate`` (permessage-deflate negotiated and one
compressed message echoed on each connection, so both zlib streams exist: context takeover, the
server's 4 KiB windows), ``deflate-nct`` (the same with client_no_context_takeover and
server_no_context_takeover, so no zlib state survives a message).

    .venv/bin/python bench/websocket_idle.py [--connections 10000] [--variants plain,deflate]
        [--server theframework|uvicorn] [--ws-compression deflate|deflate-no-context]

``--server uvicorn`` measures uvicorn with its ``websockets`` implementation (bench/.venv-peers,
made by bench/setup.sh) serving the same echo (bench/apps/ws_asgi_app.py).

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

from theframework import Framework, Request, Response

app = Framework()


@app.get("/echo")
def echo(request: Request, response: Response) -> None:
    ws = request.websocket()
    for message in ws:
        ws.send(message)


OFFERS = {
    "plain": "",
    "deflate": "permessage-deflate; client_max_window_bits",
    "deflate-nct": "permessage-deflate; client_max_window_bits; client_no_context_takeover; "
    "server_no_context_takeover",
}


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    assert match is not None
    return int(match.group(1))


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("server closed")
        data += chunk
    return data


def masked_frame(first_byte: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    length = len(payload)
    header = (
        struct.pack("!BB", first_byte, 0x80 | length)
        if length < 126
        else struct.pack("!BBH", first_byte, 0x80 | 126, length)
    )
    return header + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def open_websocket(port: int, offer: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    extension = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
    sock.sendall(
        (
            "GET /echo HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
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
        first = sock.recv(2)  # the echo (compressed or not, as the server decides)
        length = first[1] & 0x7F
        while length > 0:
            length -= len(sock.recv(length))
    return sock


def server_command(server: str, connections: int, compression: str) -> tuple[list[str], str]:
    """The command line of ``server`` and the pattern of its "listening" line (port group)."""
    if server == "uvicorn":
        peers = Path(__file__).resolve().parent / ".venv-peers" / "bin" / "python"
        return (
            [str(peers), "-m", "uvicorn", "apps.ws_asgi_app:app", "--port", "0", "--ws",
             "websockets", "--ws-ping-interval", "0", "--backlog", "4096"],
            r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        )  # fmt: skip
    return (
        [sys.executable, "-m", "theframework", "websocket_idle:app", "--port", "0",
         "--max-connections", str(connections + 100), "--backlog", "4096",
         "--ws-ping-interval", "0", "--ws-compression", compression],
        r"listening on http://127\.0\.0\.1:(\d+)",
    )  # fmt: skip


def measure(
    connections: int, variant: str, server_name: str, compression: str
) -> tuple[int, int, float]:
    bench = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    raise_file_limit(connections * 2 + 1024)
    command, pattern = server_command(server_name, connections, compression)
    server = subprocess.Popen(
        command, cwd=bench, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert server.stdout is not None
        port = 0
        for line in server.stdout:
            match = re.search(pattern, line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the server did not start"
        # Keep reading its output (uvicorn logs every connection): a full pipe would stall it.
        threading.Thread(target=server.stdout.read, daemon=True).start()
        sockets = [open_websocket(port, OFFERS[variant])]  # warm-up: code paths, pools
        before = rss_kib(server.pid)
        sockets += [open_websocket(port, OFFERS[variant]) for _ in range(connections)]
        after = rss_kib(server.pid)
        for sock in sockets:
            sock.close()
        return before, after, (after - before) * 1024 / connections
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--variants", default="plain,deflate,deflate-nct")
    parser.add_argument("--server", choices=("theframework", "uvicorn"), default="theframework")
    parser.add_argument(
        "--ws-compression", choices=("deflate", "deflate-no-context"), default="deflate"
    )
    arguments = parser.parse_args()
    print(
        "| server | variant | idle WebSockets | RSS before (KiB) | RSS after (KiB) | bytes each |"
    )
    print("|---|---|---|---|---|---|")
    for variant in arguments.variants.split(","):
        before, after, each = measure(
            arguments.connections, variant, arguments.server, arguments.ws_compression
        )
        print(
            f"| {arguments.server} | {variant} | {arguments.connections:,} | {before:,} | "
            f"{after:,} | {each:,.0f} |"
        )


if __name__ == "__main__":
    main()
