"""The pre-fork supervisor: the parent process of ``--workers N``.

It never creates a hub or a ring and runs no threads. Its whole life is one loop over a selector
holding each worker's IPC channel and process sentinel plus the signal wake-up pipe; signal
handlers only record the signal, and every timer (respawn backoff, startup timeout, shutdown
deadline) becomes the selector's timeout, so nothing ever sleeps.

Slots: worker ``i`` always runs in slot ``i``; a crashed worker is respawned in its slot after a
backoff of 0.1 s doubling up to 5 s, and a slot whose worker crashed 5 times within 60 s is
stopped. The policy (slot states and their deadlines, what an exit code means, the hang
escalation, the order of replacements) is pure and lives in ``slots``; this loop carries out its
decisions (signals, logs, starts, metrics). docs/processes.md has the exit-code table.

Operations (docs/operations.md): each worker's hub writes a heartbeat into shared memory (a memfd
mapped here); a worker whose heartbeat stalls for --worker-timeout is made to log its tracebacks
(SIGUSR1, then SIGUSR2 for faulthandler) and is killed and respawned. Rolling replacements
(a worker's Recycle request, SIGHUP reload) run one at a time: the successor starts in the same
slot, and only once it is ready is the old worker told to Drain. SIGTTIN / SIGTTOU add / remove
a slot. SIGUSR1 / SIGUSR2 log the supervisor's state and are forwarded to every worker (which
logs its greenlets' tracebacks / a faulthandler dump). Workers' Stats feed ``metrics.Metrics``,
served on --metrics-port.

systemd (``systemd``): READY=1 once every worker is ready, RELOADING=1 / READY=1 around a reload,
STATUS= with the worker count, STOPPING=1; WATCHDOG=1 from this loop only while every worker's
heartbeat is younger than $WATCHDOG_USEC (plus the heartbeat's own period). Inherited sockets
(``--fd``, socket activation) are shared by all workers, as the UNIX socket is.
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
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ..config import ProcessConfig, ServerConfig
from ..configfile import (
    NO_HOOKS,
    ConfigFileError,
    HookConfig,
    HookFailed,
    hooks_for,
    reload_config_file,
)
from ..server.envfile import env_files_problem
from ..server.exitcodes import ExitCode, exit_code_for_os_error
from ..server.sockets import (
    InheritedSocketError,
    adopt_socket,
    attach_steering,
    bind_socket,
    check_tcp_address_free,
    listener_url,
    remove_own_socket_file,
)
from . import heartbeat, ipc, slots, steering
from .cpus import available_cpus
from .metrics import Metrics, MetricsServer
from .pidfile import check_pid_file, remove_pid_file, write_pid_file
from .preflight import start_method_problem
from .proctitle import set_process_title, short_title
from .slots import (
    CRASH_LIMIT,
    CRASH_WINDOW,
    FAULTHANDLER_WAIT,
    FIRST_BACKOFF,
    HANG_DUMP_WAIT,
    LEAVE_SETTLE,
    MAX_BACKOFF,
    SHUTDOWN_HOOKS_GRACE,
    ExitAction,
    ExitKind,
    Level,
    LogLine,
    SlotState,
    SlotView,
    Step,
)
from .spec import WorkerSpec, run_worker
from .systemd import reloading_message, stale_heartbeat, tell_systemd, watchdog_interval

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW",
    "FAULTHANDLER_WAIT",
    "FIRST_BACKOFF",
    "HANG_DUMP_WAIT",
    "MAX_BACKOFF",
    "SHUTDOWN_HOOKS_GRACE",
    "Supervisor",
    "SupervisorError",
    "choose_start_method",
    "run_supervisor",
]

logger = logging.getLogger("theframework.supervisor")

# The exit code multiprocessing gives a forkserver worker whose status the fork server could not
# report (it ended first, e.g. with the worker under a process-group SIGTERM).
_FORKSERVER_UNKNOWN_STATUS = 255

# Heartbeat cells (heartbeat.CELL_SIZE bytes each) in the shared memory: workers alive at once,
# successors included.
HEARTBEAT_CELLS = 1024

# What to tell the operator when no worker can ever start, by exit code.
_ADVICE = {
    ExitCode.ADDRESS_IN_USE: "another process listens on this address: stop it or choose another "
    "--port / --uds",
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
    """One worker position; its process is replaced when it crashes. Its ``state`` and
    ``deadline`` follow the policy in ``slots`` (SlotState says what happens at the deadline)."""

    worker_id: int
    process: multiprocessing.process.BaseProcess | None = None
    channel: socket.socket | None = None
    state: SlotState = SlotState.IDLE
    deadline: float | None = None
    # Crash times within CRASH_WINDOW, oldest first.
    crashes: tuple[float, ...] = ()
    # The last Failure message of the current process, if it sent one.
    failure: ipc.Failure | None = None
    # The exit code the current process announced (ipc.Exiting) before exiting, if it did.
    announced_exit: int | None = None
    # Under forkserver, a pidfd on a worker that outlived the fork server (watched instead of
    # the sentinel, which fired when the fork server ended).
    pidfd: int | None = None
    pid: int | None = None
    # Heartbeat cell of the current process in the shared memory (None: no hang detection).
    cell: int | None = None
    # Why the next process of this slot starts (metrics: worker spawns by reason).
    spawn_reason: str = "start"
    # A successor being started for a rolling replacement: the slot it replaces.
    replacing: _Slot | None = None
    # TCP: the slot's own SO_REUSEPORT listening socket (bound here, handed to each worker of
    # the slot, a successor included; None for UNIX and inherited sockets).
    listener: socket.socket | None = None

    @property
    def ready(self) -> bool:
        return self.state in slots.READY_STATES

    def view(self) -> SlotView:
        """What the policy sees of this slot."""
        failure = self.failure
        return SlotView(
            worker_id=self.worker_id,
            pid=self.pid,
            state=self.state,
            crashes=self.crashes,
            failure=failure.description if failure is not None else None,
            traceback=failure.traceback if failure is not None else "",
            spawn_reason=self.spawn_reason,
            replaced_pid=self.replacing.pid if self.replacing is not None else None,
        )

    def enter(self, step: Step) -> None:
        """Takes the step's state and deadline (the loop does the rest of it)."""
        self.state = step.state
        self.deadline = step.deadline


class Supervisor:
    """Runs ``process.workers`` workers (0: ``available_cpus()``) serving ``app`` with ``server``
    until SIGTERM or SIGINT, or until no worker can run. ``ready()`` is called (in this process)
    once every worker is ready for the first time."""

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
        count = process.workers or available_cpus()
        self.slots = [_Slot(worker_id) for worker_id in range(1, count + 1)]
        self.selector: selectors.BaseSelector | None = None
        self.wakeup: tuple[int, int] | None = None
        self.received_signals: list[int] = []
        # The sockets all workers accept on: the UNIX socket this process bound (its inode in
        # listener_inode), or the inherited ones (--fd, socket activation). Empty for TCP.
        self.listeners: list[socket.socket] = []
        self.listener_inode: int | None = None
        # TCP: each slot has its own listening socket (_Slot.listener); ``group`` holds them in
        # the order of the kernel's SO_REUSEPORT group array, and ``steering`` is the program
        # in effect on it (see the steering module).
        self.slot_listeners = False
        self.group: tuple[socket.socket, ...] = ()
        self.steering: tuple[steering.Instruction, ...] = steering.HASH_FALLBACK
        # The listener of the worker being started (fork: the child closes the others).
        self.starting_listener: socket.socket | None = None
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
        self.replace_queue: slots.ReplaceQueue = ()
        self.retiring: list[_Slot] = []
        self.reloading = False
        # Shared heartbeat memory (a memfd) and its free cells.
        self.heartbeat_fd: int | None = None
        self.heartbeat_memory: mmap.mmap | None = None
        self.free_cells: list[int] = []
        self.next_heartbeat_check: float | None = None
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        # systemd's watchdog: seconds between pings (None: not asked for) and the next one.
        self.watchdog_interval = watchdog_interval()
        self.next_watchdog: float | None = None
        # The config file's hooks; on_exit runs once on_starting did.
        self.hooks = NO_HOOKS
        self.hooks_started = False

    # -- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Supervises until the end; returns the exit code (logging why when it is not 0)."""
        code = self._prepare()
        if code is not None:
            self._exit_hook()
            return code
        previous_handlers: dict[int, Any] = {}
        try:
            code = self._open_loop_descriptors(previous_handlers)
            if code is None:
                code = self._open_metrics()
            if code is not None:
                self.exit_code = code
                return code
            for slot in self.slots:
                if not self.stopping:
                    self._start(slot)
            if self.process.worker_timeout > 0 and self.heartbeat_memory is not None:
                self.next_heartbeat_check = time.monotonic() + self._heartbeat_period()
            self._loop()
        finally:
            self._restore_signal_handlers(previous_handlers)
            self._cleanup()
            self._exit_hook()
        return self.exit_code

    def _open_loop_descriptors(self, previous_handlers: dict[int, Any]) -> int | None:
        """The signal handlers with their wake-up pipe (the handlers they replace are added to
        ``previous_handlers``), the loop's selector watching it, and the heartbeat memory; exit
        44 with one line when this process is out of file descriptors before any worker
        starts."""
        try:
            previous_handlers.update(self._install_signal_handlers())
            self.selector = selectors.DefaultSelector()
            assert self.wakeup is not None
            self.selector.register(self.wakeup[0], selectors.EVENT_READ, None)
            multiprocessing.util.register_after_fork(self, Supervisor._close_in_worker)
            self._open_heartbeat_memory()
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self._error(
                "out of file descriptors before starting any worker: %s (raise the open files "
                "limit: ulimit -n, or LimitNOFILE= in a systemd unit)",
                error.strerror or error,
            )
            return ExitCode.TOO_MANY_FILES
        return None

    def _exit_hook(self) -> None:
        """on_exit, once on_starting ran."""
        if self.hooks_started:
            self.hooks.call("on_exit", self._hook_config())

    def _hook_config(self) -> HookConfig:
        return HookConfig(self.server, self.process)

    def _start_hooks(self) -> int | None:
        """Loads the config file's hooks and runs on_starting; an exit code when either
        fails (2: the file; 3: the hook raised)."""
        try:
            self.hooks = hooks_for(self.process)
        except ConfigFileError as error:
            self._error("%s%s", error.message, f"\n{error.traceback}" if error.traceback else "")
            return ExitCode.USAGE
        try:
            self.hooks.call_or_raise("on_starting", self._hook_config())
        except HookFailed as failure:
            self._error("%s; not starting\n%s", failure, failure.traceback.rstrip())
            return ExitCode.APP_FAILED
        self.hooks_started = True
        return None

    def _prepare(self) -> int | None:
        """What comes before the loop: the start method, the env files, the pid file, the
        listener. An exit code when one of them fails."""
        try:
            self.start_method, reason = choose_start_method(self.process.start_method, self.app)
        except SupervisorError as error:
            self._error("%s", error)
            return error.exit_code
        problem = env_files_problem(self.process.env_files)
        if problem is not None:
            self._error("%s", problem)
            return ExitCode.USAGE
        code = self._start_hooks()
        if code is not None:
            return code
        self.context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # Preloading __main__ would import the command line's (or the embedding script's)
            # main module in the fork server.
            self.context.set_forkserver_preload([])
        problem = start_method_problem(self.start_method, self.context)
        if problem is not None:
            self._error("%s", problem)
            return ExitCode.USAGE
        if self.process.pid_file is not None:
            try:
                check_pid_file(self.process.pid_file)
            except OSError as error:
                self._error("%s", error.strerror or error)
                return ExitCode.GENERIC
        set_process_title(
            f"{self.process.proc_name} master", short_title(self.process.proc_name, "master")
        )
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
        return None

    def _open_metrics(self) -> int | None:
        """Serves the metrics when --metrics-port is given; an exit code when that fails."""
        if self.process.metrics_port is None:
            return None
        assert self.selector is not None
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
        return None

    def _open_listener(self) -> int | None:
        """Adopts the inherited sockets or binds the UNIX socket (shared by all workers), or
        for TCP checks that no other process listens on the address (once, here: successors,
        reloads and scaling reuse or add this server's own sockets) and binds one SO_REUSEPORT
        socket per slot (port 0: the kernel's choice for the first, the same for the others).
        An exit code when that fails."""
        try:
            if self.server.fds:
                for descriptor in self.server.fds:
                    self.listeners.append(adopt_socket(descriptor))
                self.address = ", ".join(listener_url(listener) for listener in self.listeners)
            elif self.server.uds is not None:
                self.listeners.append(bind_socket(self.server))
                self.listener_inode = os.stat(self.server.uds).st_ino
                self.address = listener_url(self.listeners[0])
            else:
                check_tcp_address_free(self.server)
                self.slot_listeners = True
                for slot in self.slots:
                    self._bind_slot(slot)
        except InheritedSocketError as error:
            self._error("cannot serve an inherited socket: %s", error)
            return ExitCode.USAGE
        except OSError as error:
            for listener in self.group:
                listener.close()
            self.group = ()
            code = exit_code_for_os_error(error)
            self._log_cannot_start(code, error.strerror or str(error), error.errno)
            return code
        return None

    def _bind_slot(self, slot: _Slot) -> None:
        """Binds and listens ``slot``'s own SO_REUSEPORT socket; it joins the end of the group.
        With port 0 the first one takes the kernel's choice, which the others then bind."""
        listener = bind_socket(self.server, reuse_port=True)
        if self.server.port == 0:
            self.server = _replace_port(self.server, listener.getsockname()[1])
            self.address = self.server.bind_description
        slot.listener = listener
        self.group = (*self.group, listener)

    def _leave_group(self, listener: socket.socket | None) -> None:
        """Takes ``listener`` out of the SO_REUSEPORT group (shutdown: at once, whoever else
        holds it; what is still queued on it is reset) and closes it here; the last socket of
        the group takes its place in the kernel's array, and the steering follows."""
        if listener is None or listener not in self.group:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RD)
        self.group = steering.group_after_leave(self.group, listener)
        listener.close()
        self._update_steering()

    def _listener_in_use(self, listener: socket.socket | None) -> bool:
        """Whether a slot (or the successor being started) still serves from ``listener``."""
        candidates = [*self.slots, *([self.replacement] if self.replacement else [])]
        return listener is not None and any(
            slot.listener is listener and slot.state is not SlotState.STOPPED for slot in candidates
        )

    def _update_steering(self) -> None:
        """Steers new connections away from the group's sockets that no ready worker accepts
        on (a worker starting, respawning, hung, or a socket about to leave the group); the
        kernel's hash again once every socket is served (steering.steering_program)."""
        if not self.slot_listeners or self.stopping or not self.group:
            return
        served = {
            slot.listener
            for slot in self.slots
            if slot.state is SlotState.READY and slot.listener is not None
        }
        avoid = steering.avoided_indexes(self.group, served)
        program = steering.steering_program(len(self.group), avoid)
        if program == self.steering:
            return
        self.steering = program
        try:
            attach_steering(self.group[0], steering.encode(program))
        except OSError as error:
            logger.warning("cannot steer new connections away from a socket: %s", error)
            return
        logger.debug(
            "steering: %d sockets, avoiding %s",
            len(self.group),
            ", ".join(map(str, avoid)) if program != steering.HASH_FALLBACK else "none",
        )

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
                    if not self._watch_orphaned_worker(slot):
                        self._reap(slot)
                elif kind == "pidfd" and slot.pidfd == key.fileobj:
                    self._reap(slot)
            self._handle_timers()
            self._update_steering()

    def _all_slots(self) -> list[_Slot]:
        """The slots, the successor being started and the old workers draining."""
        extra = [self.replacement] if self.replacement is not None else []
        return [*self.slots, *extra, *self.retiring]

    def _running_slots(self) -> list[_Slot]:
        """The slots that are not stopped."""
        return [slot for slot in self.slots if slot.state is not SlotState.STOPPED]

    def _has_live_workers(self) -> bool:
        return any(slot.process is not None for slot in self._all_slots())

    def _next_timeout(self) -> float | None:
        deadlines: list[float] = [
            slot.deadline for slot in self._all_slots() if slot.deadline is not None
        ]
        if self.kill_deadline is not None:
            deadlines.append(self.kill_deadline)
        if self.next_heartbeat_check is not None:
            deadlines.append(self.next_heartbeat_check)
        if self.next_watchdog is not None:
            deadlines.append(self.next_watchdog)
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
        slot.enter(Step(SlotState.IDLE))
        slot.failure = None
        slot.announced_exit = None
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
        listeners = tuple(self.listeners)
        if slot.listener is not None:
            listeners = (slot.listener,)
        spec = WorkerSpec(
            worker_id=slot.worker_id,
            app=self.app,
            server=self.server,
            process=self.process,
            channel=worker_end,
            listeners=listeners,
            heartbeat=heartbeat_cell,
            slot_listener=slot.listener is not None,
        )
        process = self.context.Process(
            target=run_worker,
            args=(spec,),
            name=f"{self.process.proc_name} worker-{slot.worker_id}",
        )
        self.starting_listener = slot.listener
        try:
            process.start()
        except Exception as error:
            supervisor_end.close()
            slot.channel = None
            self._failed_to_start(slot, error)
            return
        finally:
            worker_end.close()
            self.starting_listener = None
        slot.process = process
        slot.pid = process.pid
        slot.enter(slots.started(time.monotonic(), self.process.startup_timeout))
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
            elif isinstance(message, ipc.Dumped):
                slot.enter(slots.on_dumped(slot.state, slot.deadline, time.monotonic()))
            elif isinstance(message, ipc.Exiting):
                slot.announced_exit = message.exit_code
            elif isinstance(message, ipc.Released):
                self._on_released(slot)

    def _on_ready(self, slot: _Slot, message: ipc.Ready) -> None:
        slot.enter(slots.became_ready(slot.state, slot.deadline))
        logger.info("worker %d ready (pid %d)", slot.worker_id, message.pid)
        self.hooks.call("worker_ready", slot.worker_id)
        if message.address.startswith("http"):
            self.address = message.address
        if slot is self.replacement:
            self._replacement_ready(slot)
            return
        if self.announced:
            tell_systemd(self._status())
        self._announce_when_ready()

    def _announce_when_ready(self) -> None:
        """Announces once every running slot's worker is ready (the first time)."""
        if self.announced or self.stopping:
            return
        running = self._running_slots()
        if running and all(slot.ready for slot in running):
            self._announce()

    def _announce(self) -> None:
        """Every worker is ready for the first time: log, pid file, systemd, ready hook."""
        self.announced = True
        running = len(self._running_slots())
        logger.info("ready: %s (%d workers, pid %d)", self.address, running, os.getpid())
        if self.process.pid_file is not None:
            try:
                write_pid_file(self.process.pid_file)
                self.pid_file_written = True
            except OSError as error:
                logger.error("cannot write the pid file: %s", error)
        tell_systemd(f"READY=1\nMAINPID={os.getpid()}\n{self._status()}")
        if self.watchdog_interval is not None:
            self.next_watchdog = time.monotonic()
        self.hooks.call("when_ready", self._hook_config())
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
        if slot.pidfd is not None:
            self.selector.unregister(slot.pidfd)
            os.close(slot.pidfd)
            slot.pidfd = None
        else:
            self.selector.unregister(process.sentinel)
        process.join()
        code = process.exitcode if process.exitcode is not None else ExitCode.GENERIC
        if code == _FORKSERVER_UNKNOWN_STATUS and self.start_method == "forkserver":
            code = self._forkserver_exit(slot, code)
        process.close()
        slot.process = None
        self.hooks.call("worker_exit", slot.worker_id, code)
        self._after_exit(slot, code)

    def _watch_orphaned_worker(self, slot: _Slot) -> bool:
        """Under forkserver the sentinel belongs to the fork server, the worker's parent: when it
        ended first (a signal to the whole process group) the worker may still be draining.
        Then watch the worker itself through a pidfd and reap it when it exits; True if so."""
        assert self.selector is not None and slot.process is not None
        if self.start_method != "forkserver" or slot.pid is None or slot.pidfd is not None:
            return False
        if slot.process.exitcode != _FORKSERVER_UNKNOWN_STATUS:
            return False
        try:
            pidfd = os.pidfd_open(slot.pid)
        except (OSError, AttributeError):
            return False  # already gone (or no pidfd on this kernel): reap now
        self.selector.unregister(slot.process.sentinel)
        slot.pidfd = pidfd
        self.selector.register(pidfd, selectors.EVENT_READ, ("pidfd", slot))
        return True

    def _forkserver_exit(self, slot: _Slot, code: int) -> int:
        """A forkserver worker's exit code when multiprocessing reported 255, its "the fork
        server ended before telling" placeholder: what the worker announced, else 255 with the
        log saying plainly that the real status is unknown."""
        if slot.announced_exit is not None:
            return slot.announced_exit
        if slot.failure is None:
            slot.failure = ipc.Failure(
                slot.worker_id,
                slot.pid or 0,
                code,
                "real exit status unknown (the fork server ended before reporting it)",
            )
        return code

    def _after_exit(self, slot: _Slot, code: int) -> None:
        """Carries out what the policy (slots.decide_exit) makes of a worker's exit."""
        self.metrics.exited(slot.pid)
        now = time.monotonic()
        action = slots.decide_exit(
            slot.view(),
            code,
            now,
            stopping=self.stopping,
            is_replacement=slot is self.replacement,
            is_retiring=slot in self.retiring,
            running_slots=len(self._running_slots()),
        )
        slot.crashes = action.crashes
        for line in action.logs:
            self._log(line)
        if self.announced and not self.stopping:
            tell_systemd(self._status())
        kind = action.kind
        if kind is ExitKind.RETIRED:
            self._forget_retired(slot)
        elif kind in (
            ExitKind.SUCCESSOR_ENDED,
            ExitKind.REPLACEMENT_FAILED,
            ExitKind.RELOAD_FAILED,
        ):
            self._forget_successor(slot, kind)
        elif kind is ExitKind.RESPAWN:
            assert action.delay is not None and action.spawn_reason is not None
            slot.spawn_reason = action.spawn_reason
            slot.enter(Step(SlotState.WAITING, now + action.delay))
        elif kind in (ExitKind.STOP_SLOT, ExitKind.STOP_SERVER):
            self._stop_slot(slot, action)
        else:
            slot.enter(Step(SlotState.IDLE))

    def _forget_retired(self, slot: _Slot) -> None:
        """An old worker ended (drained, or not): its slot is gone, and so is its socket unless
        a successor serves from it (a leaving worker that ended without Released)."""
        slot.enter(Step(SlotState.IDLE))
        self._release_cell(slot)
        if slot in self.retiring:
            self.retiring.remove(slot)
        if not self._listener_in_use(slot.listener):
            self._leave_group(slot.listener)
        self._check_reload_complete()

    def _on_released(self, slot: _Slot) -> None:
        """A leaving worker took what was queued on its socket: the socket leaves the group."""
        if slot in self.retiring and not self._listener_in_use(slot.listener):
            logger.debug("worker %d (pid %s) released its socket", slot.worker_id, slot.pid)
            self._leave_group(slot.listener)

    def _forget_successor(self, successor: _Slot, kind: ExitKind) -> None:
        """A successor ended before it was ready: the old worker stays; a failed reload stops
        (its queued replacements are dropped); the next replacement starts."""
        successor.enter(Step(SlotState.IDLE))
        successor.replacing = None
        self._release_cell(successor)
        self.replacement = None
        if kind is ExitKind.SUCCESSOR_ENDED:
            return
        if kind is ExitKind.RELOAD_FAILED:
            self._unqueue_reloads()
            self.reloading = False
            tell_systemd(f"READY=1\n{self._status()} (the reload failed)")
        self._advance_replacements()

    def _stop_slot(self, slot: _Slot, action: ExitAction) -> None:
        """The slot never runs a worker again; STOP_SERVER also stops the server (with the
        cannot-start line when no worker can bind)."""
        slot.enter(Step(SlotState.STOPPED))
        if not self.stopping:
            # Nobody will accept from its socket again: out of the group (steered away first).
            self._update_steering()
            self._leave_group(slot.listener)
        if action.kind is ExitKind.STOP_SERVER:
            assert action.exit_code is not None
            problem = action.cannot_start
            if problem is not None:
                self._log_cannot_start(action.exit_code, problem.detail, problem.errno_name)
            self._begin_shutdown(action.exit_code)
            return
        self._announce_when_ready()

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

    def _log(self, line: LogLine) -> None:
        """Logs a line the policy made (FATAL: the error that stops the server)."""
        if line.level is Level.FATAL:
            self._error(line.message, *line.args)
        else:
            logger.log(_LOG_LEVELS[line.level], line.message, *line.args)

    def _handle_timers(self) -> None:
        now = time.monotonic()
        if self.kill_deadline is not None and now >= self.kill_deadline:
            self.kill_deadline = None
            self._kill_all("did not stop within the graceful timeout")
        if self.metrics_server is not None:
            self.metrics_server.expire(now)
        if self.next_watchdog is not None and now >= self.next_watchdog:
            assert self.watchdog_interval is not None
            self.next_watchdog = now + self.watchdog_interval
            self._ping_watchdog()
        if self.next_heartbeat_check is not None and now >= self.next_heartbeat_check:
            self.next_heartbeat_check = now + self._heartbeat_period()
            self._check_heartbeats()
        for slot in self._all_slots():
            if slots.is_due(slot.deadline, now):
                step = slots.on_deadline(slot.view(), now, self.process.startup_timeout)
                self._take_step(slot, step)

    def _take_step(self, slot: _Slot, step: Step) -> None:
        """Carries out a step of the policy: log, signal the worker, start one."""
        slot.enter(step)
        if step.log is not None:
            self._log(step.log)
        if step.signal is not None and slot.process is not None:
            _signal_process(slot.process, step.signal)
        if step.start and not self.stopping:
            self._start(slot)

    # -- hang detection ----------------------------------------------------------------------

    def _heartbeat_ages(self) -> list[tuple[_Slot, float]]:
        """Each watched worker that has beaten, with the age of its last beat in seconds."""
        memory = self.heartbeat_memory
        if memory is None:
            return []
        now_ns = time.monotonic_ns()
        ages = []
        for slot in self._all_slots():
            if slot.process is None or slot.cell is None or slot.state not in slots.WATCHED_STATES:
                continue
            _iterations, beat_ns = heartbeat.read(memory, slot.cell)
            if beat_ns != 0:
                ages.append((slot, max(0.0, (now_ns - beat_ns) / 1e9)))
        return ages

    def _check_heartbeats(self) -> None:
        """Reads every ready worker's heartbeat; a stalled one is dumped, then killed."""
        timeout = self.process.worker_timeout
        for slot, age in self._heartbeat_ages():
            if slot.pid is not None:
                self.metrics.heartbeat_age[slot.pid] = age
            step = slots.hang_detected(slot.view(), time.monotonic(), age, timeout)
            if step is not None:
                self._take_step(slot, step)

    # -- systemd -----------------------------------------------------------------------------

    def _status(self) -> str:
        """systemd's STATUS= line: the address and how many workers are ready."""
        ready = sum(1 for slot in self.slots if slot.ready)
        return f"STATUS=serving on {self.address}: {ready} of {len(self.slots)} workers ready"

    def _ping_watchdog(self) -> None:
        """WATCHDOG=1, unless a worker's heartbeat is stale (systemd then restarts the service,
        unless the hang detection replaces that worker first)."""
        assert self.watchdog_interval is not None
        ages = [(slot.worker_id, slot.pid, age) for slot, age in self._heartbeat_ages()]
        stale = stale_heartbeat(ages, self.watchdog_interval, self._heartbeat_period())
        if stale is None:
            tell_systemd("WATCHDOG=1")
            return
        logger.warning(
            "not pinging systemd's watchdog: worker %d (pid %s) last beat %.1f s ago", *stale
        )

    # -- rolling replacement, reload, scaling ------------------------------------------------

    def _release_cell(self, slot: _Slot) -> None:
        if slot.cell is not None:
            self.free_cells.append(slot.cell)
            slot.cell = None

    def _on_recycle(self, slot: _Slot, message: ipc.Recycle) -> None:
        being_replaced = self.replacement is not None and self.replacement.replacing is slot
        wanted = slots.recycle_wanted(
            self.replace_queue,
            slot.worker_id,
            member=slot in self.slots,
            stopping=self.stopping,
            being_replaced=being_replaced,
        )
        if not wanted:
            return
        logger.info(
            "worker %d (pid %s) asks to be recycled (%s: %s)",
            slot.worker_id,
            slot.pid,
            message.reason,
            message.detail,
        )
        self.replace_queue = (*self.replace_queue, (slot.worker_id, "recycle"))
        self._advance_replacements()

    def _advance_replacements(self) -> None:
        """Starts the next queued replacement, unless one is starting (one at a time)."""
        if self.stopping or self.replacement is not None:
            return
        replaceable = {
            slot.worker_id
            for slot in self.slots
            if slot.process is not None and slot.state is SlotState.READY
        }
        item, self.replace_queue = slots.next_replacement(self.replace_queue, replaceable)
        if item is None:
            self._check_reload_complete()
            return
        worker_id, reason = item
        old = next(slot for slot in self.slots if slot.worker_id == worker_id)
        # The successor accepts from the old worker's socket: its queue is never reset.
        successor = _Slot(worker_id, spawn_reason=reason, replacing=old, listener=old.listener)
        self.replacement = successor
        logger.info(
            "replacing worker %d (pid %s) for %s: starting its successor",
            worker_id,
            old.pid,
            reason,
        )
        self._start(successor)

    def _check_reload_complete(self) -> None:
        """Logs the end of a reload once every worker was replaced and every old one exited."""
        complete = slots.reload_complete(
            reloading=self.reloading,
            replacing=self.replacement is not None,
            queue=self.replace_queue,
            retiring=len(self.retiring),
        )
        if complete:
            self.reloading = False
            logger.info("reload complete: %d workers", len(self.slots))
            tell_systemd(f"READY=1\n{self._status()}")

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
                self._retire(old, ipc.HANDOVER)
            else:
                self._release_cell(old)
        else:
            # The slot went away meanwhile (SIGTTOU): the successor is not needed.
            self._retire(successor, ipc.HANDOVER)
        self._advance_replacements()

    def _retire(self, slot: _Slot, mode: str) -> None:
        """Tells ``slot``'s worker to drain (a Drain message in ``mode``, ipc.HANDOVER or
        ipc.LEAVE; shared sockets are always handed over) and kills it if it is still there
        after the graceful timeout plus SHUTDOWN_HOOKS_GRACE. When the message cannot be sent:
        SIGTERM, except for a handover of a slot's own socket, which a SIGTERM drain would shut
        down under its successor: SIGKILL then (its queue stays for the successor)."""
        if slot.listener is None:
            mode = ipc.HANDOVER
        drain_time = self.server.graceful_timeout + self.server.keepalive_timeout
        if mode == ipc.LEAVE:
            drain_time += LEAVE_SETTLE
        step, drain_message = slots.retire(slot.state, slot.deadline, time.monotonic(), drain_time)
        slot.enter(step)
        self.retiring.append(slot)
        sent = False
        if slot.channel is not None and drain_message:
            message = ipc.Drain(self.server.graceful_timeout, mode, LEAVE_SETTLE)
            try:
                ipc.send(slot.channel, message)
                sent = True
            except OSError:
                pass
        if sent or slot.process is None:
            return
        if slot.listener is not None and mode == ipc.HANDOVER:
            logger.warning(
                "worker %d (pid %s) cannot be told to hand its socket over: killing it",
                slot.worker_id,
                slot.pid,
            )
            _signal_process(slot.process, signal.SIGKILL)
            return
        _signal_process(slot.process, signal.SIGTERM)
        if mode == ipc.LEAVE:
            self._leave_group(slot.listener)

    def _reload(self) -> None:
        """SIGHUP: replaces every worker, one at a time (new workers import the application
        and read the env files again, the config file's hooks are read again first); a new
        worker that cannot start stops the reload."""
        problem = env_files_problem(self.process.env_files)
        if problem is not None:
            logger.error("reload refused: %s", problem)
            return
        if not self._reload_hooks():
            return
        if not isinstance(self.app, str):
            logger.warning(
                "reload: the application is an object, which new workers reuse as it is; "
                "give it as 'module:attribute' to have it imported again"
            )
        running = self._running_slots()
        logger.info("SIGHUP received: reloading, replacing %d workers one at a time", len(running))
        tell_systemd(f"{reloading_message()}\nSTATUS=reloading")
        self.hooks.call("on_reload", self._hook_config())
        self.reloading = True
        self.replace_queue = slots.queue_reload(
            self.replace_queue, (slot.worker_id for slot in running)
        )
        self._advance_replacements()

    def _reload_hooks(self) -> bool:
        """Runs the config file again (its hooks apply from now on; changed options only at
        the next start). False, with the error logged, when the file no longer loads."""
        if self.process.config_file is None:
            return True
        try:
            before, after = reload_config_file(self.process.config_file)
        except ConfigFileError as error:
            suffix = f"\n{error.traceback}" if error.traceback else ""
            logger.error("reload refused: %s%s", error.message, suffix)
            return False
        if before is not None and before.options != after.options:
            logger.warning(
                "reload: the config file's options changed; they apply at the next start "
                "(its hooks apply now)"
            )
        self.hooks = after.hooks
        return True

    def _unqueue_reloads(self) -> None:
        """Drops the replacements a reload queued (a new reload or a failed one replaces them)."""
        self.replace_queue = slots.without_reloads(self.replace_queue)

    def _add_worker(self) -> None:
        """SIGTTIN: one more slot (TCP: with a socket of its own, steered away from until its
        worker is ready)."""
        worker_id = max((slot.worker_id for slot in self.slots), default=0) + 1
        slot = _Slot(worker_id, spawn_reason="scale")
        if self.slot_listeners:
            try:
                self._bind_slot(slot)
            except OSError as error:
                logger.error("SIGTTIN: cannot add a worker: %s", error.strerror or error)
                return
        self.slots.append(slot)
        self._update_steering()
        logger.info("SIGTTIN received: adding worker %d (%d workers)", worker_id, len(self.slots))
        self._start(slot)

    def _remove_worker(self) -> None:
        """SIGTTOU: one slot fewer (never below one): new connections are steered away from its
        socket, its worker drains (LEAVE: it takes what is queued after LEAVE_SETTLE, then the
        socket leaves the group) and is not replaced."""
        if len(self.slots) <= 1:
            logger.info("SIGTTOU received: already at one worker; ignored")
            return
        slot = self.slots.pop()
        self.replace_queue = slots.without_worker(self.replace_queue, slot.worker_id)
        logger.info(
            "SIGTTOU received: removing worker %d (%d workers)", slot.worker_id, len(self.slots)
        )
        self._update_steering()
        if slot.process is not None:
            self._retire(slot, ipc.LEAVE)
        else:
            slot.enter(Step(SlotState.IDLE))
            self._release_cell(slot)
            if not self._listener_in_use(slot.listener):
                self._leave_group(slot.listener)

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
            if signum in (signal.SIGUSR1, signal.SIGUSR2):
                self._dump(signum)
                continue
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
                self.exit_code = ExitCode.INTERRUPTED
                self._kill_all("stopped at once")

    def _begin_shutdown(self, code: int) -> None:
        if self.stopping:
            return
        if self.slot_listeners and self.group and self.steering != steering.HASH_FALLBACK:
            # Each worker now takes what is queued and shuts its socket down (nowhere else to
            # steer to): the group's array changes under any program, so leave it to the hash.
            with contextlib.suppress(OSError):
                attach_steering(self.group[0], steering.encode(steering.HASH_FALLBACK))
            self.steering = steering.HASH_FALLBACK
        self.stopping = True
        self.exit_code = code
        self.replace_queue = ()
        for slot in self._all_slots():
            slot.enter(slots.cancel_respawn(slot.state, slot.deadline))
            if slot.process is not None:
                _signal_process(slot.process, signal.SIGTERM)
        # A socket whose worker is gone (respawn cancelled) has nobody to accept from it.
        for listener in self.group:
            if not any(
                slot.listener is listener and slot.process is not None for slot in self._all_slots()
            ):
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RD)
        self.kill_deadline = time.monotonic() + self.server.graceful_timeout + SHUTDOWN_HOOKS_GRACE
        tell_systemd("STOPPING=1\nSTATUS=stopping")

    def _dump(self, signum: int) -> None:
        """SIGUSR1/SIGUSR2: logs this process's state and forwards the signal to every worker
        that has its dump handlers (tracebacks of its greenlets / a faulthandler dump; a worker
        still starting would be killed by it)."""
        name = signal.Signals(signum).name
        workers = [
            f"worker {slot.worker_id} pid {slot.pid} {slot.state.value}"
            for slot in self._all_slots()
            if slot.process is not None
        ]
        dumpable = sum(
            1
            for slot in self._all_slots()
            if slot.process is not None and slot.state in slots.DUMPABLE_STATES
        )
        logger.warning(
            "%s: supervisor pid %d, %s%s; %s; forwarding to %d workers",
            name,
            os.getpid(),
            "stopping, " if self.stopping else "",
            f"reloading ({len(self.replace_queue)} queued)" if self.reloading else "serving",
            ", ".join(workers) or "no worker running",
            dumpable,
        )
        for slot in self._all_slots():
            if slot.process is not None and slot.state in slots.DUMPABLE_STATES:
                _signal_process(slot.process, signum)

    def _kill_all(self, why: str) -> None:
        for slot in self._all_slots():
            if slot.process is not None:
                logger.warning("worker %d %s: killing it", slot.worker_id, why)
                _signal_process(slot.process, signal.SIGKILL)

    # -- cleanup -----------------------------------------------------------------------------

    def _close_in_worker(self) -> None:
        """After fork, in the worker: drops the supervisor's descriptors (the shared listeners
        and the worker's own slot socket stay; the other slots' sockets go)."""
        if self.selector is not None:
            self.selector.close()
        if self.wakeup is not None:
            # First stop signals from writing into the pipe about to be closed: a SIGTERM that
            # reaches a worker still booting would report EBADF on stderr.
            with contextlib.suppress(ValueError):  # not the main thread: nothing was set here
                signal.set_wakeup_fd(-1)
            for descriptor in self.wakeup:
                os.close(descriptor)
        others = [listener for listener in self.group if listener is not self.starting_listener]
        channels = [slot.channel for slot in self._all_slots() if slot.channel is not None]
        for closable in (*others, *channels):
            closable.close()
        if self.metrics_server is not None:
            self.metrics_server.close_in_child()
        if self.heartbeat_memory is not None:
            self.heartbeat_memory.close()
        if self.heartbeat_fd is not None:
            os.close(self.heartbeat_fd)

    def _cleanup(self) -> None:
        self._close_descriptors()
        for listener in (*self.listeners, *self.group):
            listener.close()
        self.group = ()
        if self.listener_inode is not None and self.server.uds is not None:
            remove_own_socket_file(self.server.uds, self.listener_inode)
        if self.pid_file_written and self.process.pid_file is not None:
            remove_pid_file(self.process.pid_file)
        logger.info("stopped (exit code %d)", self.exit_code)

    def _close_descriptors(self) -> None:
        """Closes the metrics server, the selector, the wake-up pipe, the channels and the
        heartbeat memory."""
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
            if slot.pidfd is not None:
                os.close(slot.pidfd)
                slot.pidfd = None
        if self.heartbeat_memory is not None:
            self.heartbeat_memory.close()
            self.heartbeat_memory = None
        if self.heartbeat_fd is not None:
            os.close(self.heartbeat_fd)
            self.heartbeat_fd = None


_HANDLED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

_LOG_LEVELS = {
    Level.DEBUG: logging.DEBUG,
    Level.INFO: logging.INFO,
    Level.WARNING: logging.WARNING,
    Level.ERROR: logging.ERROR,
    Level.FATAL: logging.ERROR,
}


def _replace_port(config: ServerConfig, port: int) -> ServerConfig:
    import dataclasses

    return dataclasses.replace(config, port=port)


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
