"""time.sleep, socket timeouts, non-blocking sockets, select/poll/selectors, subprocess and DNS
under patch_all(), inside a hub. Usage: sleep_and_sockets.py BACKEND"""

from theframework.monkey import is_patched, patch_all

patch_all()

import errno  # noqa: E402
import select  # noqa: E402
import selectors  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from common import join, run, spawn_all  # noqa: E402

from theframework import _core  # noqa: E402


class Ticker:
    """Counts hub turns while other greenlets wait: proof that the hub was not blocked."""

    def __init__(self) -> None:
        self.ticks = 0
        self.running = True
        self.greenlet = _core.spawn(self._loop)

    def _loop(self) -> None:
        while self.running:
            self.ticks += 1
            _core.sleep(0.01)

    def stop(self) -> int:
        self.running = False
        join([self.greenlet])
        return self.ticks


def timed(call: Any) -> tuple[str, float]:
    """(outcome, seconds): the exception type's name or "ok"."""
    started = time.monotonic()
    try:
        call()
        outcome = "ok"
    except Exception as error:
        outcome = type(error).__name__
    return outcome, time.monotonic() - started


def check_sleep() -> dict[str, Any]:
    started = time.monotonic()
    greenlets, results = spawn_all(100, lambda _index: time.sleep(0.5))
    join(greenlets)
    errors = [repr(r) for r in results if r is not None]
    return {"elapsed": time.monotonic() - started, "errors": errors}


def check_recv_timeout() -> dict[str, Any]:
    ticker = Ticker()
    silent, peer = socket.socketpair()
    with silent, peer:
        silent.settimeout(0.2)
        outcome, elapsed = timed(lambda: silent.recv(10))
        # socket.timeout is TimeoutError; the message is the original's.
        try:
            silent.recv_into(bytearray(4))
            message = ""
        except TimeoutError as error:
            message = str(error)
    return {"outcome": outcome, "elapsed": elapsed, "message": message, "ticks": ticker.stop()}


def check_default_timeout_and_accept() -> dict[str, Any]:
    socket.setdefaulttimeout(0.15)
    try:
        with socket.socket() as listener:
            default = listener.gettimeout()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            outcome, elapsed = timed(listener.accept)
    finally:
        socket.setdefaulttimeout(None)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        accepted: list[Any] = []
        acceptor = _core.spawn(lambda: accepted.append(listener.accept()))
        client = socket.create_connection(("localhost", port), timeout=2)
        join([acceptor])
        server_side, _address = accepted[0]
        with client, server_side:
            client.sendall(b"ping")
            echoed = server_side.recv(4)
            file = server_side.makefile("rwb")
            client.sendall(b"line one\nline two\n")
            lines = [file.readline(), file.readline()]
            file.close()
            kinds = [type(client).__name__, type(server_side).__name__, client.gettimeout()]
    return {
        "default": default,
        "accept": [outcome, elapsed],
        "echoed": echoed.decode(),
        "lines": [line.decode() for line in lines],
        "kinds": kinds,
    }


def check_connect_timeout() -> dict[str, Any]:
    # A listener with backlog 0 and one queued connection: a further SYN is dropped, so connect
    # keeps waiting (the kernel retransmits after about a second).
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        address = listener.getsockname()
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        try:
            outcome, elapsed = timed(lambda: socket.create_connection(address, timeout=0.2))
            with socket.socket() as sock:
                sock.settimeout(0.2)
                code = sock.connect_ex(address)
        finally:
            for filler in fillers:
                filler.close()
    with socket.socket() as sock:
        refused = sock.connect_ex(("127.0.0.1", 1))
    return {
        "outcome": outcome,
        "elapsed": elapsed,
        "connect_ex": code,
        "refused": refused,
        "expected": [errno.EAGAIN, errno.ECONNREFUSED],
    }


def check_non_blocking() -> dict[str, Any]:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        outcomes = [timed(lambda: left.recv(1))[0], left.getblocking(), left.gettimeout()]
        right.sendall(b"z")
        outcomes.append(left.recv(1).decode())
    return {"outcomes": outcomes}


def check_sendall_large() -> dict[str, Any]:
    left, right = socket.socketpair()
    payload = bytes(range(256)) * 16384  # 4 MiB: many waits for room
    received = bytearray()

    def reader() -> None:
        while len(received) < len(payload):
            chunk = right.recv(65536)
            if not chunk:
                break
            received.extend(chunk)

    with left, right:
        greenlet = _core.spawn(reader)
        left.sendall(payload)
        join([greenlet])
    return {"intact": bytes(received) == payload}


def check_close_wakes_waiter() -> dict[str, Any]:
    left, right = socket.socketpair()
    outcome: list[str] = []

    def waiter() -> None:
        outcome.append(timed(lambda: left.recv(1))[0])

    greenlet = _core.spawn(waiter)
    _core.sleep(0.01)
    left.close()
    join([greenlet], timeout=5)
    right.close()
    return {"outcome": outcome}


def check_select_family() -> dict[str, Any]:
    ticker = Ticker()
    left, right = socket.socketpair()
    with left, right:
        empty, elapsed = timed(lambda: select.select([left], [], [], 0.2))
        writer = _core.spawn(lambda: (time.sleep(0.05), right.sendall(b"x")))
        ready = select.select([left], [], [], 5)[0]
        join([writer])
        poller = select.poll()
        poller.register(left, select.POLLIN)
        polled = poller.poll(1000) == [(left.fileno(), select.POLLIN)]
        left.recv(1)
        poll_empty, poll_elapsed = timed(lambda: poller.poll(150))
        with selectors.DefaultSelector() as selector:
            selector.register(left, selectors.EVENT_READ, "data")
            writer = _core.spawn(lambda: (time.sleep(0.05), right.sendall(b"y")))
            events = [key.data for key, _mask in selector.select(5)]
            join([writer])
    return {
        "select_timeout": [empty, elapsed],
        "select_ready": ready == [left],
        "poll": polled,
        "poll_timeout": [poll_empty, poll_elapsed],
        "selector": [type(selectors.DefaultSelector()).__name__, events],
        "hidden": [hasattr(select, "epoll"), hasattr(selectors, "EpollSelector")],
        "ticks": ticker.stop(),
    }


def check_subprocess() -> dict[str, Any]:
    ticker = Ticker()
    started = time.monotonic()
    greenlets, results = spawn_all(
        5,
        lambda index: (
            subprocess.run(
                [sys.executable, "-c", f"import time; time.sleep(0.4); print({index})"],
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .strip()
        ),
    )
    join(greenlets)
    elapsed = time.monotonic() - started
    echo = subprocess.run(["cat"], input=b"through the pipe", stdout=subprocess.PIPE).stdout
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    outcome, waited = timed(lambda: process.wait(timeout=0.2))
    process.kill()
    code = process.wait()
    return {
        "results": results,
        "elapsed": elapsed,
        "echo": echo.decode(),
        "timeout": [outcome, waited],
        "killed": code,
        "ticks": ticker.stop(),
    }


def check_dns() -> dict[str, Any]:
    infos = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
    numeric = socket.getaddrinfo("127.0.0.1", "80", type=socket.SOCK_STREAM)
    try:
        socket.getaddrinfo("name.invalid", 80)
        missing = "resolved"
    except socket.gaierror:
        missing = "gaierror"
    return {
        "localhost": infos[0][4],
        "numeric": numeric[0][4],
        "byname": socket.gethostbyname("localhost"),
        "byname_ex": socket.gethostbyname_ex("localhost")[2],
        "nameinfo": socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST)[0],
        "missing": missing,
    }


def check_no_hub_thread() -> dict[str, Any]:
    """In a plain thread the patched calls behave like the originals (they block the thread)."""
    result: dict[str, Any] = {}

    def body() -> None:
        result["in_hub"] = _core.in_hub()
        started = time.monotonic()
        time.sleep(0.05)
        result["sleep"] = time.monotonic() - started
        left, right = socket.socketpair()
        with left, right:
            left.settimeout(0.1)
            result["recv"] = timed(lambda: left.recv(1))
            right.sendall(b"t")
            result["data"] = left.recv(1).decode()
        result["select"] = select.select([], [], [], 0.05)
        result["dns"] = socket.gethostbyname("localhost")

    thread = threading.Thread(target=body)
    thread.start()
    while thread.is_alive():
        _core.sleep(0.01)
    return result


def main() -> dict[str, Any]:
    return {
        "patched": [
            is_patched(name) for name in ("socket", "dns", "time", "select", "ssl", "subprocess")
        ],
        "sleep": check_sleep(),
        "recv_timeout": check_recv_timeout(),
        "accept": check_default_timeout_and_accept(),
        "connect_timeout": check_connect_timeout(),
        "non_blocking": check_non_blocking(),
        "sendall": check_sendall_large(),
        "close": check_close_wakes_waiter(),
        "select": check_select_family(),
        "subprocess": check_subprocess(),
        "dns": check_dns(),
        "thread": check_no_hub_thread(),
    }


if __name__ == "__main__":
    run(sys.argv[1], main)
