"""A raw WebSocket client for the tests that must send what no library sends (unmasked frames,
oversized control frames, invalid UTF-8) and read the server's frames byte for byte."""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import zlib
from collections.abc import Sequence

from prefork_apps.harness import ServerProcess, http_get
from websockets.sync.client import ClientConnection


def serve(
    *arguments: str, app: str = "websocket_apps.echo:app", expected_tracebacks: Sequence[str] = ()
) -> tuple[ServerProcess, int]:
    """Starts a WebSocket test app (by default the echo app) in one process on a free port:
    (server, port). ``expected_tracebacks``: see ServerProcess."""
    server = ServerProcess(app, "--port", "0", *arguments, expected_tracebacks=expected_tracebacks)
    try:
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
    except BaseException:
        server.close()
        raise
    return server, port


def handshake_request(path: str, **headers: str) -> bytes:
    fields = {
        "Host": "test",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    for name, value in headers.items():
        fields[name.replace("_", "-")] = value
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value)
    return f"GET {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")


def read_until_eof(connection: socket.socket) -> bytes:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    return data


def frame(first_byte: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One client frame; ``first_byte`` carries FIN, RSV and the opcode."""
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first_byte, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first_byte, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


class RawClient:
    """One upgraded connection over a plain socket."""

    def __init__(self, port: int, path: str = "/echo", **headers: str) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socket.sendall(handshake_request(path, **headers))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.socket.recv(65536)
            assert chunk, "the server closed during the handshake"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.head = head.decode("latin-1")

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk

    def read_frame(self) -> tuple[int, bytes]:
        """(first byte, payload) of the next server frame (never masked)."""
        self._fill(2)
        first, second = self.buffer[0], self.buffer[1]
        assert second & 0x80 == 0, "a server frame must not be masked"
        length = second & 0x7F
        offset = 2
        if length == 126:
            self._fill(4)
            length = struct.unpack("!H", self.buffer[2:4])[0]
            offset = 4
        elif length == 127:
            self._fill(10)
            length = struct.unpack("!Q", self.buffer[2:10])[0]
            offset = 10
        self._fill(offset + length)
        payload = self.buffer[offset : offset + length]
        self.buffer = self.buffer[offset + length :]
        return first, payload

    def read_close(self) -> tuple[int, str]:
        """Skips data frames up to the server's close frame: (code, reason)."""
        while True:
            first, payload = self.read_frame()
            if first & 0x0F == 0x8:
                if not payload:
                    return 1005, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def at_eof(self) -> bool:
        """Whether the server then ends the stream (reads to the end; data must be frames)."""
        return self.socket.recv(65536) == b"" or read_until_eof(self.socket) == b""

    def close(self) -> None:
        self.socket.close()


def masked_binary(payload: bytes) -> bytes:
    """A client binary frame with a zero mask key (valid, and the payload stays as it is)."""
    return struct.pack("!BBH", 0x82, 0x80 | 126, len(payload)) + b"\0\0\0\0" + payload


def assert_full_queue_stops_reading_and_loses_nothing(port: int) -> None:
    """Against a server started with ``--ws-max-queue 4`` whose ``/hold`` route holds the
    messages it is sent until ``/release`` is requested, then answers how many arrived in order:
    64 MiB (4,096 frames of 16 KiB, more than the kernel's buffers hold) must stop being read
    before the release, and all of it must arrive, in order, after."""
    count, size = 4096, 16384
    client = RawClient(port, "/hold")
    try:
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        client.send(frame(0x81, str(count).encode()))
        assert client.read_frame() == (0x81, b"holding")
        frames = [masked_binary(struct.pack("!I", i) + bytes(size - 4)) for i in range(count)]
        data = memoryview(b"".join(frames))
        # Once the queue is full the server stops reading, the kernel's buffers fill, and the
        # socket stays unwritable.
        client.socket.setblocking(False)
        sent = 0
        while sent < len(data):
            try:
                sent += client.socket.send(data[sent : sent + 65536])
            except BlockingIOError:
                _, writable, _ = select.select([], [client.socket], [], 2.0)
                if not writable:
                    break
        assert sent < len(data), "the server read everything: no backpressure"
        client.socket.setblocking(True)
        assert http_get(port, "/release")[0] == 200
        client.socket.sendall(data[sent:])
        assert client.read_frame() == (0x81, f"received {count} in order".encode())
    finally:
        client.close()


def assert_echoes_text_binary_and_fragments(ws: ClientConnection) -> None:
    """Over an echo WebSocket (websockets' sync client): text, binary, fragmented text and
    binary, and a message of several reads with a 16-bit length come back as sent."""
    ws.send("héllo")
    assert ws.recv() == "héllo"
    ws.send(b"\x00\x01\xff")
    assert ws.recv() == b"\x00\x01\xff"
    ws.send(["frag", "mént", "ed"])
    assert ws.recv() == "fragménted"
    ws.send([b"ab", b"cd"])
    assert ws.recv() == b"abcd"
    big = bytes(range(256)) * 200  # 51,200 bytes: a 16-bit length, several reads
    ws.send(big)
    assert ws.recv() == big


def assert_compressed_echo(client: RawClient) -> None:
    """Over an echo WebSocket that negotiated permessage-deflate with 4 KiB windows: a compressed
    text message comes back compressed (RSV1, a quarter of its size or less) and inflates to it."""
    compressor = zlib.compressobj(wbits=-12)
    text = b"hello compressed world " * 100
    payload = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    client.send(frame(0xC1, payload[:-4]))
    first, echoed = client.read_frame()
    assert first == 0xC1  # FIN, RSV1 (compressed), text
    assert len(echoed) < len(text) // 4
    assert zlib.decompressobj(wbits=-12).decompress(echoed + b"\x00\x00\xff\xff") == text
