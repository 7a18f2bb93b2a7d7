"""Helpers of the end-to-end HTTP tests: a real server process, raw-socket clients.

- ``ServerProcess``: runs ``python -m theframework APP --port 0 --backend B ...`` from the
  repository root, waits for its ``listening on http://HOST:PORT`` line on stderr (the readiness
  signal), collects stderr, and on exit stops it with SIGTERM and checks that it exited 0
  without a stray traceback or crash report.
- Raw sockets: ``connect`` (a blocking socket with a timeout), ``ResponseReader`` (reads whole
  responses off a socket: Content-Length, chunked, or until close; keeps what follows for the next
  response, so pipelined answers can be read one by one), ``wait_closed`` / ``assert_closed``
  (the server closed the connection: recv returns b"" or ECONNRESET), ``exchange`` (one raw
  request on a fresh connection).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent

_LISTENING = re.compile(r"listening on http://(?P<host>[^ ]+):(?P<port>\d+) \(pid (?P<pid>\d+)")

# Lines that must never appear in the stderr of a healthy server.
CRASH_MARKERS = (
    "Segmentation fault",
    "Fatal Python error",
    "AddressSanitizer",
    "runtime error:",
    "terminate called",
    "Aborted",
    "core dumped",
)

DEFAULT_TIMEOUT = 10.0


class ServerProcess:
    """A theframework server in a subprocess (single process, one listener on 127.0.0.1:0).

    ``with ServerProcess("tests.apps.api:app", "epoll", "--max-body-size", "100") as server:``
    yields once the server listens; ``server.host``/``server.port``/``server.pid`` are known then.
    Leaving the block sends SIGTERM and asserts exit status 0, and that stderr holds no
    traceback, except those whose exception line contains one of ``expected_errors`` (tests
    that make a handler fail on purpose), or any when ``allow_tracebacks``; crash markers
    (segfault, fatal error, sanitizer report) always fail.
    """

    def __init__(
        self,
        app: str,
        backend: str,
        *extra_args: str,
        expected_errors: tuple[str, ...] = (),
        allow_tracebacks: bool = False,
        start_timeout: float = DEFAULT_TIMEOUT,
        stop_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.backend = backend
        self.extra_args = extra_args
        self.expected_errors = expected_errors
        self.allow_tracebacks = allow_tracebacks
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.host = ""
        self.port = 0
        self.pid = 0
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._condition = threading.Condition()
        self._reader: threading.Thread | None = None
        self._stderr_closed = False
        self._terminated = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ServerProcess:
        environment = dict(os.environ)
        python_path = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = (
            f"{REPO_ROOT}{os.pathsep}{python_path}" if python_path else str(REPO_ROOT)
        )
        environment["PYTHONUNBUFFERED"] = "1"
        environment.pop("THEFRAMEWORK_BACKEND", None)
        command = [
            sys.executable,
            "-m",
            "theframework",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--backend",
            self.backend,
            *self.extra_args,
        ]
        self._process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        match = self._wait_for_line(_LISTENING, self.start_timeout)
        if match is None:
            self._kill()
            raise AssertionError(
                f"server {command} did not report listening within {self.start_timeout} s; "
                f"exit status {self._process.poll()}, stderr:\n{self.stderr}"
            )
        self.host = match.group("host")
        self.port = int(match.group("port"))
        self.pid = int(match.group("pid"))
        return self

    def terminate(self) -> None:
        """Sends SIGTERM (graceful drain) without waiting; ``stop()`` then waits for the exit."""
        assert self._process is not None
        if not self._terminated and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        self._terminated = True

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Waits for the process to exit (after ``terminate()``); returns its status."""
        assert self._process is not None
        return self._process.wait(timeout)

    def stop(self, *, check: bool = True) -> None:
        """SIGTERM (unless sent already), wait for the exit; with ``check``, assert exit 0 and a
        clean stderr."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self.terminate()
        try:
            self.returncode = process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(
                f"server did not exit within {self.stop_timeout} s of SIGTERM; "
                f"stderr:\n{self.stderr}"
            ) from None
        finally:
            if self._reader is not None:
                self._reader.join(5)
            if process.stderr is not None:
                process.stderr.close()
        if check:
            assert self.returncode == 0, (
                f"server exited with {self.returncode}; stderr:\n{self.stderr}"
            )
            self.check_stderr()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # After a failure in the block, still stop the server, but report the first error.
        self.stop(check=exc_type is None)

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    # -- stderr ---------------------------------------------------------------------------------

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for raw in self._process.stderr:
            with self._condition:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._condition.notify_all()
        with self._condition:
            self._stderr_closed = True
            self._condition.notify_all()

    def _wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        checked = 0
        with self._condition:
            while True:
                for line in self._lines[checked:]:
                    match = pattern.search(line)
                    if match is not None:
                        return match
                checked = len(self._lines)
                remaining = deadline - time.monotonic()
                if self._stderr_closed or remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def wait_for_stderr(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Waits until a stderr line contains ``text``; returns the whole stderr so far."""
        if self._wait_for_line(re.compile(re.escape(text)), timeout) is None:
            raise AssertionError(f"{text!r} did not appear in the server's stderr:\n{self.stderr}")
        return self.stderr

    @property
    def stderr(self) -> str:
        with self._condition:
            return "".join(self._lines)

    def check_stderr(self) -> None:
        """No crash report in stderr, and no traceback but the expected ones."""
        text = self.stderr
        for marker in CRASH_MARKERS:
            assert marker not in text, f"{marker!r} in the server's stderr:\n{text}"
        if self.allow_tracebacks:
            return
        unexpected = [
            error
            for error in traceback_errors(text)
            if not any(expected in error for expected in self.expected_errors)
        ]
        assert not unexpected, f"unexpected tracebacks {unexpected} in the server's stderr:\n{text}"

    # -- process state --------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def open_fds(self) -> list[str]:
        """What the server's file descriptors point to (readlink of /proc/PID/fd/*), sorted."""
        directory = f"/proc/{self.pid}/fd"
        targets = []
        for name in os.listdir(directory):
            try:
                targets.append(os.readlink(f"{directory}/{name}"))
            except FileNotFoundError:
                continue
        return sorted(targets)

    def tcp_connection_inodes(self) -> set[str]:
        """Socket inodes of the server's TCP sockets that are not listening (connections in
        any state), from /proc/PID/net/tcp and tcp6."""
        inodes: set[str] = set()
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{self.pid}/net/{table}") as handle:
                    next(handle)
                    for line in handle:
                        fields = line.split()
                        if fields[3] != "0A":  # 0A: LISTEN
                            inodes.add(fields[9])
            except FileNotFoundError:
                continue
        return inodes

    def fds_split(self) -> tuple[list[str], list[str]]:
        """The server's fds as (TCP connections, everything else), each a sorted list of
        readlink targets."""
        connections = {f"socket:[{inode}]" for inode in self.tcp_connection_inodes()}
        targets = self.open_fds()
        return (
            [target for target in targets if target in connections],
            [target for target in targets if target not in connections],
        )

    # -- addresses ------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"


def traceback_errors(text: str) -> list[str]:
    """The exception line ("ValueError: ...") closing each traceback in ``text``."""
    errors = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("Traceback (most recent call last):"):
            index += 1
            while index < len(lines) and lines[index].startswith((" ", "\t")):
                index += 1
            errors.append(lines[index] if index < len(lines) else "<truncated traceback>")
        index += 1
    return errors


# --------------------------------------------------------------------------------------------
# Raw sockets


def connect(server: ServerProcess, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    """A blocking TCP connection to ``server`` whose operations time out after ``timeout``."""
    sock = socket.create_connection(server.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def reset(sock: socket.socket) -> None:
    """Closes ``sock`` with SO_LINGER 0: the peer gets a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class ServerClosed(Exception):
    """The server closed the connection before a complete response arrived."""

    def __init__(self, received: bytes) -> None:
        super().__init__(f"connection closed after {len(received)} bytes: {received[:200]!r}")
        self.received = received


@dataclass
class RawResponse:
    """One response as it came off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    framing: str  # "content-length", "chunked", "close" or "none"
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        folded = name.lower()
        return [value for key, value in self.headers if key.lower() == folded]


class ResponseReader:
    """Reads responses off a blocking socket, keeping bytes beyond the current response."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.closed = False  # end of stream (b"" or ECONNRESET) seen

    def _fill(self) -> bool:
        """Reads more; False at end of stream."""
        if self.closed:
            return False
        try:
            data = self.sock.recv(1 << 18)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def _read_until(self, marker: bytes) -> bytes:
        start = 0
        while True:
            index = self.buffer.find(marker, start)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            start = max(0, len(self.buffer) - len(marker) + 1)
            if not self._fill():
                raise ServerClosed(bytes(self.buffer))

    def _read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._fill():
                raise ServerClosed(bytes(self.buffer))
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read_head(self) -> tuple[str, int, str, list[tuple[str, str]], bytes]:
        raw_head = self._read_until(b"\r\n\r\n")
        lines = raw_head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status_text, _, reason = rest.partition(" ")
        assert version.startswith("HTTP/1."), f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon, f"bad header line {line!r}"
            headers.append((name, value.strip(" \t")))
        return version, int(status_text), reason, headers, raw_head

    def read_response(self, method: str = "GET", *, skip_interim: bool = True) -> RawResponse:
        """The next response. ``method`` tells whether a body follows (HEAD: none). 1xx responses
        are skipped unless ``skip_interim`` is False (then returned like any other)."""
        while True:
            version, status, reason, headers, raw_head = self.read_head()
            if 100 <= status < 200:
                if skip_interim:
                    continue
                return RawResponse(version, status, reason, headers, b"", raw_head, "none")
            break
        response = RawResponse(version, status, reason, headers, b"", raw_head, "none")
        if method == "HEAD" or status in (204, 304):
            return response
        transfer_encoding = response.header("Transfer-Encoding")
        length = response.header("Content-Length")
        if transfer_encoding is not None:
            assert transfer_encoding.lower() == "chunked", transfer_encoding
            response.framing = "chunked"
            response.body, response.trailers = self._read_chunked()
        elif length is not None:
            response.framing = "content-length"
            response.body = self._read_exactly(int(length))
        else:
            response.framing = "close"
            while self._fill():
                pass
            response.body = bytes(self.buffer)
            self.buffer.clear()
        return response

    def read_chunk(self) -> bytes | None:
        """One chunk of a chunked body whose head was read (read_head); None for the last one
        (its trailers are skipped)."""
        size_line = self._read_until(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while self._read_until(b"\r\n") != b"\r\n":
                pass
            return None
        data = self._read_exactly(size)
        assert self._read_exactly(2) == b"\r\n", "chunk not followed by CRLF"
        return data

    def _read_chunked(self) -> tuple[bytes, list[tuple[str, str]]]:
        parts = []
        while True:
            size_line = self._read_until(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            parts.append(self._read_exactly(size))
            assert self._read_exactly(2) == b"\r\n", "chunk not followed by CRLF"
        trailers = []
        while True:
            line = self._read_until(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line[:-2].decode("latin-1").partition(":")
            trailers.append((name, value.strip()))
        return b"".join(parts), trailers

    def wait_closed(self) -> bytes:
        """Waits (up to the socket timeout) for the end of stream; returns any bytes that came
        first. socket.timeout (TimeoutError) if the server keeps the connection open."""
        while self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def wait_closed(sock: socket.socket) -> bytes:
    """Waits until the server closes ``sock`` (recv gives b"" or ECONNRESET) within the socket's
    timeout; returns what was received first."""
    return ResponseReader(sock).wait_closed()


def assert_closed(reader: ResponseReader) -> None:
    """The server closed the connection and sent nothing more."""
    extra = reader.wait_closed()
    assert extra == b"", f"unexpected bytes before the close: {extra[:200]!r}"


def exchange(
    server: ServerProcess, data: bytes, method: str = "GET", timeout: float = DEFAULT_TIMEOUT
) -> tuple[RawResponse, ResponseReader]:
    """Sends ``data`` on a fresh connection and reads one response; returns it and the reader
    (its socket still open: the caller closes it)."""
    sock = connect(server, timeout)
    reader = ResponseReader(sock)
    try:
        sock.sendall(data)
        return reader.read_response(method), reader
    except BaseException:
        sock.close()
        raise


def simple_get(server: ServerProcess, path: str = "/") -> RawResponse:
    """GET ``path`` with Connection: close on a fresh connection."""
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
    response, reader = exchange(server, request)
    reader.sock.close()
    return response
