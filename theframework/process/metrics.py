"""Prometheus metrics of a supervised server, served by the supervisor itself.

Workers push ``HttpServer.stats()`` snapshots (ipc.Stats) every second; ``Metrics`` keeps the
latest one per live worker and folds a worker's last snapshot into the retired totals when it
exits, so counters never go backwards. ``MetricsServer`` is a tiny non-blocking HTTP responder
driven by the supervisor's selector loop (no thread): ``GET /metrics`` returns the text format
(version 0.0.4), anything else 404.
"""

from __future__ import annotations

import contextlib
import math
import selectors
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics", "MetricsServer", "Totals"]

_COUNTERS = ("connections_accepted", "accept_pauses", "requests", "bytes_in", "bytes_out")
_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
SPAWN_REASONS = ("start", "crash", "hang", "recycle", "reload", "scale")
# Longest request head read from a scraper, and how long a scrape connection may stay open.
_MAX_REQUEST = 8192
_CONNECTION_TIMEOUT = 5.0


@dataclass
class Totals:
    """Counters summed over snapshots."""

    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    responses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STATUS_CLASSES, 0))
    buckets: dict[float, int] = field(default_factory=dict)
    duration_sum: float = 0.0
    # WebSocket messages by direction ("in", "out") and closes by close code (as text).
    websocket_messages: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    websocket_closes: dict[str, int] = field(default_factory=dict)
    # WebSocket sessions a drain (shutdown or a reload's retirement) sent close 1001.
    websocket_going_away: int = 0

    def add(self, stats: dict[str, Any]) -> None:
        """Adds one ``HttpServer.stats()`` snapshot."""
        for name in _COUNTERS:
            self.counters[name] += stats.get(name, 0)
        for status_class, count in stats.get("responses", {}).items():
            self.responses[status_class] = self.responses.get(status_class, 0) + count
        for bound, count in stats.get("duration_buckets", []):
            key = float(bound)
            self.buckets[key] = self.buckets.get(key, 0) + count
        self.duration_sum += stats.get("duration_sum", 0.0)
        websockets = stats.get("websockets", {})
        self.websocket_messages["in"] += websockets.get("messages_in", 0)
        self.websocket_messages["out"] += websockets.get("messages_out", 0)
        for code, count in websockets.get("closes", {}).items():
            self.websocket_closes[str(code)] = self.websocket_closes.get(str(code), 0) + count
        self.websocket_going_away += websockets.get("going_away", 0)

    def merged(self, snapshots: Iterable[dict[str, Any]]) -> Totals:
        """A copy of these totals plus ``snapshots``."""
        result = Totals(dict(self.counters), dict(self.responses), dict(self.buckets))
        result.duration_sum = self.duration_sum
        result.websocket_messages = dict(self.websocket_messages)
        result.websocket_closes = dict(self.websocket_closes)
        result.websocket_going_away = self.websocket_going_away
        for snapshot in snapshots:
            result.add(snapshot)
        return result


@dataclass
class _Live:
    stats: dict[str, Any]
    rss_bytes: int
    loop_lag: float


class Metrics:
    """What the supervisor knows, rendered as Prometheus text."""

    def __init__(self) -> None:
        self.retired = Totals()
        self.live: dict[int, _Live] = {}  # by pid
        self.worker_of: dict[int, int] = {}  # pid -> worker id
        self.spawns: dict[str, int] = dict.fromkeys(SPAWN_REASONS, 0)
        self.heartbeat_age: dict[int, float] = {}  # pid -> seconds since the last beat

    def spawned(self, reason: str) -> None:
        self.spawns[reason] = self.spawns.get(reason, 0) + 1

    def update(self, worker_id: int, pid: int, stats: dict[str, Any], rss: int, lag: float) -> None:
        self.live[pid] = _Live(stats, rss, lag)
        self.worker_of[pid] = worker_id

    def exited(self, pid: int | None) -> None:
        """Folds the worker's last snapshot into the retired totals."""
        if pid is None:
            return
        live = self.live.pop(pid, None)
        self.worker_of.pop(pid, None)
        self.heartbeat_age.pop(pid, None)
        if live is not None:
            self.retired.add(live.stats)

    def render(self, workers: int) -> str:
        """The text exposition format."""
        totals = self.retired.merged(live.stats for live in self.live.values())
        lines: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        def per_worker(name: str, values: dict[int, float]) -> None:
            for pid, value in sorted(values.items()):
                worker = self.worker_of.get(pid, 0)
                lines.append(f'{name}{{worker="{worker}",pid="{pid}"}} {_number(value)}')

        family("theframework_workers", "gauge", "Worker processes running.")
        lines.append(f"theframework_workers {workers}")
        family("theframework_connections_active", "gauge", "Open client connections.")
        per_worker(
            "theframework_connections_active",
            {pid: live.stats.get("connections_active", 0) for pid, live in self.live.items()},
        )
        family(
            "theframework_connections_peak",
            "gauge",
            "The most client connections a worker had open at once (bounded by --max-connections).",
        )
        per_worker(
            "theframework_connections_peak",
            {pid: live.stats.get("connections_peak", 0) for pid, live in self.live.items()},
        )
        family("theframework_connections_accepted_total", "counter", "Client connections accepted.")
        lines.append(
            f"theframework_connections_accepted_total "
            f"{_number(totals.counters['connections_accepted'])}"
        )
        family(
            "theframework_backpressure_waits_total",
            "counter",
            "Times a worker stopped accepting at --max-connections (clients wait in the backlog).",
        )
        lines.append(
            f"theframework_backpressure_waits_total {_number(totals.counters['accept_pauses'])}"
        )
        family("theframework_requests_total", "counter", "Requests answered, by status class.")
        for status_class in _STATUS_CLASSES:
            count = totals.responses.get(status_class, 0)
            lines.append(f'theframework_requests_total{{status_class="{status_class}"}} {count}')
        family(
            "theframework_worker_requests_total",
            "counter",
            "Requests handled by each running worker (for load balance).",
        )
        per_worker(
            "theframework_worker_requests_total",
            {pid: live.stats.get("requests", 0) for pid, live in self.live.items()},
        )
        family("theframework_requests_in_flight", "gauge", "Requests being handled.")
        per_worker(
            "theframework_requests_in_flight",
            {pid: live.stats.get("requests_in_flight", 0) for pid, live in self.live.items()},
        )
        family(
            "theframework_request_duration_seconds",
            "histogram",
            "Time from the request head to the end of the response.",
        )
        count = 0
        for bound in sorted(totals.buckets):
            count = totals.buckets[bound]
            label = "+Inf" if math.isinf(bound) else _number(bound)
            lines.append(f'theframework_request_duration_seconds_bucket{{le="{label}"}} {count}')
        if not any(math.isinf(bound) for bound in totals.buckets):
            lines.append(f'theframework_request_duration_seconds_bucket{{le="+Inf"}} {count}')
        lines.append(f"theframework_request_duration_seconds_sum {_number(totals.duration_sum)}")
        lines.append(f"theframework_request_duration_seconds_count {count}")
        family("theframework_received_bytes_total", "counter", "Bytes read from clients.")
        lines.append(f"theframework_received_bytes_total {_number(totals.counters['bytes_in'])}")
        family("theframework_sent_bytes_total", "counter", "Bytes written to clients.")
        lines.append(f"theframework_sent_bytes_total {_number(totals.counters['bytes_out'])}")
        _render_websockets(lines, family, per_worker, totals, self.live)
        family("theframework_worker_spawns_total", "counter", "Workers started, by reason.")
        for reason, spawned in sorted(self.spawns.items()):
            lines.append(f'theframework_worker_spawns_total{{reason="{reason}"}} {spawned}')
        family(
            "theframework_hub_loop_lag_seconds",
            "gauge",
            "How late a worker's 1-second timer fired last (its hub loop's lag).",
        )
        per_worker(
            "theframework_hub_loop_lag_seconds",
            {pid: live.loop_lag for pid, live in self.live.items()},
        )
        family(
            "theframework_heartbeat_age_seconds",
            "gauge",
            "Seconds since a worker's hub loop last ran (read from shared memory).",
        )
        per_worker("theframework_heartbeat_age_seconds", self.heartbeat_age)
        family("theframework_worker_resident_bytes", "gauge", "Resident memory of a worker.")
        per_worker(
            "theframework_worker_resident_bytes",
            {pid: live.rss_bytes for pid, live in self.live.items()},
        )
        return "\n".join(lines) + "\n"


def _render_websockets(
    lines: list[str],
    family: Callable[[str, str, str], None],
    per_worker: Callable[[str, dict[int, float]], None],
    totals: Totals,
    live: dict[int, _Live],
) -> None:
    """The WebSocket families: sessions open per worker, messages by direction, closes by code,
    sessions sent away by a drain."""
    family("theframework_websockets_open", "gauge", "Open WebSocket sessions.")
    per_worker(
        "theframework_websockets_open",
        {pid: worker.stats.get("websockets", {}).get("open", 0) for pid, worker in live.items()},
    )
    family(
        "theframework_websocket_messages_total",
        "counter",
        "WebSocket messages received (in) and sent (out).",
    )
    for direction, messages in totals.websocket_messages.items():
        lines.append(f'theframework_websocket_messages_total{{direction="{direction}"}} {messages}')
    family(
        "theframework_websocket_closes_total",
        "counter",
        "WebSocket sessions ended, by close code (1006: no close frame).",
    )
    for code, closes in sorted(totals.websocket_closes.items()):
        lines.append(f'theframework_websocket_closes_total{{code="{code}"}} {closes}')
    family(
        "theframework_websockets_going_away_total",
        "counter",
        "WebSocket sessions open when a drain (shutdown or reload) sent them close 1001.",
    )
    lines.append(f"theframework_websockets_going_away_total {totals.websocket_going_away}")


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return repr(float(value))


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    deadline: float
    received: bytes = b""
    outgoing: bytes = b""


class MetricsServer:
    """Answers scrapes on a non-blocking listener registered in ``selector`` (events carry
    ``("metrics", self)``); ``workers()`` is the number of running workers."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        host: str,
        port: int,
        metrics: Metrics,
        workers: Callable[[], int],
    ) -> None:
        self.selector = selector
        self.metrics = metrics
        self.workers = workers
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host.strip("[]"), port))
            self.listener.listen(64)
            self.listener.setblocking(False)
        except BaseException:
            self.listener.close()
            raise
        self.clients: list[_Client] = []
        selector.register(self.listener, selectors.EVENT_READ, ("metrics", self))

    @property
    def url(self) -> str:
        host, port = self.listener.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/metrics"

    def next_deadline(self) -> float | None:
        return min((client.deadline for client in self.clients), default=None)

    def handle(self, key: selectors.SelectorKey, events: int) -> None:
        if key.fileobj is self.listener:
            self._accept()
            return
        client = next((client for client in self.clients if client.sock is key.fileobj), None)
        if client is None:
            return
        if events & selectors.EVENT_READ and not client.outgoing:
            self._read(client)
        elif events & selectors.EVENT_WRITE:
            self._write(client)

    def expire(self, now: float) -> None:
        for client in [client for client in self.clients if client.deadline <= now]:
            self._close(client)

    def close(self) -> None:
        for client in list(self.clients):
            self._close(client)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()

    def close_in_child(self) -> None:
        """After fork, in a worker: drops the descriptors without touching the selector."""
        for client in self.clients:
            client.sock.close()
        self.listener.close()

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, _address = self.listener.accept()
            except OSError:  # nothing queued (BlockingIOError), or the listener failed
                return
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + _CONNECTION_TIMEOUT)
            self.clients.append(client)
            self.selector.register(sock, selectors.EVENT_READ, ("metrics", self))

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        if not data:
            self._close(client)
            return
        client.received += data
        if b"\r\n\r\n" not in client.received and b"\n\n" not in client.received:
            if len(client.received) > _MAX_REQUEST:
                self._respond(client, 431, "request head too large\n")
            return
        request_line = client.received.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            self._respond(client, 405, "only GET /metrics\n")
        elif parts[1].split("?", 1)[0] != "/metrics":
            self._respond(client, 404, "try /metrics\n")
        else:
            body = self.metrics.render(self.workers())
            self._respond(client, 200, body, head_only=parts[0] == "HEAD")

    def _respond(self, client: _Client, status: int, body: str, *, head_only: bool = False) -> None:
        reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large"}
        payload = body.encode()
        head = (
            f"HTTP/1.1 {status} {reasons[status]}\r\n"
            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        ).encode()
        client.outgoing = head + (b"" if head_only else payload)
        self.selector.modify(client.sock, selectors.EVENT_WRITE, ("metrics", self))
        self._write(client)

    def _write(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        client.outgoing = client.outgoing[sent:]
        if not client.outgoing:
            self._close(client)

    def _close(self, client: _Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.sock)
        client.sock.close()
        if client in self.clients:
            self.clients.remove(client)
