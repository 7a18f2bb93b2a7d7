"""The supervisor's policy as pure functions: what a worker slot's state is, when its next step is
due and what that step is, what a worker's exit means, and the order of rolling replacements.

Nothing here sends a signal, logs, starts a process or reads the clock: ``now`` is passed in, and
every decision is a value (a ``Step``, an ``ExitAction``, log lines as ``LogLine``) that the loop
in ``theframework.process.supervisor`` carries out. docs/processes.md has the exit-code table.

A slot's life::

    IDLE -> STARTING -Ready-> READY -stale heartbeat-> HUNG -> HUNG_DUMPED -> HUNG_KILLED
               |                 |
               |                 +-retire-> RETIRING (drains; SIGKILL at its deadline)
               +-startup timeout-> TIMED_OUT
    and when the worker ended: WAITING (respawn at the deadline), STOPPED (never again), or
    IDLE (while the server stops).

Each state has at most one deadline (``SlotState``'s comment says what happens at it), kept in
the slot next to its state; ``on_deadline`` is the one place that says what happens then.
"""

from __future__ import annotations

import contextlib
import enum
import signal
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..server.exitcodes import ExitCode

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW",
    "ERRNO_NAMES",
    "FAULTHANDLER_WAIT",
    "FIRST_BACKOFF",
    "HANG_DUMP_WAIT",
    "HUNG_STATES",
    "LEAVE_SETTLE",
    "MAX_BACKOFF",
    "READY_STATES",
    "SHUTDOWN_HOOKS_GRACE",
    "WATCHED_STATES",
    "CannotStart",
    "ExitAction",
    "ExitKind",
    "Level",
    "LogLine",
    "ReplaceQueue",
    "SlotState",
    "SlotView",
    "Step",
    "backoff",
    "became_ready",
    "cancel_respawn",
    "decide_exit",
    "describe_exit",
    "hang_detected",
    "is_due",
    "next_replacement",
    "on_deadline",
    "on_dumped",
    "queue_reload",
    "record_crash",
    "recycle_wanted",
    "reload_complete",
    "retire",
    "started",
    "traceback_suffix",
    "without_reloads",
    "without_worker",
]

# A slot whose worker crashed this many times within CRASH_WINDOW seconds is stopped.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
# Respawn delay after the n-th crash in the window: FIRST_BACKOFF * 2**(n-1), at most MAX_BACKOFF.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
# Time workers get after graceful_timeout (their drain) to run the shutdown hooks and exit.
SHUTDOWN_HOOKS_GRACE = 5.0
# A hung worker gets this long to log its tracebacks (SIGUSR1) before the faulthandler dump
# (SIGUSR2), and then FAULTHANDLER_WAIT before SIGKILL.
HANG_DUMP_WAIT = 3.0
FAULTHANDLER_WAIT = 0.5
# A worker leaving the listener group (SIGTTOU) keeps accepting this long after new connections
# were steered away from its socket: handshakes already on their way complete within it (a
# SYN-ACK retransmission comes after 1 s), then it takes what is queued.
LEAVE_SETTLE = 1.0

# The exit codes whose "no worker can run" error names an errno and what to do about it.
ERRNO_NAMES: dict[int, str] = {
    ExitCode.ADDRESS_IN_USE: "EADDRINUSE",
    ExitCode.PERMISSION_DENIED: "EACCES",
    ExitCode.TOO_MANY_FILES: "EMFILE",
}


class SlotState(enum.Enum):
    """Where a slot's worker is in its life, and what happens at the slot's deadline."""

    IDLE = "idle"  # no process and nothing due (before its first start; ended while stopping)
    WAITING = "waiting"  # waiting to respawn; deadline: start the worker
    STARTING = "starting"  # started, not ready yet; deadline: startup timeout, SIGKILL
    TIMED_OUT = "timed out"  # killed for the startup timeout; waiting for it to end
    READY = "ready"  # serving; its heartbeat is watched
    HUNG = "hung"  # heartbeat stale, SIGUSR1 sent; deadline: SIGUSR2 (faulthandler)
    HUNG_DUMPED = "hung, dumped"  # tracebacks logged (or SIGUSR2 sent); deadline: SIGKILL
    HUNG_KILLED = "hung, killed"  # SIGKILL sent; waiting for it to end
    RETIRING = "retiring"  # draining, not replaced; deadline: SIGKILL
    STOPPED = "stopped"  # never runs a worker again


# The worker answered Ready and has not been killed since (hung ones included).
READY_STATES = frozenset({SlotState.READY, SlotState.HUNG, SlotState.HUNG_DUMPED})
HUNG_STATES = frozenset({SlotState.HUNG, SlotState.HUNG_DUMPED, SlotState.HUNG_KILLED})
# States whose heartbeat is read (a draining worker's hub still beats).
WATCHED_STATES = frozenset({SlotState.READY, SlotState.RETIRING})
# States whose worker has its SIGUSR1/SIGUSR2 dump handlers (installed before it reports ready):
# the supervisor forwards those signals to these only.
DUMPABLE_STATES = READY_STATES | {SlotState.RETIRING}


class Level(enum.Enum):
    """A log line's level; FATAL is an error that stops the server (the supervisor keeps it as
    its ``error_message``)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"


@dataclass(frozen=True)
class LogLine:
    """A line the loop logs: ``message % args`` at ``level``."""

    level: Level
    message: str
    args: tuple[object, ...] = ()

    def text(self) -> str:
        return self.message % self.args


@dataclass(frozen=True)
class SlotView:
    """What the policy needs to know of a slot and its current (or last) worker."""

    worker_id: int
    pid: int | None = None
    state: SlotState = SlotState.READY
    # Crash times (monotonic) within the window, oldest first.
    crashes: tuple[float, ...] = ()
    # The Failure message the worker sent before ending, if any: its one line and traceback.
    failure: str | None = None
    traceback: str = ""
    # Why this process was started ("start", "crash", "hang", "reload", "recycle", "scale").
    spawn_reason: str = "start"
    # For a successor of a rolling replacement: the pid of the worker it replaces.
    replaced_pid: int | None = None


def traceback_suffix(slot: SlotView) -> str:
    """The traceback the worker reported, on lines of its own after a log message; "" when it
    reported none."""
    trace = slot.traceback.rstrip()
    return "\n" + trace if trace else ""


def describe_exit(code: int, slot: SlotView) -> str:
    """How an exit reads in the log: "exit 1 (GENERIC): <failure>" or "killed by SIGKILL"."""
    if code < 0:
        with contextlib.suppress(ValueError):
            timed_out = " (startup timeout)" if slot.state is SlotState.TIMED_OUT else ""
            return f"killed by {signal.Signals(-code).name}{timed_out}"
        return f"killed by signal {-code}"
    text = f"exit {code}"
    with contextlib.suppress(ValueError):
        text += f" ({ExitCode(code).name})"
    if slot.failure is not None:
        text += f": {slot.failure}"
    return text


# -- crashes and backoff ---------------------------------------------------------------------


def record_crash(crashes: Iterable[float], now: float) -> tuple[float, ...]:
    """The crash times within CRASH_WINDOW once a crash at ``now`` is added."""
    return tuple(when for when in (*crashes, now) if when >= now - CRASH_WINDOW)


def backoff(crash_count: int) -> float:
    """The respawn delay after the ``crash_count``-th crash within the window."""
    return min(FIRST_BACKOFF * 2.0 ** (crash_count - 1), MAX_BACKOFF)


# -- the exit policy -------------------------------------------------------------------------


class ExitKind(enum.Enum):
    """What the loop does after a worker ended (besides logging ``ExitAction.logs``)."""

    IGNORE = "ignore"  # the server is stopping: the slot stays empty
    RETIRED = "retired"  # an old worker finished draining: forget it
    SUCCESSOR_ENDED = "successor ended"  # a successor ended while stopping: forget it
    REPLACEMENT_FAILED = "replacement failed"  # keep the old worker, go on with the queue
    RELOAD_FAILED = "reload failed"  # keep the old workers, drop the reload's queue
    RESPAWN = "respawn"  # start a new worker in the slot after ``delay``
    STOP_SLOT = "stop slot"  # never restart this slot; the others keep serving
    STOP_SERVER = "stop server"  # stop this slot and the server, which exits ``exit_code``


@dataclass(frozen=True)
class CannotStart:
    """The server stops because no worker can bind: the loop logs the one error line naming
    the address, ``errno_name`` and the advice for ``ExitAction.exit_code``."""

    detail: str
    errno_name: str


@dataclass(frozen=True)
class ExitAction:
    kind: ExitKind
    # The slot's crash history to keep (this crash included when it was one).
    crashes: tuple[float, ...] = ()
    logs: tuple[LogLine, ...] = ()
    # RESPAWN: after how long, and the reason (metrics: spawns by reason).
    delay: float | None = None
    spawn_reason: str | None = None
    # STOP_SERVER: the server's exit code, and the cannot-start line when that is what to log.
    exit_code: int | None = None
    cannot_start: CannotStart | None = None


def decide_exit(
    slot: SlotView,
    code: int,
    now: float,
    *,
    stopping: bool,
    is_replacement: bool,
    is_retiring: bool,
    running_slots: int,
) -> ExitAction:
    """What a worker's exit with ``code`` means. ``running_slots`` counts the server's slots
    that are not stopped, this one included when it is one of them."""
    description = describe_exit(code, slot)
    if is_retiring:
        return _retired(slot, code, description)
    if is_replacement:
        return _successor_ended(slot, description, stopping=stopping)
    if stopping:
        return _ended_during_shutdown(slot, code, description)
    if code in (ExitCode.USAGE, ExitCode.APP_FAILED):
        line = LogLine(
            Level.FATAL,
            "worker %d: %s; stopping the server%s",
            (slot.worker_id, description, traceback_suffix(slot)),
        )
        return ExitAction(ExitKind.STOP_SERVER, slot.crashes, (line,), exit_code=code)
    if code == ExitCode.PERMISSION_DENIED:
        line = LogLine(
            Level.WARNING, "worker %d: %s; not restarting it", (slot.worker_id, description)
        )
        return _stop_slot(slot, code, description, slot.crashes, line, running_slots)
    if code == ExitCode.TOO_MANY_FILES:
        line = LogLine(
            Level.WARNING,
            "worker %d: %s; lowering the target worker count to %d",
            (slot.worker_id, description, running_slots - 1),
        )
        return _stop_slot(slot, code, description, slot.crashes, line, running_slots)
    return _crashed(slot, code, description, now, running_slots)


def _retired(slot: SlotView, code: int, description: str) -> ExitAction:
    if code == 0:
        line = LogLine(Level.INFO, "worker %d (pid %s) retired", (slot.worker_id, slot.pid))
    else:
        line = LogLine(
            Level.WARNING,
            "worker %d (pid %s) ended while draining: %s",
            (slot.worker_id, slot.pid, description),
        )
    return ExitAction(ExitKind.RETIRED, slot.crashes, (line,))


def _successor_ended(slot: SlotView, description: str, *, stopping: bool) -> ExitAction:
    if stopping:
        return ExitAction(ExitKind.SUCCESSOR_ENDED, slot.crashes)
    if slot.spawn_reason == "reload":
        line = LogLine(
            Level.ERROR,
            "reload failed: the new worker %d did not start (%s); keeping the old workers%s",
            (slot.worker_id, description, traceback_suffix(slot)),
        )
        return ExitAction(ExitKind.RELOAD_FAILED, slot.crashes, (line,))
    line = LogLine(
        Level.WARNING,
        "the successor of worker %d (pid %s) did not start (%s); keeping the old one",
        (slot.worker_id, slot.replaced_pid, description),
    )
    return ExitAction(ExitKind.REPLACEMENT_FAILED, slot.crashes, (line,))


def _ended_during_shutdown(slot: SlotView, code: int, description: str) -> ExitAction:
    if code != 0:
        line = LogLine(
            Level.WARNING, "worker %d ended during shutdown: %s", (slot.worker_id, description)
        )
    else:
        line = LogLine(Level.DEBUG, "worker %d stopped", (slot.worker_id,))
    return ExitAction(ExitKind.IGNORE, slot.crashes, (line,))


def _crashed(
    slot: SlotView, code: int, description: str, now: float, running_slots: int
) -> ExitAction:
    crashes = record_crash(slot.crashes, now)
    if len(crashes) >= CRASH_LIMIT:
        line = LogLine(
            Level.WARNING,
            "worker %d failed %d times within %g s (last: %s); not restarting it",
            (slot.worker_id, len(crashes), CRASH_WINDOW, description),
        )
        return _stop_slot(slot, code, description, crashes, line, running_slots)
    delay = backoff(len(crashes))
    line = LogLine(
        Level.WARNING,
        "worker %d: %s; restarting it in %.1f s",
        (slot.worker_id, description, delay),
    )
    reason = "hang" if slot.state in HUNG_STATES else "crash"
    return ExitAction(ExitKind.RESPAWN, crashes, (line,), delay=delay, spawn_reason=reason)


def _stop_slot(
    slot: SlotView,
    code: int,
    description: str,
    crashes: tuple[float, ...],
    line: LogLine,
    running_slots: int,
) -> ExitAction:
    """The slot stops; when it was the last one running, so does the server."""
    if running_slots > 1:
        return ExitAction(ExitKind.STOP_SLOT, crashes, (line,))
    errno_name = ERRNO_NAMES.get(code)
    detail = slot.failure if slot.failure is not None else description
    if errno_name is not None:
        cannot_start = CannotStart(detail, errno_name)
        return ExitAction(
            ExitKind.STOP_SERVER, crashes, (line,), exit_code=code, cannot_start=cannot_start
        )
    fatal = LogLine(
        Level.FATAL,
        "no worker can run (every slot failed %d times within %g s; last: %s); stopping",
        (CRASH_LIMIT, CRASH_WINDOW, detail),
    )
    return ExitAction(ExitKind.STOP_SERVER, crashes, (line, fatal), exit_code=ExitCode.GENERIC)


# -- deadlines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A slot's next state and deadline, and what the loop does to get there: send ``signal``
    to the worker, log ``log``, start a worker (``start``)."""

    state: SlotState
    deadline: float | None = None
    signal: signal.Signals | None = None
    log: LogLine | None = None
    start: bool = False


def is_due(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline


def started(now: float, startup_timeout: float) -> Step:
    """A worker process started in the slot: it must be ready within ``startup_timeout``."""
    return Step(SlotState.STARTING, now + startup_timeout)


def became_ready(state: SlotState, deadline: float | None) -> Step:
    """The worker sent Ready: a starting one is serving (a killed or retiring one stays so)."""
    if state is SlotState.STARTING:
        return Step(SlotState.READY)
    return Step(state, deadline)


def retire(
    state: SlotState, deadline: float | None, now: float, drain_time: float
) -> tuple[Step, bool]:
    """The slot's worker is to drain and end within ``drain_time`` + SHUTDOWN_HOOKS_GRACE, else
    be killed; and whether it can be told by a Drain message (it is ready), else SIGTERM. A hung
    worker keeps its (shorter) escalation."""
    drain_message = state in READY_STATES
    if state in HUNG_STATES:
        return Step(state, deadline), drain_message
    return Step(SlotState.RETIRING, now + drain_time + SHUTDOWN_HOOKS_GRACE), drain_message


def cancel_respawn(state: SlotState, deadline: float | None) -> Step:
    """The server stops: a slot waiting to respawn stays empty; other deadlines still apply."""
    if state is SlotState.WAITING:
        return Step(SlotState.IDLE)
    return Step(state, deadline)


def hang_detected(slot: SlotView, now: float, age: float, timeout: float) -> Step | None:
    """The escalation's first step when the heartbeat is ``age`` seconds old: None while it is
    fresh or the worker is not watched (not ready, or already hung)."""
    if slot.state not in WATCHED_STATES or age < timeout:
        return None
    line = LogLine(
        Level.ERROR,
        "worker %d (pid %s) is hung: its hub loop has not run for %.1f s "
        "(--worker-timeout %g); logging its tracebacks, then killing it",
        (slot.worker_id, slot.pid, age, timeout),
    )
    return Step(SlotState.HUNG, now + HANG_DUMP_WAIT, signal.SIGUSR1, line)


def on_dumped(state: SlotState, deadline: float | None, now: float) -> Step:
    """The worker said its tracebacks are logged: a hung one is killed at once."""
    if state in (SlotState.HUNG, SlotState.HUNG_DUMPED):
        return Step(SlotState.HUNG_DUMPED, now)
    return Step(state, deadline)


def on_deadline(slot: SlotView, now: float, startup_timeout: float) -> Step:
    """What happens when the slot's deadline has come, by its state."""
    worker, pid = slot.worker_id, slot.pid
    if slot.state is SlotState.WAITING:
        return Step(SlotState.IDLE, start=True)
    if slot.state is SlotState.STARTING:
        line = LogLine(
            Level.WARNING,
            "worker %d not ready within %g s (--startup-timeout); killing it",
            (worker, startup_timeout),
        )
        return Step(SlotState.TIMED_OUT, None, signal.SIGKILL, line)
    if slot.state is SlotState.HUNG:
        line = LogLine(
            Level.WARNING,
            "worker %d (pid %s) did not log its tracebacks; asking faulthandler",
            (worker, pid),
        )
        return Step(SlotState.HUNG_DUMPED, now + FAULTHANDLER_WAIT, signal.SIGUSR2, line)
    if slot.state is SlotState.HUNG_DUMPED:
        line = LogLine(Level.WARNING, "worker %d (pid %s) hung: killing it", (worker, pid))
        return Step(SlotState.HUNG_KILLED, None, signal.SIGKILL, line)
    if slot.state is SlotState.RETIRING:
        line = LogLine(
            Level.WARNING,
            "worker %d (pid %s) did not finish draining in time; killing it",
            (worker, pid),
        )
        return Step(SlotState.RETIRING, None, signal.SIGKILL, line)
    return Step(slot.state)


# -- rolling replacements --------------------------------------------------------------------

# Replacements waiting to start, in order: (worker id, reason: "reload" or "recycle").
ReplaceQueue = tuple[tuple[int, str], ...]


def recycle_wanted(
    queue: ReplaceQueue, worker_id: int, *, member: bool, stopping: bool, being_replaced: bool
) -> bool:
    """Whether a worker's Recycle request is queued: it serves in a slot (``member``: not
    retiring, not a successor), the server is not stopping, and it is not queued or being
    replaced already."""
    if not member or stopping or being_replaced:
        return False
    return all(queued != worker_id for queued, _ in queue)


def next_replacement(
    queue: ReplaceQueue, replaceable: Collection[int]
) -> tuple[tuple[int, str] | None, ReplaceQueue]:
    """The next replacement to start and the queue after it: entries whose worker is not
    ``replaceable`` (gone, not ready, hung) are dropped on the way."""
    for index, (worker_id, reason) in enumerate(queue):
        if worker_id in replaceable:
            return (worker_id, reason), queue[index + 1 :]
    return None, ()


def without_reloads(queue: ReplaceQueue) -> ReplaceQueue:
    """The queue without the replacements a reload queued (a new or failed reload)."""
    return tuple(item for item in queue if item[1] != "reload")


def without_worker(queue: ReplaceQueue, worker_id: int) -> ReplaceQueue:
    """The queue without the replacements of ``worker_id`` (its slot was removed)."""
    return tuple(item for item in queue if item[0] != worker_id)


def queue_reload(queue: ReplaceQueue, worker_ids: Iterable[int]) -> ReplaceQueue:
    """A reload replaces every running worker, after the recycles already queued (a previous
    reload's entries are replaced)."""
    return (*without_reloads(queue), *((worker_id, "reload") for worker_id in worker_ids))


def reload_complete(
    *, reloading: bool, replacing: bool, queue: ReplaceQueue, retiring: int
) -> bool:
    """A reload is complete once every worker was replaced and every old one has exited (a
    draining worker still answers its open connections' next request)."""
    return reloading and not replacing and not queue and retiring == 0
