"""WebSocket echo round trips: C clients-worth of connections (default 64), each sending a
32-byte text message and waiting for its echo, for a fixed time; reports round trips per second.
Servers: theframework (one process, the echo route of bench/websocket_idle.py) and, when
bench/.venv-peers has them (bench/setup.sh), uvicorn with its ``websockets`` implementation.

The client is one asyncio process writing frames by hand (masked, no library in the loop); on a
small machine it shares the CPU with the server, so the figures compare servers under the same
client rather than give each one's ceiling.

    .venv/bin/python bench/websocket_echo.py [--clients 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MESSAGE = b"x" * 32


def masked_text(payload: bytes) -> bytes:
    key = os.urandom(4)
    header = struct.pack("!BB", 0x81, 0x80 | len(payload))
    return header + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


async def client(port: int, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /echo HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    frame = masked_text(MESSAGE)
    done = 0
    while time.monotonic() < stop_at:
        writer.write(frame)
        header = await reader.readexactly(2)
        await reader.readexactly(header[1] & 0x7F)
        done += 1
    counts.append(done)
    writer.close()


async def run_clients(port: int, clients: int, seconds: float) -> float:
    counts: list[int] = []
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(client(port, stop_at, counts) for _ in range(clients)))
    return sum(counts) / (time.monotonic() - started)


def start(command: list[str], pattern: str) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        command, cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(pattern, line)
        if match:
            # Keep reading its output (uvicorn logs every connection): a full pipe would stall it.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, int(match.group(1))
    raise RuntimeError(f"{command[0]} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    servers = {
        "theframework": (
            [sys.executable, "-m", "theframework", "websocket_idle:app", "--port", "0",
             "--ws-compression", "none"],
            r"listening on http://127\.0\.0\.1:(\d+)",
        ),
    }  # fmt: skip
    peers = BENCH / ".venv-peers" / "bin" / "python"
    if peers.exists():
        servers["uvicorn (websockets)"] = (
            [str(peers), "-m", "uvicorn", "apps.ws_asgi_app:app", "--port", "0", "--ws",
             "websockets", "--ws-per-message-deflate", "false", "--log-level", "info"],
            r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
        )  # fmt: skip
    print("| server | clients | round trips/s (32-byte text) |")
    print("|---|---|---|")
    for name, (command, pattern) in servers.items():
        server, port = start(command, pattern)
        try:
            rate = asyncio.run(run_clients(port, arguments.clients, arguments.seconds))
        finally:
            server.kill()
            server.wait()
        print(f"| {name} | {arguments.clients} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
