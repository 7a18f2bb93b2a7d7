"""Memory of idle WebSockets: a server holds N upgraded connections (default 100,000) whose
handlers wait for a message; the RSS (VmRSS) of the server's processes (its supervisor or main
process and every worker) is read before and after, and the difference divided by N is the cost
of one idle WebSocket, everything the server allocates included (the kernel's socket buffers are
not in RSS).

Rows (``--rows``, each ``ROW`` or ``ROW:CONNECTIONS`` to measure that row at its own count):
``theframework`` (``--ws-compression none``, no extension offered), ``theframework-listen``
(the same server, its WebSockets on ``/echo-listen``, which calls ``WebSocket.listen``: no
greenlet waits for an idle one), ``theframework-deflate``
(permessage-deflate negotiated and one compressed message echoed on each connection, so both
zlib streams exist: context takeover, the server's 4 KiB windows), ``theframework-deflate-nct``
(the same with client_no_context_takeover and server_no_context_takeover, so no zlib state
survives a message), ``theframework-deflate-no-context`` (the client's offer of
``theframework-deflate`` answered by ``--ws-compression deflate-no-context``: no context
takeover either way), ``theframework-listen-deflate-no-context`` (that server and offer, its
WebSockets on ``/echo-listen``), ``uvicorn`` (its ``websockets`` implementation) and
``granian`` (ASGI interface), both without compression, serving apps/ws_asgi_app.py's echo
from bench/.venv-peers (bench/setup.sh). The default rows measure at counts that fit in a few
GiB: uvicorn (~27 KiB each) at 100,000, Granian (~148 KiB each) and theframework-deflate (~60 KiB)
at 20,000.

One process may open only so many files (``ulimit -n``; 20,000 here, and the hard limit cannot
be raised without CAP_SYS_RESOURCE), so both sides are spread over processes: the server runs
``--workers`` workers (default: enough that each holds at most 90% of the file limit, the
kernel's or the server's own spreading being uneven; each server's own ``--workers`` option:
theframework's SO_REUSEPORT socket per worker, uvicorn's and Granian's shared socket), and the
client runs ``--client-processes`` processes (default: enough to stay under the file limit),
forked before the server starts, each opening its share with blocking sockets, one handshake
after the other, from several source addresses (127.0.0.2, .3, ...: 10,000 connections each,
under the ephemeral port range of one address). The server runs on CPU 0, the clients on CPU 1.
Before the first RSS reading, warm-up connections are opened until every worker holds one (code
paths, pools). After the second reading every client process sends one message on each of its
connections and counts the echoes: the figure counts live WebSockets only. How the connections
spread over the workers is read from /proc (the server's established sockets on its port, per
process).

    .venv/bin/python bench/websocket_idle.py [--connections 100000]
        [--rows theframework,theframework-listen,theframework-deflate:20000,
                theframework-deflate-nct,theframework-deflate-no-context,
                theframework-listen-deflate-no-context,uvicorn,granian:20000]
        [--workers N] [--client-processes N] [--output bench/results/websocket_idle.md]

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import math
import multiprocessing
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
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
    "theframework-listen-deflate-no-context": (
        "theframework-deflate-no-context",
        "permessage-deflate; client_max_window_bits",
    ),
}
# Rows whose WebSockets open another route than /echo.
PATHS = {
    "theframework-listen": "/echo-listen",
    "theframework-listen-deflate-no-context": "/echo-listen",
}
DEFAULT_ROWS = (
    "theframework,theframework-listen,theframework-deflate:20000,theframework-deflate-nct,"
    "theframework-deflate-no-context,theframework-listen-deflate-no-context,uvicorn,"
    "granian:20000"
)
PER_SOURCE_ADDRESS = 10_000
FILE_MARGIN = 256  # files a server or client process opens beside its connections
WORKER_FILL = 0.9  # the share of a worker's file limit its expected connections may take
WARM_UP_PER_WORKER = 32  # warm-up connections tried per worker before giving up on one
IP_BIND_ADDRESS_NO_PORT = 24  # <linux/in.h>: the port is chosen at connect(), per destination
TCP_ESTABLISHED = "01"  # /proc/net/tcp's st column
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


# ---------------------------------------------------------------------------------------------
# Client processes: each is told ("open", port, offer, first, end, path), opens WebSockets number
# first..end-1 and answers ("opened", count); told ("probe",), answers ("answered", count); told
# ("close",), closes them all and answers ("closed",); told ("exit",), exits (each child holds
# copies of the parent's ends forked before it, so a closed pipe is no signal). A failure
# answers ("failed", text) and exits.


def client_process(commands: Connection) -> None:
    """The loop of one client process (forked: see ``clients``)."""
    sockets: list[socket.socket] = []
    try:
        while True:
            command = commands.recv()
            if command[0] == "exit":
                return
            if command[0] == "open":
                _, port, offer, first, end, path = command
                sockets = [open_websocket(port, offer, index, path) for index in range(first, end)]
                commands.send(("opened", len(sockets)))
            elif command[0] == "probe":
                commands.send(("answered", live(sockets)))
            else:
                for sock in sockets:
                    sock.close()
                sockets = []
                commands.send(("closed",))
    except Exception as error:
        commands.send(("failed", f"{type(error).__name__}: {error}"))


@contextmanager
def clients(count: int) -> Iterator[list[Connection]]:
    """``count`` client processes forked now (before the server starts, so that they inherit
    none of its descriptors); yields the parent's end of each one's pipe, ends them on exit."""
    context = multiprocessing.get_context("fork")
    pipes: list[Connection] = []
    processes = []
    try:
        for _ in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=client_process, args=(child_end,), daemon=True)
            process.start()
            child_end.close()
            pipes.append(parent_end)
            processes.append(process)
        yield pipes
    finally:
        for pipe in pipes:
            with suppress(OSError):
                pipe.send(("exit",))
            pipe.close()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


def ask_all(pipes: list[Connection], command: tuple[object, ...], answer: str) -> list[int]:
    """Sends ``command`` to every client process (already sent when ``command`` is empty) and
    returns the number in each one's answer; raises RuntimeError when one failed."""
    if command:
        for pipe in pipes:
            pipe.send(command)
    results = []
    for pipe in pipes:
        reply = pipe.recv()
        if reply[0] != answer:
            raise RuntimeError(f"a client process failed: {reply[-1]}")
        results.append(reply[1] if len(reply) > 1 else 0)
    return results


def shares(connections: int, processes: int) -> list[tuple[int, int]]:
    """``connections`` WebSocket numbers cut into ``processes`` ranges of near-equal size."""
    bounds = [connections * part // processes for part in range(processes + 1)]
    return list(itertools.pairwise(bounds))


# ---------------------------------------------------------------------------------------------
# The server's side, read from /proc


def established_inodes(port: int) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is ``port`` (the
    server's ends)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def connections_per_process(process: ServerProcess) -> dict[int, int]:
    """How many of the server's established connections each process of its tree holds."""
    inodes = {f"socket:[{inode}]" for inode in established_inodes(process.port)}
    held = {}
    for pid in process.tree():
        directory = Path(f"/proc/{pid}/fd")
        count = 0
        try:
            for entry in os.scandir(directory):
                try:
                    count += os.readlink(entry.path) in inodes
                except OSError:
                    continue
        except OSError:
            continue
        held[pid] = count
    return held


def warm_up(process: ServerProcess, offer: str, workers: int, path: str) -> list[socket.socket]:
    """Warm-up connections, opened until ``workers`` processes hold one each (or
    WARM_UP_PER_WORKER per worker were tried: a server whose workers share one socket may leave
    some idle)."""
    sockets: list[socket.socket] = []
    while len(sockets) < WARM_UP_PER_WORKER * workers:
        sockets.append(open_websocket(process.port, offer, 0, path))
        holding = sum(count > 0 for count in connections_per_process(process).values())
        if holding >= workers:
            break
    return sockets


def total_rss_kib(process: ServerProcess) -> int:
    return sum(process.rss_kib().values())


def spread(before: dict[int, int], after: dict[int, int]) -> str:
    """The connections each process gained, largest first, of those that gained any."""
    gained = sorted((after[pid] - before.get(pid, 0) for pid in after), reverse=True)
    return " / ".join(f"{count:,}" for count in gained if count > 0) or "-"


def measure(row: str, connections: int, workers: int, pipes: list[Connection]) -> str:
    """Opens ``connections`` idle WebSockets, spread over the client processes behind ``pipes``,
    on a fresh server of ``workers`` workers; the row of the table."""
    server_name, offer = ROWS[row]
    server = SERVERS[server_name]
    path = PATHS.get(row, "/echo")
    with running(server, LOGS, f"idle-{row}", extra=f"--workers {workers}") as process:
        warm = warm_up(process, offer, workers, path)
        try:
            held_before = connections_per_process(process)
            before = total_rss_kib(process)
            started = time.monotonic()
            for pipe, (first, end) in zip(pipes, shares(connections, len(pipes)), strict=True):
                pipe.send(("open", process.port, offer, first, end, path))
            opened_each = ask_all(pipes, (), "opened")
            opened = time.monotonic() - started
            after = total_rss_kib(process)
            held_after = connections_per_process(process)
            answered = sum(ask_all(pipes, ("probe",), "answered"))
            ask_all(pipes, ("close",), "closed")
        finally:
            for sock in warm:
                sock.close()
    assert sum(opened_each) == connections, opened_each
    each = (after - before) * 1024 / connections
    return (
        f"| {row} | {connections:,} | {answered:,} | {workers} | "
        f"{spread(held_before, held_after)} | {before / 1024:,.1f} MiB | "
        f"{after / 1024:,.1f} MiB | {each:,.0f} B ({each / 1024:.1f} KiB) | {opened:.0f} s |"
    )


def parse_rows(text: str, connections: int) -> list[tuple[str, int]]:
    """``ROW`` or ``ROW:CONNECTIONS``, comma-separated -> (row, connections) pairs."""
    rows = []
    for spec in text.split(","):
        name, _, count = spec.partition(":")
        if name not in ROWS:
            raise SystemExit(f"unknown row {name!r}: choose among {', '.join(ROWS)}")
        rows.append((name, int(count) if count else connections))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--rows", default=DEFAULT_ROWS)
    parser.add_argument(
        "--workers", type=int, default=0, help="server workers (0: from the file limit)"
    )
    parser.add_argument(
        "--client-processes", type=int, default=0, help="client processes (0: from the file limit)"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    arguments = parser.parse_args()
    rows = parse_rows(arguments.rows, arguments.connections)
    largest = max(count for _, count in rows)
    file_limit = prepare(largest + FILE_MARGIN)
    per_process = file_limit - FILE_MARGIN
    client_count = arguments.client_processes or math.ceil(largest / per_process)
    if largest > client_count * per_process:
        raise SystemExit(f"{client_count} client processes cannot open {largest:,} files")
    runnable = {
        server.name for server in select(",".join({ROWS[row][0] for row, _ in rows}), SERVERS)
    }
    lines = [
        f"Idle WebSockets (RSS of all the server's processes: supervisor or main process and "
        f"workers; one process may open {file_limit:,} files here, so the server's connections "
        f"are spread over workers and the client's over {client_count} processes; answered: "
        "connections that echoed a message after the second reading; per worker: connections "
        "each worker took):",
        "",
        "| server | idle WebSockets | answered | workers | per worker | RSS before | "
        "RSS after | per WebSocket | time to open |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with clients(client_count) as pipes:
        for row, connections in rows:
            if ROWS[row][0] not in runnable:
                continue
            workers = arguments.workers or (
                1
                if connections <= per_process
                else math.ceil(connections / (per_process * WORKER_FILL))
            )
            lines.append(measure(row, connections, workers, pipes))
            print(lines[-1], flush=True)
    emit("\n".join(lines), arguments.output)


if __name__ == "__main__":
    main()
