"""Type stub of the native module ``theframework._core`` (C++20, io_uring/epoll hub).

Switching rules (enforced in src/python/hub.cpp):
- One hub per thread at a time; ``Hub.run`` runs it in the calling thread. The hub greenlet is the
  parent of every greenlet it schedules.
- Blocking calls (sleep, accept, recv, ...) are made from a greenlet other than the hub, in the
  thread running the hub; from the hub greenlet they raise ``HubSwitchError``, and with no hub
  running in this thread they raise ``NoHubError``.
- A waiting greenlet is resumed only by the hub. Killing it (``kill``) or throwing into it cancels
  its operation: no slot, pending count or later completion is left behind.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from greenlet import greenlet

# Socket address as the socket module spells it: (host, port) for AF_INET, (host, port, flowinfo,
# scope_id) for AF_INET6, str (or bytes for the abstract namespace) for AF_UNIX.
_Address = tuple[str, int] | tuple[str, int, int, int] | str | bytes
_Buffer = bytes | bytearray | memoryview

POLLIN: Final[int]
POLLOUT: Final[int]
# Bytes of one heartbeat cell written by Hub.set_heartbeat: (iteration count, CLOCK_MONOTONIC ns)
# as two native uint64. 16.
HEARTBEAT_CELL_SIZE: Final[int]

class HubError(RuntimeError):
    """Base class of misuse of the hub."""

class NoHubError(HubError):
    """A blocking call was made in a thread where no hub is running."""

class HubSwitchError(HubError):
    """A blocking call was made from the hub greenlet, or a waiting greenlet was resumed by
    something other than the hub."""

class BackendUnavailableError(OSError):
    """The backend that was forced (parameter or THEFRAMEWORK_BACKEND) cannot be used here."""

class Hub:
    """The event loop of one thread. ``backend`` is "io_uring", "epoll", "auto" or None (read
    THEFRAMEWORK_BACKEND, else auto: io_uring, falling back to epoll when the kernel refuses it)."""

    def __init__(self, backend: str | None = None, *, entries: int = 256) -> None: ...
    @property
    def backend(self) -> str:
        """ "io_uring" or "epoll"."""
    @property
    def fallback_reason(self) -> str | None:
        """Why io_uring was not used, when auto-selection fell back to epoll."""
    def run(self, main: Callable[..., Any] | None = None, /, *args: Any, **kwargs: Any) -> Any:
        """Runs the loop in this thread until ``stop()`` or, when ``main`` is given, until
        ``main(*args, **kwargs)`` (run in its own greenlet) returns; returns its result or raises
        its exception. Greenlets still waiting at the end receive GreenletExit."""
    def stop(self) -> None:
        """Makes ``run`` return soon. Safe from a signal handler and from another thread."""
    def set_heartbeat(self, buffer: Any, interval: float = 1.0) -> None:
        """Every loop iteration writes (iteration count, CLOCK_MONOTONIC ns) as two native uint64
        into ``buffer`` (writable, 8-byte aligned, >= ``HEARTBEAT_CELL_SIZE`` bytes; e.g. shared
        memory a supervisor reads), and the loop wakes at least every ``interval`` seconds. None
        turns it off."""
    @property
    def running(self) -> bool: ...
    @property
    def pending(self) -> int:
        """Operations and timers not yet finished, including cancelled ones the kernel has not
        released yet. Zero when nothing waits."""

def get_hub() -> Hub | None:
    """The hub running in this thread, if any."""

def in_hub() -> bool:
    """True when the current greenlet may make blocking calls (a hub runs in this thread and the
    current greenlet is not the hub)."""

def pending() -> int:
    """``pending`` of the running hub (0 when none runs)."""

def spawn(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> greenlet:
    """Creates a greenlet (parent: the hub) that runs fn(*args, **kwargs) soon."""

def schedule(g: greenlet, value: Any = None, /) -> None:
    """Queues ``g`` to be switched to with ``value`` from the hub. ``g`` must not be waiting in a
    blocking call (those are resumed by their completion)."""

def kill(g: greenlet, exception: BaseException | type[BaseException] | None = None, /) -> None:
    """Throws ``exception`` (default GreenletExit) into ``g`` from the hub, soon. If ``g`` waits in
    a blocking call, that call is cancelled first. Killing a dead greenlet does nothing."""

def sleep(seconds: float = 0.0, /) -> None:
    """Suspends the current greenlet; sleep(0) yields to the other ready greenlets."""

def accept(fd: int, /, timeout: float | None = None) -> tuple[int, _Address]:
    """Accepts a connection on listening socket ``fd`` (made non-blocking). The new fd is
    non-blocking and close-on-exec."""

def recv(fd: int, size: int, /, timeout: float | None = None) -> bytes:
    """Receives at most ``size`` bytes; b"" at end of stream."""

def recv_into(
    fd: int, buffer: bytearray | memoryview, nbytes: int = 0, /, timeout: float | None = None
) -> int:
    """Receives into a writable buffer (at most nbytes, or its length when 0)."""

def send(fd: int, data: _Buffer | Sequence[_Buffer], /, timeout: float | None = None) -> int:
    """Sends once (writev for a sequence); returns bytes sent, possibly fewer than given."""

def sendall(fd: int, data: _Buffer | Sequence[_Buffer], /, timeout: float | None = None) -> None:
    """Sends everything, looping over partial writes. ``timeout`` bounds the whole call."""

def connect(fd: int, address: _Address, /, timeout: float | None = None) -> None:
    """Connects socket ``fd`` (made non-blocking) to ``address`` (IPv4, IPv6 or UNIX)."""

def wait_readable(fd: int, /, timeout: float | None = None) -> None: ...
def wait_writable(fd: int, /, timeout: float | None = None) -> None: ...
def wait_fds(
    read: Iterable[int] = (), write: Iterable[int] = (), /, timeout: float | None = None
) -> tuple[list[int], list[int]]:
    """Waits until at least one fd is ready; returns (readable, writable). ([], []) on timeout."""

def _configure(
    *,
    error_handler: Callable[[BaseException], object] | None = ...,
    http_error: type[Exception] | None = ...,
    headers_factory: Callable[[list[tuple[str, str]]], Any] | None = ...,
    query_factory: Callable[[str], Any] | None = ...,
    json_loads: Callable[..., Any] | None = ...,
    json_dumps: Callable[..., str] | None = ...,
    logger: Any = ...,
    proxy_logger: Any = ...,
) -> None:
    """Hands the package's objects to the native module (internal)."""

def _parse_request(
    data: bytes,
    max_header_size: int = 32768,
    max_headers: int = 100,
    max_body_size: int = 1048576,
    max_request_line: int = 8192,
) -> tuple[Any, ...]:
    """The C++ parser's verdict on ``data`` (for the differential tests)."""

def _decode_chunked(data: bytes, max_body_size: int = 1048576) -> tuple[Any, ...]:
    """The C++ chunked decoder's verdict on ``data`` (for the differential tests)."""

def close(fd: int, /) -> None:
    """Cancels every operation waiting on ``fd`` (their callers get OSError EBADF), then closes
    it. Does not suspend."""

# ---------------------------------------------------------------------------------------------
# HTTP/1.1 server (src/python/http_server.cpp over src/core/http_*).

class Request:
    """One parsed request. Built lazily: attributes are converted to Python objects on first
    access only. Valid during the handler call (and streaming of its response)."""

    method: str
    path: str  # percent-decoded path, without the query
    raw_path: str  # the path as sent (not decoded), without the query
    query_string: str  # after "?", undecoded; "" when absent
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    params: dict[str, str]  # filled by the router; writable
    @property
    def headers(self) -> Any:
        """theframework.datastructures.Headers: case-insensitive, multi-valued."""
    @property
    def query_params(self) -> Any:
        """theframework.datastructures.QueryParams: decoded, multi-valued."""
    @property
    def client(self) -> tuple[str, int] | str:
        """Client address ((host, port), or "" for a UNIX-socket peer): the peer's, or what a
        trusted proxy said (X-Forwarded-For / Forwarded for=, port 0 when it gave none; the
        PROXY protocol's source address)."""
    @property
    def scheme(self) -> str:
        """ "http", or what a trusted proxy said (X-Forwarded-Proto / Forwarded proto=)."""
    @property
    def host(self) -> str:
        """host[:port] the client addressed: a trusted proxy's X-Forwarded-Host / Forwarded
        host= (with X-Forwarded-Port), else the Host header, else the listening address."""
    @property
    def url(self) -> str:
        """The URL the client asked for: scheme://host/raw_path?query_string."""
    @property
    def body(self) -> bytes:
        """The whole body (read on first access; chunked bodies are decoded)."""
    def read(self, size: int = -1, /) -> bytes:
        """Streaming read: at most ``size`` bytes of the body (all when -1); b"" at its end."""
    def json(self) -> Any:
        """The body parsed as JSON; invalid JSON raises HTTPError(400)."""
    def websocket(
        self,
        subprotocols: Sequence[str] | None = None,
        *,
        origins: Sequence[str] | Callable[[str | None], object] | None = None,
    ) -> WebSocket:
        """Accepts the WebSocket upgrade (RFC 6455) and sends 101 Switching Protocols. The
        subprotocol is the first one the client offers that ``subprotocols`` holds (None when
        none matches). An invalid handshake raises HTTPError 400 (or 426 with
        Sec-WebSocket-Version: 13 for an unsupported version) and the connection closes after
        that answer. ``origins`` checks the Origin header first: a sequence admits the Origins it
        lists (ASCII case-insensitive) and requests without one; a callable gets the Origin (or
        None) and admits on a true result; a refused request raises HTTPError 403. The response
        object is not used afterwards; when the handler returns, a WebSocket still open is
        closed with 1000 (1011 if the handler raised), unless it called WebSocket.listen()."""
    def _wsgi_environ(self, base: dict[str, Any], /) -> dict[str, Any]:
        """A copy of ``base`` with this request's CGI variables (REQUEST_METHOD, PATH_INFO with
        base["SCRIPT_NAME"] stripped, QUERY_STRING, SERVER_PROTOCOL, CONTENT_TYPE/LENGTH,
        HTTP_*, REMOTE_ADDR/PORT, SERVER_NAME/PORT), built in C++ for the WSGI adapter."""

class Response:
    """The response under construction. Headers are sent at the first flush() or when the
    handler returns."""

    status: int  # 200 until set; assigning validates like set_status
    @property
    def headers_sent(self) -> bool: ...
    @property
    def head_length(self) -> int:
        """Bytes of the status line and headers sent (0 before they are)."""
    def get_header(self, name: str, /) -> str | None:
        """The values of the headers called ``name`` set so far, joined with ", "; None when
        there is none (headers the server adds itself, such as Date, are not listed)."""
    def set_status(self, status: int, /) -> None:
        """100-599; ValueError otherwise."""
    def set_header(self, name: str, value: str, /) -> None:
        """Replaces every header called ``name``. ValueError for CR, LF or NUL, or a name that is
        not a token."""
    def add_header(self, name: str, value: str, /) -> None:
        """Adds one more header line (Set-Cookie and the like)."""
    def write(self, data: bytes | bytearray | memoryview | str, /) -> None:
        """Appends to the body (str as UTF-8). After flush(), sends a chunk at once."""
    def json(self, obj: Any, /) -> None:
        """Writes json.dumps(obj) and sets Content-Type: application/json."""
    def flush(self) -> None:
        """Sends the status line and headers now; the body then goes chunked (HTTP/1.1) or
        until close (HTTP/1.0)."""
    def stream(self, iterable: Iterable[bytes | str], /) -> None:
        """flush(), then write() each item as it is produced."""
    def sendfile(self, path: str, /, content_type: str | None = None) -> None:
        """Sends a file with zero copies and its Content-Length; only headers for HEAD."""
    def reset(self) -> None:
        """Clears status, headers and buffered body (before the headers are sent)."""

class WebSocket:
    """A server-side WebSocket (from Request.websocket()). Its methods block the calling
    greenlet only; any greenlet may send while another receives (one receiver at a time).
    Iterating yields messages until the WebSocket closes (then close_code says why). Instead of
    receiving, a handler may listen() with callbacks and return: no greenlet waits then."""

    @property
    def subprotocol(self) -> str | None: ...
    @property
    def closed(self) -> bool:
        """True once the close handshake started (either side) or the connection ended."""
    @property
    def close_code(self) -> int | None:
        """The close code once closing (see theframework.WebSocketClosed), None while open."""
    @property
    def close_reason(self) -> str: ...
    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message: str for text, bytes for binary. Answers pings, sends keep-alive
        pings after ws_ping_interval of silence (closing with 1011 when one is not answered
        within ws_ping_timeout). Raises WebSocketClosed once closed (the peer's close is
        answered first; a protocol error closes with 1002, invalid UTF-8 with 1007, a message
        over ws_max_message_size with 1009), TimeoutError after ``timeout`` seconds (the
        WebSocket stays open), RuntimeError when another greenlet is receiving."""
    def send(self, message: str | bytes | bytearray | memoryview, /) -> None:
        """Sends a text (str) or binary (bytes-like) message; WebSocketClosed once closing."""
    def send_many(self, messages: Iterable[str | bytes | bytearray | memoryview], /) -> None:
        """Sends several messages with one write."""
    def _send_frame(self, frame: bytes, /) -> None:
        """Sends a frame made by encode_frame() (Group broadcasts)."""
    def ping(self, payload: bytes = b"", /) -> None:
        """Sends a ping (payload at most 125 bytes); the pong is consumed by receive()."""
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Sends a close frame (code 1000-1003, 1007-1014 or 3000-4999, reason at most 123
        bytes of UTF-8; ValueError otherwise) and waits, at most ws_ping_timeout, for the
        peer's close, unless another greenlet is receiving (it then reads it). Idempotent."""
    def listen(
        self,
        on_message: Callable[[WebSocket, str | bytes], object],
        on_close: Callable[[WebSocket, int, str], object] | None = None,
    ) -> None:
        """Hands the WebSocket's messages to callbacks and returns at once; the handler then
        returns, and the session stays open with no greenlet held while it is idle (when the
        handler returns normally: an exception still closes it with 1011, then calls on_close).

        Each complete message calls ``on_message(ws, message)`` in a greenlet of the server's
        pool of request greenlets, one message at a time per WebSocket and in order; a callback
        may block (green I/O, sleep) and may send, ping or close; any greenlet may send at any
        time. While a callback runs, further input queues with ws_max_queue backpressure.
        Pings are answered, keep-alive pings sent (ws_ping_interval, ws_ping_timeout) and the
        drain's close 1001 sent without a greenlet waiting. An exception from on_message is
        logged with its traceback and closes with 1011. ``on_close(ws, code, reason)`` is called
        once when the session ends (the close code of the handshake, 1002/1007/1009 after a
        protocol error, 1011 after an exception or an unanswered ping, 1006 when the connection
        ended without a close frame); its exceptions are logged. close() returns at once here
        (the peer's answer is awaited without a greenlet, at most ws_ping_timeout).

        Called by the request's handler, before it returns; RuntimeError when called twice or
        after the handler returned, and receive() (or iteration) after listen() raises
        RuntimeError; WebSocketClosed when the session is already over."""
    def __iter__(self) -> WebSocket: ...
    def __next__(self) -> str | bytes: ...

def encode_frame(message: str | bytes | bytearray | memoryview, /) -> bytes:
    """One unfragmented, unmasked server frame for ``message`` (text for str, binary for
    bytes-like): framed once, sent to many WebSockets with WebSocket._send_frame()."""

class HttpServer:
    """Serves HTTP/1.1 on already-listening sockets inside the running hub."""

    def __init__(
        self,
        handler: Callable[[Request, Response], object],
        listen_fds: Sequence[int],
        *,
        max_header_size: int = 32768,
        max_headers: int = 100,
        max_request_line: int = 8192,
        max_body_size: int = 1048576,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keepalive_timeout: float = 5.0,
        write_timeout: float = 30.0,
        max_connections: int = 1024,
        access_log: Callable[[Request, int, int, float, Response], object] | None = None,
        rebalance_every: int = 0,
        forwarded_allow_ips: str = "127.0.0.1,::1",
        proxy_headers: bool = True,
        proxy_protocol: bool = False,
        ws_max_message_size: int = 1048576,
        ws_ping_interval: float = 20.0,
        ws_ping_timeout: float = 20.0,
        ws_compression: str = "deflate",
        ws_max_queue: int = 32,
    ) -> None:
        """``access_log(request, status, bytes_sent, seconds, response)`` is called after each
        handled request (not for protocol errors answered by the server itself); None costs
        nothing. ``forwarded_allow_ips``: the peers trusted as proxies (addresses, CIDR
        networks, "*"; UNIX-socket peers always are; ValueError for a bad entry);
        ``proxy_headers``: believe their forwarding headers; ``proxy_protocol``: every
        connection starts with a PROXY v1/v2 header (closed when missing, malformed or from an
        untrusted peer).
        ``rebalance_every``: every Nth response closes its keep-alive connection, so clients
        spread again over SO_REUSEPORT workers (0: never). ``ws_*``: WebSocket limits and keep-alive
        (see WebSocket.receive; ws_max_message_size 0: no limit, ws_ping_interval 0: no pings;
        ws_max_queue: complete messages buffered before the server stops reading a WebSocket)."""
    def serve(self) -> None:
        """Runs in a hub greenlet: accepts and serves until shutdown(), then returns once every
        connection is closed."""
    def retire(self, take_queued: bool = True, /) -> None:
        """Stops accepting for good; every connection closes after its next response (idle ones
        at their client's next request or the keep-alive timeout; WebSockets get close 1001
        after 0.2 s); serve() returns when none is left. A rolling replacement: no client sees
        its connection closed under a request. ``take_queued``: accept what the listeners
        already queued first (the listener is about to close); False leaves it to a successor
        accepting from the same socket."""
    def shutdown(self, graceful_timeout: float = 30.0, /) -> None:
        """Stops accepting, closes idle connections and sends WebSockets close 1001 (both after
        a 0.2 s grace, or ``graceful_timeout`` if shorter), lets in-flight requests finish
        (answered with Connection: close) and closes what is still open after
        ``graceful_timeout``.
        Does not block; safe from a Python signal handler."""
    def stats(self) -> dict[str, Any]:
        """Counters since start: connections_accepted, accept_pauses (max_connections reached),
        connections_peak (the most open at once: at most max_connections while serving; a drain
        also takes what was queued), connections_active, requests, requests_in_flight,
        responses ({"1xx".."5xx": n}), bytes_in, bytes_out, duration_buckets ([(upper bound s,
        cumulative count)], last +Inf), duration_sum (seconds), websockets ({"open": n,
        "accepted": n, "going_away": n (open when the drain sent them close 1001),
        "messages_in": n, "messages_out": n, "closes": {close code: n}}; 1006 counts sessions
        that ended without a close frame)."""
    @property
    def connections(self) -> int: ...
    @property
    def requests_in_flight(self) -> int: ...
