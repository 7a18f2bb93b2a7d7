"""The pre-fork supervisor: the parent process of ``--workers N``.

It never creates a hub or a ring and runs no threads. Its whole life is one loop over a selector
holding each worker's IPC channel and process sentinel plus the signal wake-up pipe; signal
handlers only record the signal, and every timer (respawn backoff, startup timeout, shutdown
deadline) becomes the selector's timeout, so nothing ever sleeps.

Slots: worker ``i`` always runs in slot ``i``; a crashed worker is respawned in its slot after a
backoff of 0.1 s doubling up to 5 s, and a slot whose worker crashed 5 times within 60 s is
stopped. What an exit code makes the supervisor do is in ``_after_exit`` (and the table in
docs/processes.md).

Operations (docs/operations.md): each worker's hub writes a heartbeat into shared memory (a memfd
mapped here); a worker whose heartbeat stalls for --worker-timeout is made to log its tracebacks
(SIGUSR1, then SIGUSR2 for faulthandler) and is killed and respawned. Rolling replacements
(a worker's Recycle request, SIGHUP reload) run one at a time: the successor starts in the same
slot, and only once it is ready is the old worker told to Drain. SIGTTIN / SIGTTOU add / remove
a slot. Workers' Stats feed ``metrics.Metrics``, served on --metrics-port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
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
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..config import ProcessConfig, ServerConfig
from ..server.exitcodes import ExitCode, exit_code_for_os_error
from ..server.sockets import bind_socket, listener_url, remove_own_socket_file
from . import heartbeat, ipc
from .metrics import Metrics, MetricsServer
from .pidfile import check_pid_file, remove_pid_file, write_pid_file
from .proctitle import set_process_title
from .spec import WorkerSpec, run_worker
from .systemd import notify_systemd

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW",
    "Supervisor",
    "SupervisorError",
    "choose_start_method",
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
# Heartbeat cells (16 bytes each) in the shared memory: workers alive at once, successors included.
HEARTBEAT_CELLS = 1024
# A hung worker gets this long to log its tracebacks (SIGUSR1) before the faulthandler dump
# (SIGUSR2), and then FAULTHANDLER_WAIT before SIGKILL.
HANG_DUMP_WAIT = 3.0
FAULTHANDLER_WAIT = 0.5

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
    pid: int | None = None
    # Heartbeat cell of the current process in the shared memory (None: no hang detection).
    cell: int | None = None
    # Why the next process of this slot starts (metrics: worker spawns by reason).
    spawn_reason: str = "start"
    # Hang handling: when the heartbeat stalled, and when the next step (SIGUSR2, SIGKILL) is due.
    hung: bool = False
    hang_step_at: float | None = None
    hang_dumped: bool = False
    # A successor being started for a rolling replacement: the slot it replaces and why.
    replacing: _Slot | None = None
    # Draining after its successor became ready (or after SIGTTOU); killed at retire_deadline.
    retiring: bool = False
    retire_deadline: float | None = None

    def traceback_suffix(self) -> str:
        """The traceback the current process reported, on lines of its own after a log
        message; "" when it reported none."""
        trace = self.failure.traceback.rstrip() if self.failure else ""
        return "\n" + trace if trace else ""


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
        # Rolling replacements: the successor starting now, the queue (worker id, reason), and
        # the old workers draining.
        self.replacement: _Slot | None = None
        self.replace_queue: deque[tuple[int, str]] = deque()
        self.retiring: list[_Slot] = []
        self.reloading = False
        # Shared heartbeat memory (a memfd) and its free cells.
        self.heartbeat_fd: int | None = None
        self.heartbeat_memory: mmap.mmap | None = None
        self.free_cells: list[int] = []
        self.next_heartbeat_check: float | None = None
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None

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
        if self.process.pid_file is not None:
            try:
                check_pid_file(self.process.pid_file)
            except OSError as error:
                self._error("%s", error.strerror or error)
                return ExitCode.GENERIC
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
            self._open_heartbeat_memory()
            if self.process.metrics_port is not None:
                try:
                    self.metrics_server = MetricsServer(
                        self.selector,
                        self.process.metrics_address,
                        self.process.metrics_port,
                        self.metrics,
                        lambda: sum(1 for slot in self._all_slots() if slot.process is not None),
                    )
                except OSError as error:
                    self._error(
                        "cannot serve metrics on %s:%s: %s",
                        self.process.metrics_address,
                        self.process.metrics_port,
                        error,
                    )
                    return ExitCode.GENERIC
                logger.info("metrics: %s", self.metrics_server.url)
            for slot in self.slots:
                if not self.stopping:
                    self._start(slot)
            if self.process.worker_timeout > 0 and self.heartbeat_memory is not None:
                self.next_heartbeat_check = time.monotonic() + self._heartbeat_period()
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
            code = exit_code_for_os_error(error)
            self._log_cannot_start(code, error.strerror or str(error), error.errno)
            return code
        return None

    def _open_heartbeat_memory(self) -> None:
        """A memfd of HEARTBEAT_CELLS cells mapped shared here; workers map it through
        /proc/<this pid>/fd/<fd> (under every start method). Without it, no hang detection."""
        if self.process.worker_timeout <= 0:
            return
        descriptor = -1
        try:
            descriptor = os.memfd_create("theframework-heartbeats", os.MFD_CLOEXEC)
            size = heartbeat.cell_offset(HEARTBEAT_CELLS)
            os.ftruncate(descriptor, size)
            self.heartbeat_memory = mmap.mmap(descriptor, size)
        except (OSError, AttributeError) as error:
            if descriptor >= 0:
                os.close(descriptor)
            logger.warning("no shared heartbeat memory (hang detection off): %s", error)
            return
        self.heartbeat_fd = descriptor
        self.free_cells = list(range(HEARTBEAT_CELLS - 1, -1, -1))

    def _heartbeat_period(self) -> float:
        return max(0.05, min(1.0, self.process.worker_timeout / 4))

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
                if kind == "metrics":
                    slot.handle(key, _)
                    continue
                # An earlier event of this batch may have closed the object (a reaped worker).
                if kind == "channel" and slot.channel is key.fileobj:
                    self._read_channel(slot)
                elif kind == "sentinel" and slot.process and slot.process.sentinel == key.fileobj:
                    self._reap(slot)
            self._handle_timers()

    def _all_slots(self) -> list[_Slot]:
        """The slots, the successor being started and the old workers draining."""
        extra = [self.replacement] if self.replacement is not None else []
        return [*self.slots, *extra, *self.retiring]

    def _has_live_workers(self) -> bool:
        return any(slot.process is not None for slot in self._all_slots())

    def _next_timeout(self) -> float | None:
        deadlines: list[float] = []
        for slot in self._all_slots():
            if slot.respawn_at is not None:
                deadlines.append(slot.respawn_at)
            if slot.process is not None and not slot.ready and not slot.timed_out:
                deadlines.append(slot.started_at + self.process.startup_timeout)
            if slot.hang_step_at is not None:
                deadlines.append(slot.hang_step_at)
            if slot.retire_deadline is not None:
                deadlines.append(slot.retire_deadline)
        if self.kill_deadline is not None:
            deadlines.append(self.kill_deadline)
        if self.next_heartbeat_check is not None:
            deadlines.append(self.next_heartbeat_check)
        if self.metrics_server is not None:
            metrics_deadline = self.metrics_server.next_deadline()
            if metrics_deadline is not None:
                deadlines.append(metrics_deadline)
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
        slot.hung = False
        slot.hang_step_at = None
        slot.hang_dumped = False
        slot.pid = None
        heartbeat_cell = None
        if self.heartbeat_memory is not None and self.heartbeat_fd is not None:
            if slot.cell is None and self.free_cells:
                slot.cell = self.free_cells.pop()
            if slot.cell is not None:
                heartbeat.clear(self.heartbeat_memory, slot.cell)
                heartbeat_cell = (os.getpid(), self.heartbeat_fd, slot.cell)
        try:
            supervisor_end, worker_end = ipc.channel_pair()
        except OSError as error:
            self._failed_to_start(slot, error)
            return
        slot.channel = supervisor_end
        spec = WorkerSpec(
            worker_id=slot.worker_id,
            app=self.app,
            server=self.server,
            process=self.process,
            channel=worker_end,
            listener=self.listener,
            heartbeat=heartbeat_cell,
        )
        process = self.context.Process(
            target=run_worker,
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
        slot.pid = process.pid
        slot.started_at = time.monotonic()
        self.metrics.spawned(slot.spawn_reason)
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
            elif isinstance(message, ipc.Failure):
                slot.failure = message
            elif isinstance(message, ipc.Stats):
                self.metrics.update(
                    slot.worker_id, message.pid, message.stats, message.rss_bytes, message.loop_lag
                )
            elif isinstance(message, ipc.Recycle):
                self._on_recycle(slot, message)
            elif isinstance(message, ipc.Dumped) and slot.hung:
                slot.hang_dumped = True
                slot.hang_step_at = time.monotonic()

    def _on_ready(self, slot: _Slot, message: ipc.Ready) -> None:
        slot.ready = True
        logger.info("worker %d ready (pid %d)", slot.worker_id, message.pid)
        if message.address.startswith("http"):
            self.address = message.address
        if slot is self.replacement:
            self._replacement_ready(slot)
            return
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
                write_pid_file(self.process.pid_file)
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
        self.metrics.exited(slot.pid)
        description = _describe_exit(code, slot)
        if slot.retiring:
            self._release_cell(slot)
            if slot in self.retiring:
                self.retiring.remove(slot)
            if code == 0:
                logger.info("worker %d (pid %s) retired", slot.worker_id, slot.pid)
            else:
                logger.warning(
                    "worker %d (pid %s) ended while draining: %s", slot.worker_id, slot.pid,
                    description,
                )  # fmt: skip
            self._check_reload_complete()
            return
        if slot is self.replacement:
            self._release_cell(slot)
            self.replacement = None
            if not self.stopping:
                self._replacement_failed(slot, code, description)
            return
        if self.stopping:
            if code != 0:
                logger.warning("worker %d ended during shutdown: %s", slot.worker_id, description)
            else:
                logger.debug("worker %d stopped", slot.worker_id)
            return
        if code in (ExitCode.USAGE, ExitCode.APP_FAILED):
            self._error(
                "worker %d: %s; stopping the server%s",
                slot.worker_id,
                description,
                slot.traceback_suffix(),
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
        slot.spawn_reason = "hang" if slot.hung else "crash"
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
        if self.metrics_server is not None:
            self.metrics_server.expire(now)
        if self.next_heartbeat_check is not None and now >= self.next_heartbeat_check:
            self.next_heartbeat_check = now + self._heartbeat_period()
            self._check_heartbeats()
        for slot in self._all_slots():
            if slot.hang_step_at is not None and now >= slot.hang_step_at:
                self._hang_step(slot)
            if slot.retire_deadline is not None and now >= slot.retire_deadline:
                slot.retire_deadline = None
                if slot.process is not None:
                    logger.warning(
                        "worker %d (pid %s) did not finish draining in time; killing it",
                        slot.worker_id,
                        slot.pid,
                    )
                    _signal_process(slot.process, signal.SIGKILL)
        for slot in self._all_slots():
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

    # -- hang detection ----------------------------------------------------------------------

    def _check_heartbeats(self) -> None:
        """Reads every ready worker's heartbeat; a stalled one is dumped, then killed."""
        memory = self.heartbeat_memory
        if memory is None:
            return
        now_ns = time.monotonic_ns()
        timeout = self.process.worker_timeout
        for slot in self._all_slots():
            if slot.process is None or not slot.ready or slot.cell is None or slot.hung:
                continue
            _iterations, beat_ns = heartbeat.read(memory, slot.cell)
            if beat_ns == 0:
                continue
            age = max(0.0, (now_ns - beat_ns) / 1e9)
            if slot.pid is not None:
                self.metrics.heartbeat_age[slot.pid] = age
            if age < timeout:
                continue
            slot.hung = True
            logger.error(
                "worker %d (pid %s) is hung: its hub loop has not run for %.1f s "
                "(--worker-timeout %g); logging its tracebacks, then killing it",
                slot.worker_id,
                slot.pid,
                age,
                timeout,
            )
            _signal_process(slot.process, signal.SIGUSR1)
            slot.hang_step_at = time.monotonic() + HANG_DUMP_WAIT

    def _hang_step(self, slot: _Slot) -> None:
        """After the traceback dump (or its timeout): SIGUSR2 (faulthandler) when the Python
        dump did not come, then SIGKILL."""
        slot.hang_step_at = None
        if slot.process is None:
            return
        if not slot.hang_dumped:
            logger.warning(
                "worker %d (pid %s) did not log its tracebacks; asking faulthandler",
                slot.worker_id,
                slot.pid,
            )
            slot.hang_dumped = True
            _signal_process(slot.process, signal.SIGUSR2)
            slot.hang_step_at = time.monotonic() + FAULTHANDLER_WAIT
            return
        logger.warning("worker %d (pid %s) hung: killing it", slot.worker_id, slot.pid)
        _signal_process(slot.process, signal.SIGKILL)

    # -- rolling replacement, reload, scaling ------------------------------------------------

    def _release_cell(self, slot: _Slot) -> None:
        if slot.cell is not None:
            self.free_cells.append(slot.cell)
            slot.cell = None

    def _on_recycle(self, slot: _Slot, message: ipc.Recycle) -> None:
        if slot not in self.slots or self.stopping or slot.retiring:
            return
        if any(worker_id == slot.worker_id for worker_id, _ in self.replace_queue):
            return
        if self.replacement is not None and self.replacement.replacing is slot:
            return
        logger.info(
            "worker %d (pid %s) asks to be recycled (%s: %s)",
            slot.worker_id,
            slot.pid,
            message.reason,
            message.detail,
        )
        self.replace_queue.append((slot.worker_id, "recycle"))
        self._advance_replacements()

    def _advance_replacements(self) -> None:
        """Starts the next queued replacement, unless one is starting (one at a time)."""
        if self.stopping or self.replacement is not None:
            return
        while self.replace_queue:
            worker_id, reason = self.replace_queue.popleft()
            old = next((slot for slot in self.slots if slot.worker_id == worker_id), None)
            if old is None or old.process is None or not old.ready or old.hung:
                continue
            successor = _Slot(worker_id, spawn_reason=reason, replacing=old)
            self.replacement = successor
            logger.info(
                "replacing worker %d (pid %s) for %s: starting its successor",
                worker_id,
                old.pid,
                reason,
            )
            self._start(successor)
            return
        self._check_reload_complete()

    def _check_reload_complete(self) -> None:
        """A reload is complete once every worker was replaced and every old one has exited
        (a draining worker still answers its open connections' next request)."""
        idle = self.replacement is None and not self.replace_queue and not self.retiring
        if self.reloading and idle:
            self.reloading = False
            logger.info("reload complete: %d workers", len(self.slots))

    def _replacement_ready(self, successor: _Slot) -> None:
        """The successor is ready: it takes the slot, and the old worker drains."""
        self.replacement = None
        old = successor.replacing
        successor.replacing = None
        if old is not None and old in self.slots:
            successor.crashes = old.crashes
            self.slots[self.slots.index(old)] = successor
            logger.info(
                "worker %d: pid %s replaces pid %s (%s); draining the old one",
                successor.worker_id,
                successor.pid,
                old.pid,
                successor.spawn_reason,
            )
            if old.process is not None:
                self._retire(old)
            else:
                self._release_cell(old)
        else:
            # The slot went away meanwhile (SIGTTOU): the successor is not needed.
            self._retire(successor)
        self._advance_replacements()

    def _replacement_failed(self, successor: _Slot, code: int, description: str) -> None:
        old = successor.replacing
        successor.replacing = None
        if successor.spawn_reason == "reload":
            logger.error(
                "reload failed: the new worker %d did not start (%s); keeping the old workers%s",
                successor.worker_id,
                description,
                successor.traceback_suffix(),
            )
            self._unqueue_reloads()
            self.reloading = False
        else:
            logger.warning(
                "the successor of worker %d (pid %s) did not start (%s); keeping the old one",
                successor.worker_id,
                old.pid if old is not None else None,
                description,
            )
        self._advance_replacements()

    def _retire(self, slot: _Slot) -> None:
        """Tells ``slot``'s worker to drain (Drain message; SIGTERM when that fails) and kills it
        if it is still there after the graceful timeout plus SHUTDOWN_HOOKS_GRACE."""
        slot.retiring = True
        self.retiring.append(slot)
        slot.respawn_at = None
        slot.retire_deadline = (
            time.monotonic()
            + self.server.graceful_timeout
            + self.server.keepalive_timeout
            + SHUTDOWN_HOOKS_GRACE
        )
        sent = False
        if slot.channel is not None and slot.ready:
            try:
                ipc.send(slot.channel, ipc.Drain(self.server.graceful_timeout))
                sent = True
            except OSError:
                pass
        if not sent and slot.process is not None:
            _signal_process(slot.process, signal.SIGTERM)

    def _reload(self) -> None:
        """SIGHUP: replaces every worker, one at a time (new workers import the application
        and read the env files again); a new worker that cannot start stops the reload."""
        for path in self.process.env_files:
            if not os.access(path, os.R_OK):
                logger.error("reload refused: cannot read the environment file %r", path)
                return
        if not isinstance(self.app, str):
            logger.warning(
                "reload: the application is an object, which new workers reuse as it is; "
                "give it as 'module:attribute' to have it imported again"
            )
        running = [slot for slot in self.slots if slot.stopped_with is None]
        logger.info("SIGHUP received: reloading, replacing %d workers one at a time", len(running))
        self.reloading = True
        self._unqueue_reloads()
        self.replace_queue.extend((slot.worker_id, "reload") for slot in running)
        self._advance_replacements()

    def _unqueue_reloads(self) -> None:
        """Drops the replacements a reload queued (a new reload or a failed one replaces them)."""
        self.replace_queue = deque(item for item in self.replace_queue if item[1] != "reload")

    def _add_worker(self) -> None:
        """SIGTTIN: one more slot."""
        worker_id = max((slot.worker_id for slot in self.slots), default=0) + 1
        slot = _Slot(worker_id, spawn_reason="scale")
        self.slots.append(slot)
        logger.info("SIGTTIN received: adding worker %d (%d workers)", worker_id, len(self.slots))
        self._start(slot)

    def _remove_worker(self) -> None:
        """SIGTTOU: one slot fewer (never below one): its worker drains and is not replaced."""
        if len(self.slots) <= 1:
            logger.info("SIGTTOU received: already at one worker; ignored")
            return
        slot = self.slots.pop()
        self.replace_queue = deque(item for item in self.replace_queue if item[0] != slot.worker_id)
        logger.info(
            "SIGTTOU received: removing worker %d (%d workers)", slot.worker_id, len(self.slots)
        )
        if slot.process is not None:
            self._retire(slot)
        else:
            slot.respawn_at = None
            self._release_cell(slot)

    # -- signals and shutdown ----------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (read_end, write_end)
        previous: dict[int, Any] = {-1: signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)}
        for signum in _HANDLED_SIGNALS:
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
            if signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                if self.stopping:
                    logger.info("%s ignored: stopping", name)
                elif signum == signal.SIGHUP:
                    self._reload()
                elif signum == signal.SIGTTIN:
                    self._add_worker()
                else:
                    self._remove_worker()
                continue
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
        self.replace_queue.clear()
        for slot in self._all_slots():
            slot.respawn_at = None
            if slot.process is not None:
                _signal_process(slot.process, signal.SIGTERM)
        self.kill_deadline = time.monotonic() + self.server.graceful_timeout + SHUTDOWN_HOOKS_GRACE
        with contextlib.suppress(OSError):
            notify_systemd("STOPPING=1")

    def _kill_all(self, why: str) -> None:
        for slot in self._all_slots():
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
        for slot in self._all_slots():
            if slot.channel is not None:
                slot.channel.close()
        if self.metrics_server is not None:
            self.metrics_server.close_in_child()
        if self.heartbeat_memory is not None:
            self.heartbeat_memory.close()
        if self.heartbeat_fd is not None:
            os.close(self.heartbeat_fd)

    def _cleanup(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self.selector is not None:
            self.selector.close()
        if self.wakeup is not None:
            for descriptor in self.wakeup:
                os.close(descriptor)
            self.wakeup = None
        for slot in self._all_slots():
            if slot.channel is not None:
                slot.channel.close()
        if self.heartbeat_memory is not None:
            self.heartbeat_memory.close()
            self.heartbeat_memory = None
        if self.heartbeat_fd is not None:
            os.close(self.heartbeat_fd)
            self.heartbeat_fd = None
        if self.port_reservation is not None:
            self.port_reservation.close()
        if self.listener is not None:
            self.listener.close()
            assert self.server.uds is not None
            remove_own_socket_file(self.server.uds, self.listener_inode)
        if self.pid_file_written and self.process.pid_file is not None:
            remove_pid_file(self.process.pid_file)
        logger.info("stopped (exit code %d)", self.exit_code)


_HANDLED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)

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


def run_supervisor(
    app: object,
    server: ServerConfig,
    process: ProcessConfig,
    *,
    ready: Callable[[], None] | None = None,
) -> int:
    """Runs a Supervisor to its end; returns its exit code."""
    return Supervisor(app, server, process, ready=ready).run()
