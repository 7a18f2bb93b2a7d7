"""A supervised worker process, the same under fork, spawn and forkserver (under spawn and
forkserver ``WorkerSpec`` is pickled, sockets included).

Order: signals reset -> process title -> the boot sequence (theframework.server.boot: logging,
env files, patch_all, the config file's worker_start hook, the application) -> the listening
socket the supervisor hands over (TCP: its slot's own SO_REUSEPORT socket; else the shared UNIX
or inherited ones) -> serve (``serve_listeners``), reporting
Ready over IPC once listening with the hub running and the startup hooks done. Every failure
ends the process with an ``ExitCode``, after a one-line Failure message to the supervisor.

While serving (``_Runtime``): the hub writes a heartbeat into memory shared with the supervisor;
a monitor greenlet sends Stats every second and asks for a rolling replacement (Recycle) when
--max-requests, --worker-lifetime or --worker-max-rss says so; a reader greenlet waits for the
supervisor's Drain; SIGUSR1 logs every greenlet's traceback (a hung worker, before it is killed)
and SIGUSR2 makes faulthandler dump the C-level stacks.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import faulthandler
import logging
import mmap
import os
import random
import signal
import socket
import sys
import time
import traceback
from types import FrameType

from .. import _core
from ..configfile import NO_HOOKS, ConfigFileError, Hooks, hooks_for
from ..server.boot import Booted, BootError, boot
from ..server.exitcodes import ExitCode, exit_code_for_hub_failure, exit_code_for_os_error
from ..server.serve import serve_listeners
from ..server.signals import format_greenlet_stacks
from ..server.sockets import listener_url
from . import heartbeat, ipc
from .proctitle import set_process_title, short_title
from .spec import WorkerSpec

__all__ = ["main", "run"]

logger = logging.getLogger("theframework.worker")

_PR_SET_PDEATHSIG = 1


class _WorkerIdFilter(logging.Filter):
    """Puts ``worker_id`` on every record (for handlers with their own formats)."""

    def __init__(self, worker_id: int) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker_id = self.worker_id
        return True


def _report(
    spec: WorkerSpec,
    code: int,
    description: str,
    *,
    with_traceback: bool = False,
    formatted: str = "",
) -> int:
    """Tells the supervisor why this worker ends (with ``formatted``, or the traceback of the
    exception being handled when ``with_traceback``); returns ``code``."""
    if with_traceback:
        formatted = traceback.format_exc()
    failure = ipc.Failure(spec.worker_id, os.getpid(), int(code), description, formatted)
    try:
        ipc.send(spec.channel, failure)
    except OSError:  # the supervisor is gone: say it here, the exit code says the rest
        logger.error("%s\n%s", description, formatted)
    return code


def _reset_signals() -> None:
    """A forked worker inherits the supervisor's handlers and wake-up fd. SIGINT is ignored until
    serving starts (the supervisor turns a Ctrl-C into SIGTERM); SIGTERM kills until then."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # The supervisor's reload and scaling signals mean nothing to a worker (a terminal hang-up
    # reaches the supervisor, which stops the workers itself).
    for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, signal.SIG_IGN)


def _stop_with_parent() -> None:
    """Asks the kernel for SIGTERM (a graceful drain) when the parent process dies, so that a
    killed supervisor leaves no worker behind (under forkserver the parent is the fork server,
    which exits with the supervisor)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def run(spec: WorkerSpec) -> int:
    """Runs one worker to its end; returns its exit code (see ExitCode)."""
    _reset_signals()
    _stop_with_parent()
    worker_label = f"worker-{spec.worker_id}"
    set_process_title(
        f"{spec.process.proc_name} {worker_label}",
        short_title(spec.process.proc_name, f"w{spec.worker_id}"),
    )
    try:
        return _boot_and_serve(spec, worker_label)
    except OSError as error:
        if error.errno in (errno.EMFILE, errno.ENFILE):
            return _report(spec, ExitCode.TOO_MANY_FILES, f"out of file descriptors: {error}")
        raise


def _boot_and_serve(spec: WorkerSpec, worker_label: str) -> int:
    hooks = NO_HOOKS
    try:
        # Forked: the supervisor's loaded file; spawn, forkserver: the file runs again here.
        hooks = hooks_for(spec.process)
        booted = boot(
            spec.app,
            spec.server,
            spec.process,
            log_label=worker_label,
            multiprocess=spec.process.supervised,
            hooks=hooks,
            worker_id=spec.worker_id,
        )
    except ConfigFileError as error:
        return _report(spec, ExitCode.USAGE, error.message, formatted=error.traceback)
    except BootError as error:
        # Not logged here: the supervisor logs the Failure once (every worker fails alike).
        return _report(spec, error.exit_code, error.message, formatted=error.traceback)
    finally:
        # Every record carries the worker id (for handlers with their own formats).
        id_filter = _WorkerIdFilter(spec.worker_id)
        for handler in logging.getLogger().handlers:
            handler.addFilter(id_filter)
    return _serve(spec, booted, hooks, list(spec.listeners), owns_listener=spec.slot_listener)


def _serve(
    spec: WorkerSpec,
    booted: Booted,
    hooks: Hooks,
    listeners: list[socket.socket],
    *,
    owns_listener: bool,
) -> int:
    """Serves until the end; the exit code. ``owns_listener``: the TCP socket of this worker's
    slot (a SIGTERM drain shuts it down), else the supervisor's shared sockets (UNIX or
    inherited)."""
    address = ", ".join(listener_url(listener) for listener in listeners)
    phase = "create the hub"

    def hub_started() -> None:
        nonlocal phase
        phase = "run the startup hooks"

    runtime = _Runtime(spec)

    def ready() -> None:
        nonlocal phase
        phase = "serve"
        ipc.send(spec.channel, ipc.Ready(spec.worker_id, os.getpid(), address))
        if spec.process.supervised:
            runtime.start()

    try:
        serve_listeners(
            booted.handler,
            listeners,
            spec.server,
            ready=ready,
            hub_started=hub_started,
            access_log=booted.access_log,
            rebalance_every=REBALANCE_EVERY if spec.process.supervised else 0,
            created=runtime.created,
            owns_listeners=owns_listener,
            hooks=hooks,
            worker_id=spec.worker_id,
        )
    except Exception as error:
        return _serving_failed(spec, phase, error)
    finally:
        for listener in listeners:
            listener.close()
    runtime.send_final_stats()
    return ExitCode.OK


def _serving_failed(spec: WorkerSpec, phase: str, error: Exception) -> int:
    """Reports an exception that ended serving in ``phase``; the exit code."""
    if phase == "create the hub" and isinstance(error, OSError):
        if error.errno in (errno.EMFILE, errno.ENFILE):
            raise error
        logger.error("cannot %s: %s", phase, error)
        return _report(spec, exit_code_for_os_error(error), f"cannot {phase}: {error}")
    if phase != "serve":
        return _report(spec, ExitCode.APP_FAILED, f"cannot {phase}: {error!r}", with_traceback=True)
    logger.exception("the hub failed while serving")
    code = exit_code_for_hub_failure(error)
    return _report(spec, code, f"the hub failed while serving: {error!r}")


_MIB = 1024 * 1024
# One response in this many closes its keep-alive connection, so that keep-alive clients spread
# again over the SO_REUSEPORT group: a busier worker closes more connections and the reconnections
# land anywhere, which keeps the workers' shares even.
REBALANCE_EVERY = 1000
# Seconds between two Recycle requests while the condition holds (the first is sent at once).
_RECYCLE_REPEAT = 5.0


def resident_bytes() -> int:
    """This process's resident set size (/proc/self/statm), in bytes; 0 when unknown."""
    try:
        with open("/proc/self/statm", "rb") as stream:
            return int(stream.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


class _Runtime:
    """What a supervised worker does besides serving (see the module docstring)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.closing = False
        self.hub: _core.Hub | None = None
        self.http_server: _core.HttpServer | None = None
        self.heartbeat_memory: mmap.mmap | None = None
        self.heartbeat_view: memoryview | None = None
        process = spec.process
        self.request_limit = (
            process.max_requests + random.randint(0, process.max_requests_jitter)
            if process.max_requests
            else 0
        )
        self.started = time.monotonic()
        self.lifetime = (
            process.worker_lifetime + random.uniform(0.0, process.worker_lifetime_jitter)
            if process.worker_lifetime
            else 0.0
        )

    # -- set-up ------------------------------------------------------------------------------

    def created(self, hub: _core.Hub, http_server: _core.HttpServer) -> None:
        self.hub = hub
        self.http_server = http_server
        if self.spec.heartbeat is not None and self.spec.process.worker_timeout > 0:
            supervisor_pid, descriptor, cell = self.spec.heartbeat
            try:
                shared = os.open(f"/proc/{supervisor_pid}/fd/{descriptor}", os.O_RDWR)
                try:
                    end = heartbeat.cell_offset(cell + 1)
                    self.heartbeat_memory = mmap.mmap(shared, end)
                finally:
                    os.close(shared)
                start = heartbeat.cell_offset(cell)
                self.heartbeat_view = memoryview(self.heartbeat_memory)[start:end]
                interval = min(1.0, self.spec.process.worker_timeout / 4)
                hub.set_heartbeat(self.heartbeat_view, interval)
            except (OSError, ValueError) as error:
                logger.warning("no heartbeat (hang detection off for this worker): %s", error)
        if self.spec.process.supervised:
            signal.signal(signal.SIGUSR1, self._dump_tracebacks)
            with contextlib.suppress(RuntimeError, ValueError):
                faulthandler.register(signal.SIGUSR2, all_threads=True)

    def start(self) -> None:
        """In the hub, once ready: the monitor and the channel reader."""
        _core.spawn(self._monitor)
        _core.spawn(self._read_channel)

    def send_final_stats(self) -> None:
        """After serving: the last counters, so the supervisor's totals miss nothing."""
        if self.http_server is None or not self.spec.process.supervised:
            return
        message = ipc.Stats(
            self.spec.worker_id, os.getpid(), self.http_server.stats(), resident_bytes(), 0.0
        )
        with contextlib.suppress(OSError, ValueError):
            ipc.send(self.spec.channel, message)

    # -- the hang dump -----------------------------------------------------------------------

    def _dump_tracebacks(self, signum: int, frame: FrameType | None) -> None:
        logger.error(
            "worker %d (pid %d): tracebacks of every greenlet (SIGUSR1):\n%s",
            self.spec.worker_id,
            os.getpid(),
            format_greenlet_stacks(frame),
        )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        with contextlib.suppress(OSError):
            ipc.send(self.spec.channel, ipc.Dumped(self.spec.worker_id, os.getpid()))

    # -- greenlets ---------------------------------------------------------------------------

    def _send(self, message: ipc.Message) -> None:
        with contextlib.suppress(OSError):
            _core.send(self.spec.channel.fileno(), ipc.encode(message), 5.0)

    def _monitor(self) -> None:
        """Stats every tick, and the recycle conditions."""
        assert self.http_server is not None
        process = self.spec.process
        tick = min(1.0, process.rss_interval)
        next_rss = time.monotonic() + process.rss_interval
        over_limit = 0
        last_request = 0.0
        while True:
            before = time.monotonic()
            _core.sleep(tick)
            now = time.monotonic()
            lag = max(0.0, now - before - tick)
            stats = self.http_server.stats()
            rss = resident_bytes()
            self._send(ipc.Stats(self.spec.worker_id, os.getpid(), stats, rss, lag))
            if self.closing:
                continue
            reason = detail = ""
            if self.request_limit and stats["requests"] >= self.request_limit:
                reason, detail = "max-requests", f"{stats['requests']} requests served"
            elif self.lifetime and now - self.started >= self.lifetime:
                reason, detail = "lifetime", f"running for {now - self.started:.0f} s"
            if process.worker_max_rss and now >= next_rss:
                next_rss = now + process.rss_interval
                if rss > process.worker_max_rss * _MIB:
                    over_limit += 1
                else:
                    over_limit = 0
                if over_limit >= process.rss_samples and not reason:
                    reason = "max-rss"
                    detail = (
                        f"resident memory {rss / _MIB:.0f} MiB above {process.worker_max_rss} "
                        f"MiB in {over_limit} samples"
                    )
            if reason and now - last_request >= _RECYCLE_REPEAT:
                last_request = now
                logger.info("asking to be replaced (%s: %s)", reason, detail)
                self._send(ipc.Recycle(self.spec.worker_id, os.getpid(), reason, detail))

    def _read_channel(self) -> None:
        descriptor = self.spec.channel.fileno()
        while True:
            try:
                data = _core.recv(descriptor, ipc.MAX_MESSAGE_SIZE + 1)
            except OSError:
                return
            if not data:
                return  # the supervisor is gone (PR_SET_PDEATHSIG stops this worker)
            try:
                message = ipc.decode(data)
            except ValueError:
                continue
            if isinstance(message, ipc.Drain):
                self.drain(message)

    # -- draining ----------------------------------------------------------------------------

    def drain(self, message: ipc.Drain) -> None:
        """Stops accepting as ``message.mode`` says (ipc.HANDOVER: at once, leaving what is
        queued to the successor that accepts from the same socket; ipc.LEAVE: after
        ``message.settle`` seconds, taking what is queued, then Released) and answers each open
        connection's next request with Connection: close (HttpServer.retire); serving ends once
        no connection is left (idle keep-alive connections end by their timeout), so no client
        sees a connection closed under its request. The socket is never shut down here: a
        successor may accept from it, and the supervisor takes it out of the group."""
        if self.closing or self.http_server is None:
            return
        self.closing = True
        if message.mode == ipc.LEAVE:
            logger.info("draining: leaving the listener group")
            _core.spawn(self._leave, message.settle, message.graceful_timeout)
            return
        logger.info("draining: replaced by a new worker")
        self.http_server.retire(False)
        _core.spawn(self._bound_drain, message.graceful_timeout)

    def _leave(self, settle: float, graceful_timeout: float) -> None:
        """A LEAVE drain: accepts while the connections already on their way arrive (new ones
        are steered to the other sockets), then takes what is queued and says so."""
        assert self.http_server is not None
        _core.sleep(settle)
        self.http_server.retire(True)
        self._send(ipc.Released(self.spec.worker_id, os.getpid()))
        self._bound_drain(graceful_timeout)

    def _bound_drain(self, graceful_timeout: float) -> None:
        """Bounds the drain: after the keep-alive timeout (or graceful_timeout, if shorter)
        whatever is still open is drained the hard way."""
        assert self.http_server is not None
        _core.sleep(min(graceful_timeout, self.spec.server.keepalive_timeout + 1.0))
        self.http_server.shutdown(graceful_timeout)


def main(spec: WorkerSpec) -> None:
    """Runs the worker and exits the process with its code (theframework.process.spec.run_worker
    calls this in the child)."""
    code = run(spec)
    logging.shutdown()
    with contextlib.suppress(OSError):  # the supervisor may be gone
        ipc.send(spec.channel, ipc.Exiting(spec.worker_id, os.getpid(), code))
    sys.exit(code)
