"""ssl under patch_all(): a TLS echo server and patched ssl clients in the same hub (handshakes,
reads and writes wait on the hub), ssl.wrap_socket, a read timeout, and a client in a plain
thread (no hub: the original blocking behaviour). Usage: tls.py BACKEND CERT KEY"""

from theframework.monkey import patch_all

patch_all()

import socket  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

from common import join, run, spawn_all  # noqa: E402

from theframework import _core  # noqa: E402

CLIENTS = 20
DELAY = 0.3


def serve(listener: socket.socket, context: ssl.SSLContext) -> None:
    """Accepts until the listener closes; each connection echoes lines upper-cased after DELAY,
    except "silent\\n", which gets no answer."""

    def handle(connection: socket.socket) -> None:
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                reader = tls.makefile("rb")
                for line in reader:
                    if line == b"silent\n":
                        continue
                    time.sleep(DELAY)
                    tls.sendall(line.upper())
        except (OSError, ValueError):
            pass

    while True:
        try:
            connection, _address = listener.accept()
        except OSError:
            return
        _core.spawn(handle, connection)


def exchange(tls: socket.socket, line: bytes) -> bytes:
    tls.sendall(line)
    received = b""
    while not received.endswith(b"\n"):
        chunk = tls.recv(1024)
        if not chunk:
            break
        received += chunk
    return received


def main() -> dict[str, Any]:
    cert, key = sys.argv[2], sys.argv[3]
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = listener.getsockname()[1]
    server = _core.spawn(serve, listener, server_context)

    def client(index: int) -> str:
        with (
            socket.create_connection(("localhost", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return exchange(tls, f"hello {index}\n".encode()).decode()

    started = time.monotonic()
    greenlets, results = spawn_all(CLIENTS, client)
    join(greenlets)
    elapsed = time.monotonic() - started
    wrong = [repr(r) for i, r in enumerate(results) if r != f"HELLO {i}\n"]

    legacy = "absent"
    if hasattr(ssl, "wrap_socket"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            with ssl.wrap_socket(raw, cert_reqs=ssl.CERT_NONE) as tls:  # type: ignore[attr-defined]
                legacy = exchange(tls, b"legacy\n").decode()

    with (
        socket.create_connection(("localhost", port)) as raw,
        client_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.settimeout(0.2)
        kind = type(tls).__name__
        tls.sendall(b"silent\n")
        started_wait = time.monotonic()
        try:
            tls.recv(10)
            timeout = ["no timeout", 0.0, ""]
        except TimeoutError as error:
            timeout = ["TimeoutError", time.monotonic() - started_wait, str(error)]

    from_thread: list[str] = []

    def thread_client() -> None:
        with (
            socket.create_connection(("localhost", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            from_thread.append(exchange(tls, b"thread\n").decode())

    thread = threading.Thread(target=thread_client)
    thread.start()
    while thread.is_alive():
        _core.sleep(0.01)

    listener.close()
    join([server], timeout=5)
    return {
        "elapsed": elapsed,
        "wrong": wrong[:5],
        "legacy": legacy,
        "kind": kind,
        "timeout": timeout,
        "thread": from_thread,
    }


if __name__ == "__main__":
    run(sys.argv[1], main)
