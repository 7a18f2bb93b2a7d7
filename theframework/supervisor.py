"""The pre-fork supervisor: the parent process of ``--workers N``.

It never creates a hub or a ring and runs no threads. Its whole life is one loop over a selector
holding each worker's IPC channel and process sentinel plus the signal wake-up pipe; signal
handlers only record the signal, and every timer (respawn backoff, startup timeout, shutdown
deadline) becomes the selector's timeout, so nothing ever sleeps.

Slots: worker ``i`` always runs in slot ``i``; a crashed worker is respawned in its slot after a
backoff of 0.1 s doubling up to 5 s, and a slot whose worker crashed 5 times within 60 s is
stopped. What an exit code makes the supervisor do is in ``_on_worker_exit`` (and the table in
docs/processes.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import multiprocessing.process
import multiprocessing.util
import os
import pickle
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from . import ipc, worker
from .config import ProcessConfig, ServerConfig
from .ipc import ExitCode
from .proctitle import set_process_title
from .server import bind_socket, listener_url

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW",
    "Supervisor",
    "SupervisorError",
    "choose_start_method",
    "notify_systemd",
    "run_supervisor",
]

logger = logging.getLogger("theframework.supervisor")

# A slot whose worker crashed this many times within CRASH_WINDOW seconds is stopped.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
# Respawn delay after the n-th crash in the window: FIRST_BACKOFF * 2**(n-1), at most MAX_BACKOFF.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# Time workers get after graceful_timeout (their drain) to run the shutdown hooks and exit.
SHUTDOWN_HOOKS_GRACE = 5.0

# What to tell the operator when no worker can ever start, by exit code.
_ADVICE = {
    ExitCode.ADDRESS_IN_USE: "another process holds this address without SO_REUSEPORT: stop it "
    "or choose another --port / --uds",
    ExitCode.PERMISSION_DENIED: "ports below 1024 need root or CAP_NET_BIND_SERVICE, and a UNIX "
    "socket needs a directory this user can write: choose another address or grant the right",
    ExitCode.TOO_MANY_FILES: "raise the open-files limit (ulimit -n, systemd LimitNOFILE=) or "
    "lower --workers / --max-connections",
}


class SupervisorError(RuntimeError):
    """The supervised server stopped because of a failure; ``exit_code`` is what the command
    line exits with."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def count_threads() -> int:
    """Threads of this process, native ones included (the kernel's count)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def choose_start_method(requested: str, app: object) -> tuple[str, str]:
    """(start method, why) for ``requested`` ("auto", "fork", "spawn" or "forkserver").

    auto: fork when this process runs a single thread (forking copies no lock held by another
    thread, and the workers start fastest); else forkserver, which needs the application as an
    import string or a picklable object. SupervisorError (exit 2) when spawn or forkserver
    cannot send ``app`` to the workers.
    """
    if requested == "auto":
        threads = count_threads()
        if threads == 1:
            return "fork", "the supervisor runs a single thread"
        if _picklable(app) is None:
            return "forkserver", f"the supervisor runs {threads} threads (unsafe to fork)"
        logger.warning(
            "the supervisor runs %d threads, but the application object cannot be sent to a "
            "forkserver; forking anyway (give the application as 'module:attribute' instead)",
            threads,
        )
        return "fork", f"forced: {threads} threads but the application is not picklable"
    if requested in ("spawn", "forkserver"):
        problem = _picklable(app)
        if problem is not None:
            raise SupervisorError(
                ExitCode.USAGE,
                f"under --start-method {requested} the application must be an import string "
                f"('module:attribute') or an importable object; {app!r} is not: {problem}",
            )
    return requested, "requested"


def _picklable(app: object) -> str | None:
    """None when ``app`` can be sent to a spawned process, else why not."""
    if isinstance(app, str):
        return None
    try:
        pickle.dumps(app)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def notify_systemd(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Sends ``state`` (e.g. "READY=1") to $NOTIFY_SOCKET (a datagram UNIX socket; "@name" is
    in the abstract namespace). False when the variable is unset; OSError when sending fails."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notifier:
        notifier.connect(address)
        notifier.sendall(state.encode())
    return True


@dataclass(eq=False)
class _Slot:
    """One worker position; its process is replaced when it crashes."""

    worker_id: int
    process: multiprocessing.process.BaseProcess | None = None
    channel: socket.socket | None = None
    ready: bool = False
    started_at: float = 0.0
    # Set while waiting to respawn.
    respawn_at: float | None = None
    # Set once the slot will never run a worker again (and the exit code that stopped it).
    stopped_with: int | None = None
    crashes: deque[float] = field(default_factory=deque)
    timed_out: bool = False
    # The last Failure message of the current process, if it sent one.
    failure: ipc.Failure | None = None


class Supervisor:
    """Runs ``process.worker_count`` workers serving ``app`` with ``server`` until SIGTERM or
    SIGINT, or until no worker can run. ``ready()`` is called (in this process) once every
    worker is ready for the first time."""

    def __init__(
        self,
        app: object,
        server: ServerConfig,
        process: ProcessConfig,
        *,
        ready: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.server = server
        self.process = process
        self.on_ready = ready
        self.slots = [_Slot(worker_id) for worker_id in range(1, process.worker_count + 1)]
        self.selector: selectors.BaseSelector | None = None
        self.wakeup: tuple[int, int] | None = None
        self.received_signals: list[int] = []
        self.listener: socket.socket | None = None  # the UNIX socket all workers accept on
        self.port_reservation: socket.socket | None = None  # holds port 0's choice
        self.address = server.bind_description
        self.context: Any = None
        self.start_method = ""
        self.announced = False
        self.stopping = False
        self.kill_deadline: float | None = None
        self.exit_code = 0
        self.pid_file_written = False
        # The error that stopped the server, as logged (None after a clean shutdown).
        self.error_message: str | None = None

    # -- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Supervises until the end; returns the exit code (logging why when it is not 0)."""
        try:
            self.start_method, reason = choose_start_method(self.process.start_method, self.app)
        except SupervisorError as error:
            self._error("%s", error)
            return error.exit_code
        for path in self.process.env_files:
            if not os.access(path, os.R_OK):
                self._error("cannot read the environment file %r", path)
                return ExitCode.USAGE
        self.context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # Preloading __main__ would import the command line's (or the embedding script's)
            # main module in the fork server.
            self.context.set_forkserver_preload([])
        set_process_title(f"{self.process.proc_name} master")
        code = self._open_listener()
        if code is not None:
            return code
        logger.info(
            "starting %d workers on %s (start method %s: %s)",
            len(self.slots),
            self.address,
            self.start_method,
            reason,
        )
        previous_handlers = self._install_signal_handlers()
        try:
            self.selector = selectors.DefaultSelector()
            assert self.wakeup is not None
            self.selector.register(self.wakeup[0], selectors.EVENT_READ, None)
            multiprocessing.util.register_after_fork(self, Supervisor._close_in_worker)
            for slot in self.slots:
                if not self.stopping:
                    self._start(slot)
            self._loop()
        finally:
            self._restore_signal_handlers(previous_handlers)
            self._cleanup()
        return self.exit_code

    def _open_listener(self) -> int | None:
        """Binds the UNIX socket (shared by all workers) or reserves port 0's choice. An exit
        code when that fails."""
        try:
            if self.server.uds is not None:
                self.listener = bind_socket(self.server)
                self.listener_inode = os.stat(self.server.uds).st_ino
                self.address = listener_url(self.listener)
            elif self.server.port == 0:
                self.port_reservation = self._reserve_port()
        except OSError as error:
            code = ipc.exit_code_for_os_error(error)
            self._log_cannot_start(code, error.strerror or str(error), error.errno)
            return code
        return None

    def _reserve_port(self) -> socket.socket:
        """A bound, never listening SO_REUSEPORT socket on a kernel-chosen port: the workers bind
        the same port, and respawned ones find it still free for them."""
        host = self.server.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        reservation = socket.socket(family, socket.SOCK_STREAM)
        try:
            reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reservation.bind((host, 0))
        except BaseException:
            reservation.close()
            raise
        port = reservation.getsockname()[1]
        self.server = _replace_port(self.server, port)
        self.address = self.server.bind_description
        return reservation

    def _loop(self) -> None:
        assert self.selector is not None
        while self._has_live_workers() or not self.stopping:
            events = self.selector.select(self._next_timeout())
            # Signals first: a worker that exits because of the same Ctrl-C is then seen as
            # stopping, not as crashing.
            if any(key.data is None for key, _ in events):
                self._drain_wakeup()
            self._handle_signals()
            for key, _ in events:
                if key.data is None:
                    continue
                kind, slot = key.data
                # An earlier event of this batch may have closed the object (a reaped worker).
                if kind == "channel" and slot.channel is key.fileobj:
                    self._read_channel(slot)
                elif kind == "sentinel" and slot.process and slot.process.sentinel == key.fileobj:
                    self._reap(slot)
            self._handle_timers()

    def _has_live_workers(self) -> bool:
        return any(slot.process is not None for slot in self.slots)

    def _next_timeout(self) -> float | None:
        deadlines: list[float] = []
        for slot in self.slots:
            if slot.respawn_at is not None:
                deadlines.append(slot.respawn_at)
            if slot.process is not None and not slot.ready and not slot.timed_out:
                deadlines.append(slot.started_at + self.process.startup_timeout)
        if self.kill_deadline is not None:
            deadlines.append(self.kill_deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    # -- workers -----------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        assert self.selector is not None
        slot.respawn_at = None
        slot.ready = False
        slot.timed_out = False
        slot.failure = None
        try:
            supervisor_end, worker_end = ipc.channel_pair()
        except OSError as error:
            self._failed_to_start(slot, error)
            return
        slot.channel = supervisor_end
        spec = worker.WorkerSpec(
            worker_id=slot.worker_id,
            app=self.app,
            server=self.server,
            process=self.process,
            channel=worker_end,
            listener=self.listener,
        )
        process = self.context.Process(
            target=worker.main,
            args=(spec,),
            name=f"{self.process.proc_name} worker-{slot.worker_id}",
        )
        try:
            process.start()
        except Exception as error:
            supervisor_end.close()
            slot.channel = None
            self._failed_to_start(slot, error)
            return
        finally:
            worker_end.close()
        slot.process = process
        slot.started_at = time.monotonic()
        supervisor_end.setblocking(False)
        self.selector.register(supervisor_end, selectors.EVENT_READ, ("channel", slot))
        self.selector.register(process.sentinel, selectors.EVENT_READ, ("sentinel", slot))
        logger.debug("worker %d started (pid %s)", slot.worker_id, process.pid)

    def _failed_to_start(self, slot: _Slot, error: Exception) -> None:
        """This process could not start a worker (out of fds or processes, or pickling)."""
        code = (
            ExitCode.TOO_MANY_FILES
            if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE)
            else ExitCode.GENERIC
        )
        slot.failure = ipc.Failure(slot.worker_id, 0, code, f"cannot start a worker: {error}")
        self._after_exit(slot, code)

    def _read_channel(self, slot: _Slot) -> None:
        assert self.selector is not None and slot.channel is not None
        messages = ipc.receive(slot.channel)
        if messages is None:
            self.selector.unregister(slot.channel)
            slot.channel.close()
            slot.channel = None
            return
        for message in messages:
            if isinstance(message, ipc.Ready):
                self._on_ready(slot, message)
            else:
                slot.failure = message

    def _on_ready(self, slot: _Slot, message: ipc.Ready) -> None:
        slot.ready = True
        logger.info("worker %d ready (pid %d)", slot.worker_id, message.pid)
        if message.address.startswith("http"):
            self.address = message.address
        if self.announced or self.stopping:
            return
        running = [slot for slot in self.slots if slot.stopped_with is None]
        if running and all(slot.ready for slot in running):
            self._announce()

    def _announce(self) -> None:
        """Every worker is ready for the first time: log, pid file, systemd, ready hook."""
        self.announced = True
        running = sum(1 for slot in self.slots if slot.stopped_with is None)
        logger.info("ready: %s (%d workers, pid %d)", self.address, running, os.getpid())
        if self.process.pid_file is not None:
            try:
                _write_pid_file(self.process.pid_file)
                self.pid_file_written = True
            except OSError as error:
                logger.error("cannot write the pid file: %s", error)
        try:
            notify_systemd(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving on {self.address}")
        except OSError as error:
            logger.warning("cannot notify systemd: %s", error)
        if self.on_ready is not None:
            try:
                self.on_ready()
            except Exception:
                logger.exception("the ready callback failed")

    def _reap(self, slot: _Slot) -> None:
        assert self.selector is not None and slot.process is not None
        process = slot.process
        if slot.channel is not None:  # read what it said before dying
            self._read_channel(slot)
        if slot.channel is not None:
            self.selector.unregister(slot.channel)
            slot.channel.close()
            slot.channel = None
        self.selector.unregister(process.sentinel)
        process.join()
        code = process.exitcode if process.exitcode is not None else ExitCode.GENERIC
        process.close()
        slot.process = None
        slot.ready = False
        self._after_exit(slot, code)

    def _after_exit(self, slot: _Slot, code: int) -> None:
        """Decides what a worker's exit means: nothing while stopping; else halt, stop the slot
        or respawn it (see docs/processes.md)."""
        description = _describe_exit(code, slot)
        if self.stopping:
            if code != 0:
                logger.warning("worker %d ended during shutdown: %s", slot.worker_id, description)
            else:
                logger.debug("worker %d stopped", slot.worker_id)
            return
        if code in (ExitCode.USAGE, ExitCode.APP_FAILED):
            trace = slot.failure.traceback.rstrip() if slot.failure else ""
            self._error(
                "worker %d: %s; stopping the server%s",
                slot.worker_id,
                description,
                "\n" + trace if trace else "",
            )
            self._stop_slot(slot, code, quiet=True)
            self._begin_shutdown(code)
            return
        if code == ExitCode.PERMISSION_DENIED:
            logger.warning("worker %d: %s; not restarting it", slot.worker_id, description)
            self._stop_slot(slot, code)
            return
        if code == ExitCode.TOO_MANY_FILES:
            running = sum(1 for other in self.slots if other.stopped_with is None) - 1
            logger.warning(
                "worker %d: %s; lowering the target worker count to %d",
                slot.worker_id,
                description,
                running,
            )
            self._stop_slot(slot, code)
            return
        now = time.monotonic()
        slot.crashes.append(now)
        while slot.crashes and slot.crashes[0] < now - CRASH_WINDOW:
            slot.crashes.popleft()
        if len(slot.crashes) >= CRASH_LIMIT:
            logger.warning(
                "worker %d failed %d times within %g s (last: %s); not restarting it",
                slot.worker_id,
                len(slot.crashes),
                CRASH_WINDOW,
                description,
            )
            self._stop_slot(slot, code)
            return
        delay = min(FIRST_BACKOFF * 2 ** (len(slot.crashes) - 1), MAX_BACKOFF)
        logger.warning("worker %d: %s; restarting it in %.1f s", slot.worker_id, description, delay)
        slot.respawn_at = now + delay

    def _stop_slot(self, slot: _Slot, code: int, *, quiet: bool = False) -> None:
        slot.stopped_with = code
        slot.respawn_at = None
        if self.stopping or any(other.stopped_with is None for other in self.slots):
            if not self.announced and not self.stopping:
                running = [other for other in self.slots if other.stopped_with is None]
                if running and all(other.ready for other in running):
                    self._announce()
            return
        # No slot left: the server cannot run.
        final = code if code in _ADVICE else ExitCode.GENERIC
        if not quiet:
            detail = slot.failure.description if slot.failure else _describe_exit(code, slot)
            errno_name = _ERRNO_OF.get(code)
            advice = _ADVICE.get(ExitCode(final)) if final in _ADVICE else None
            if advice is not None:
                self._log_cannot_start(final, detail, errno_name)
            else:
                self._error(
                    "no worker can run (every slot failed %d times within %g s; last: %s); "
                    "stopping",
                    CRASH_LIMIT,
                    CRASH_WINDOW,
                    detail,
                )
        self._begin_shutdown(final)

    def _log_cannot_start(self, code: int, detail: str, error: int | str | None) -> None:
        """The one error line naming the address, the errno and what to do."""
        name = errno.errorcode.get(error, str(error)) if isinstance(error, int) else error
        advice = _ADVICE.get(ExitCode(code)) if code in _ADVICE else None
        if self.address not in detail:
            detail = f"cannot serve on {self.address}: {detail}"
        self._error("%s [%s]; %s", detail, name or "no errno", advice or "see the log above")

    def _error(self, message: str, *arguments: object) -> None:
        """Logs the error that stops the server and keeps it for ``error_message``."""
        logger.error(message, *arguments)
        if self.error_message is None:
            self.error_message = message % arguments

    def _handle_timers(self) -> None:
        now = time.monotonic()
        if self.kill_deadline is not None and now >= self.kill_deadline:
            self.kill_deadline = None
            self._kill_all("did not stop within the graceful timeout")
        for slot in self.slots:
            if slot.respawn_at is not None and now >= slot.respawn_at and not self.stopping:
                self._start(slot)
            process = slot.process
            if (
                process is not None
                and not slot.ready
                and not slot.timed_out
                and now >= slot.started_at + self.process.startup_timeout
            ):
                slot.timed_out = True
                logger.warning(
                    "worker %d not ready within %g s (--startup-timeout); killing it",
                    slot.worker_id,
                    self.process.startup_timeout,
                )
                _signal_process(process, signal.SIGKILL)

    # -- signals and shutdown ----------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (read_end, write_end)
        previous: dict[int, Any] = {-1: signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._record_signal)
        return previous

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received_signals.append(signum)

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            if signum == -1:
                signal.set_wakeup_fd(handler)
            else:
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _drain_wakeup(self) -> None:
        assert self.wakeup is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wakeup[0], 512):
                pass

    def _handle_signals(self) -> None:
        while self.received_signals:
            signum = self.received_signals.pop(0)
            name = signal.Signals(signum).name
            if not self.stopping:
                logger.info("%s received: stopping the workers gracefully", name)
                self._begin_shutdown(0)
            elif signum == signal.SIGINT:
                logger.warning("second SIGINT: killing the workers now")
                self.exit_code = 130
                self._kill_all("stopped at once")

    def _begin_shutdown(self, code: int) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = code
        for slot in self.slots:
            slot.respawn_at = None
            if slot.process is not None:
                _signal_process(slot.process, signal.SIGTERM)
        self.kill_deadline = time.monotonic() + self.server.graceful_timeout + SHUTDOWN_HOOKS_GRACE
        with contextlib.suppress(OSError):
            notify_systemd("STOPPING=1")

    def _kill_all(self, why: str) -> None:
        for slot in self.slots:
            if slot.process is not None:
                logger.warning("worker %d %s: killing it", slot.worker_id, why)
                _signal_process(slot.process, signal.SIGKILL)

    # -- cleanup -----------------------------------------------------------------------------

    def _close_in_worker(self) -> None:
        """After fork, in the worker: drops the supervisor's descriptors (the listener stays)."""
        if self.selector is not None:
            self.selector.close()
        if self.wakeup is not None:
            for descriptor in self.wakeup:
                os.close(descriptor)
        if self.port_reservation is not None:
            self.port_reservation.close()
        for slot in self.slots:
            if slot.channel is not None:
                slot.channel.close()

    def _cleanup(self) -> None:
        if self.selector is not None:
            self.selector.close()
        if self.wakeup is not None:
            for descriptor in self.wakeup:
                os.close(descriptor)
            self.wakeup = None
        for slot in self.slots:
            if slot.channel is not None:
                slot.channel.close()
        if self.port_reservation is not None:
            self.port_reservation.close()
        if self.listener is not None:
            self.listener.close()
            assert self.server.uds is not None
            with contextlib.suppress(OSError):
                if os.stat(self.server.uds).st_ino == self.listener_inode:
                    os.unlink(self.server.uds)
        if self.pid_file_written and self.process.pid_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.process.pid_file)
        logger.info("stopped (exit code %d)", self.exit_code)


_ERRNO_OF: dict[int, str] = {
    ExitCode.ADDRESS_IN_USE: "EADDRINUSE",
    ExitCode.PERMISSION_DENIED: "EACCES",
    ExitCode.TOO_MANY_FILES: "EMFILE",
}


def _replace_port(config: ServerConfig, port: int) -> ServerConfig:
    import dataclasses

    return dataclasses.replace(config, port=port)


def _describe_exit(code: int, slot: _Slot) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}" + (
                " (startup timeout)" if slot.timed_out else ""
            )
        return f"killed by signal {-code}"
    text = f"exit {code}"
    with contextlib.suppress(ValueError):
        text += f" ({ExitCode(code).name})"
    if slot.failure is not None:
        text += f": {slot.failure.description}"
    return text


def _signal_process(process: multiprocessing.process.BaseProcess, signum: int) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _write_pid_file(path: str) -> None:
    """Writes this pid to ``path`` atomically (temporary file, then rename)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as stream:
        stream.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def run_supervisor(
    app: object,
    server: ServerConfig,
    process: ProcessConfig,
    *,
    ready: Callable[[], None] | None = None,
) -> int:
    """Runs a Supervisor to its end; returns its exit code."""
    return Supervisor(app, server, process, ready=ready).run()
