"""The supervisor's policy (theframework.process.slots) without processes: what each exit code
means in each situation of a slot, the backoff and the crash window, the hang escalation, the
startup and retire deadlines, and the order of rolling replacements."""

from __future__ import annotations

import signal

import pytest

from theframework.process import slots
from theframework.process.slots import (
    CRASH_LIMIT,
    CRASH_WINDOW,
    FAULTHANDLER_WAIT,
    HANG_DUMP_WAIT,
    SHUTDOWN_HOOKS_GRACE,
    ExitAction,
    ExitKind,
    Level,
    SlotState,
    SlotView,
    Step,
)
from theframework.process.supervisor import CRASH_LIMIT as SUPERVISOR_CRASH_LIMIT
from theframework.process.supervisor import CRASH_WINDOW as SUPERVISOR_CRASH_WINDOW

NOW = 1000.0
CODES = (0, 1, 2, 3, 42, 43, 44, 50, 51, 52, -9, -15)

# The situations of a slot whose worker ended: keyword arguments of decide_exit (besides the
# code and now) and the slot's spawn reason.
SITUATIONS: dict[str, dict[str, object]] = {
    "running": {"stopping": False, "is_replacement": False, "is_retiring": False, "running": 3},
    "successor": {"stopping": False, "is_replacement": True, "is_retiring": False, "running": 3},
    "reload successor": {
        "stopping": False,
        "is_replacement": True,
        "is_retiring": False,
        "running": 3,
        "reason": "reload",
    },
    "successor while stopping": {
        "stopping": True,
        "is_replacement": True,
        "is_retiring": False,
        "running": 3,
    },
    "retiring": {"stopping": False, "is_replacement": False, "is_retiring": True, "running": 3},
    "retiring while stopping": {
        "stopping": True,
        "is_replacement": False,
        "is_retiring": True,
        "running": 3,
    },
    "stopping": {"stopping": True, "is_replacement": False, "is_retiring": False, "running": 3},
    "last": {"stopping": False, "is_replacement": False, "is_retiring": False, "running": 1},
}

Expected = tuple[ExitKind, int | None, Level, str]
CRASH: Expected = (ExitKind.RESPAWN, None, Level.WARNING, "; restarting it in 0.1 s")
CRASHES = {code: CRASH for code in (0, 1, 42, 50, 51, 52, -9, -15)}
STOP_2: Expected = (ExitKind.STOP_SERVER, 2, Level.FATAL, "; stopping the server")
STOP_3: Expected = (ExitKind.STOP_SERVER, 3, Level.FATAL, "; stopping the server")


def _everywhere(expected: Expected) -> dict[int, Expected]:
    return dict.fromkeys(CODES, expected)


# (kind, server exit code, level of the first log line, text in it) by situation and code.
EXPECTED: dict[str, dict[int, Expected]] = {
    "running": {
        **CRASHES,
        2: STOP_2,
        3: STOP_3,
        43: (ExitKind.STOP_SLOT, None, Level.WARNING, "(PERMISSION_DENIED); not restarting it"),
        44: (ExitKind.STOP_SLOT, None, Level.WARNING, "lowering the target worker count to 2"),
    },
    "successor": _everywhere((ExitKind.REPLACEMENT_FAILED, None, Level.WARNING, "did not start (")),
    "reload successor": _everywhere(
        (ExitKind.RELOAD_FAILED, None, Level.ERROR, "reload failed: the new worker 4")
    ),
    "successor while stopping": _everywhere((ExitKind.SUCCESSOR_ENDED, None, Level.DEBUG, "")),
    "retiring": {
        **_everywhere((ExitKind.RETIRED, None, Level.WARNING, "ended while draining: ")),
        0: (ExitKind.RETIRED, None, Level.INFO, "worker 4 (pid 77) retired"),
    },
    "retiring while stopping": {
        **_everywhere((ExitKind.RETIRED, None, Level.WARNING, "ended while draining: ")),
        0: (ExitKind.RETIRED, None, Level.INFO, "worker 4 (pid 77) retired"),
    },
    "stopping": {
        **_everywhere((ExitKind.IGNORE, None, Level.WARNING, "worker 4 ended during shutdown: ")),
        0: (ExitKind.IGNORE, None, Level.DEBUG, "worker 4 stopped"),
    },
    "last": {
        **CRASHES,
        2: STOP_2,
        3: STOP_3,
        43: (ExitKind.STOP_SERVER, 43, Level.WARNING, "(PERMISSION_DENIED); not restarting it"),
        44: (ExitKind.STOP_SERVER, 44, Level.WARNING, "lowering the target worker count to 0"),
    },
}


def _view(state: SlotState = SlotState.READY, **fields: object) -> SlotView:
    values: dict[str, object] = {"worker_id": 4, "pid": 77, "state": state, **fields}
    return SlotView(**values)  # type: ignore[arg-type]


def _decide(
    code: int,
    slot: SlotView | None = None,
    *,
    stopping: bool = False,
    is_replacement: bool = False,
    is_retiring: bool = False,
    running: int = 3,
    now: float = NOW,
) -> ExitAction:
    return slots.decide_exit(
        slot if slot is not None else _view(),
        code,
        now,
        stopping=stopping,
        is_replacement=is_replacement,
        is_retiring=is_retiring,
        running_slots=running,
    )


def test_the_supervisor_exports_the_crash_limits() -> None:
    assert (SUPERVISOR_CRASH_LIMIT, SUPERVISOR_CRASH_WINDOW) == (CRASH_LIMIT, CRASH_WINDOW)
    assert (CRASH_LIMIT, CRASH_WINDOW) == (5, 60.0)


@pytest.mark.parametrize("situation", list(SITUATIONS))
@pytest.mark.parametrize("code", CODES)
def test_exit_code_by_situation(code: int, situation: str) -> None:
    given = dict(SITUATIONS[situation])
    reason = str(given.pop("reason", "recycle" if given["is_replacement"] else "start"))
    slot = _view(spawn_reason=reason, replaced_pid=70 if given["is_replacement"] else None)
    action = _decide(code, slot, **given)  # type: ignore[arg-type]
    kind, exit_code, level, text = EXPECTED[situation][code]
    assert action.kind is kind
    assert action.exit_code == exit_code
    if kind is ExitKind.SUCCESSOR_ENDED:
        assert action.logs == ()
        return
    assert action.logs[0].level is level
    assert text in action.logs[0].text()
    if kind is ExitKind.RESPAWN:
        assert action.delay == pytest.approx(0.1)
        assert action.spawn_reason == "crash"
        assert action.crashes == (NOW,)
    else:
        assert action.delay is None
        assert action.crashes == ()


def test_a_replacement_failure_names_the_old_worker() -> None:
    slot = _view(SlotState.STARTING, spawn_reason="recycle", replaced_pid=70)
    action = _decide(1, slot, is_replacement=True)
    assert action.logs[0].text() == (
        "the successor of worker 4 (pid 70) did not start (exit 1 (GENERIC)); keeping the old one"
    )


def test_a_failed_reload_logs_the_traceback_on_lines_of_its_own() -> None:
    slot = _view(SlotState.STARTING, spawn_reason="reload", failure="boom", traceback="Tb\n")
    action = _decide(3, slot, is_replacement=True)
    assert action.logs[0].text() == (
        "reload failed: the new worker 4 did not start (exit 3 (APP_FAILED): boom); "
        "keeping the old workers\nTb"
    )


@pytest.mark.parametrize("code", [2, 3])
@pytest.mark.parametrize("running", [1, 2])
def test_usage_and_app_failures_stop_the_server_with_their_code(code: int, running: int) -> None:
    slot = _view(SlotState.STARTING, failure="no app", traceback="Traceback\n  x\n")
    action = _decide(code, slot, running=running)
    assert (action.kind, action.exit_code, action.cannot_start) == (
        ExitKind.STOP_SERVER,
        code,
        None,
    )
    (line,) = action.logs
    assert line.level is Level.FATAL
    assert line.text().endswith("; stopping the server\nTraceback\n  x")


@pytest.mark.parametrize(
    ("code", "errno_name"), [(42, "EADDRINUSE"), (43, "EACCES"), (44, "EMFILE")]
)
def test_the_last_slot_stopping_on_a_bind_error_names_the_errno(code: int, errno_name: str) -> None:
    crashes = (NOW - 4, NOW - 3, NOW - 2, NOW - 1) if code == 42 else ()
    slot = _view(SlotState.STARTING, failure="cannot bind", crashes=crashes)
    action = _decide(code, slot, running=1)
    assert action.kind is ExitKind.STOP_SERVER
    assert action.exit_code == code
    assert action.cannot_start == slots.CannotStart("cannot bind", errno_name)
    assert [line.level for line in action.logs] == [Level.WARNING]


def test_the_last_slot_in_a_crash_loop_stops_the_server_with_exit_1() -> None:
    slot = _view(SlotState.STARTING, crashes=(NOW - 40, NOW - 30, NOW - 20, NOW - 10))
    action = _decide(9, slot, running=1)
    assert (action.kind, action.exit_code, action.cannot_start) == (
        ExitKind.STOP_SERVER,
        1,
        None,
    )
    warning, fatal = action.logs
    assert warning.text() == "worker 4 failed 5 times within 60 s (last: exit 9); not restarting it"
    assert fatal.level is Level.FATAL
    assert fatal.text() == (
        "no worker can run (every slot failed 5 times within 60 s; last: exit 9); stopping"
    )


# -- backoff and crash window ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("crash_count", "delay"),
    [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6), (6, 3.2), (7, 5.0), (8, 5.0), (20, 5.0)],
)
def test_backoff_doubles_from_a_tenth_up_to_five_seconds(crash_count: int, delay: float) -> None:
    assert slots.backoff(crash_count) == pytest.approx(delay)


@pytest.mark.parametrize(("earlier", "delay"), [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8)])
def test_each_crash_within_the_window_doubles_the_respawn_delay(earlier: int, delay: float) -> None:
    crashes = tuple(NOW - 10 * (earlier - index) for index in range(earlier))
    action = _decide(1, _view(crashes=crashes))
    assert action.kind is ExitKind.RESPAWN
    assert action.delay == pytest.approx(delay)
    assert action.crashes == (*crashes, NOW)
    assert action.logs[0].text() == f"worker 4: exit 1 (GENERIC); restarting it in {delay:.1f} s"


def test_the_fifth_crash_within_the_window_stops_the_slot() -> None:
    crashes = (NOW - 59, NOW - 30, NOW - 20, NOW - 1)
    action = _decide(-9, _view(crashes=crashes))
    assert action.kind is ExitKind.STOP_SLOT
    assert action.crashes == (*crashes, NOW)
    assert "failed 5 times within 60 s (last: killed by SIGKILL); not restarting it" in (
        action.logs[0].text()
    )


def test_crashes_older_than_the_window_are_forgotten() -> None:
    old = (NOW - 200, NOW - 100, NOW - 61, NOW - 60.5)
    action = _decide(1, _view(crashes=old))
    assert action.kind is ExitKind.RESPAWN
    assert action.crashes == (NOW,)
    assert action.delay == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("crashes", "kept"),
    [
        ((), (NOW,)),
        ((NOW - CRASH_WINDOW,), (NOW - CRASH_WINDOW, NOW)),
        ((NOW - CRASH_WINDOW - 0.001,), (NOW,)),
        ((NOW - 90, NOW - 30, NOW - 5), (NOW - 30, NOW - 5, NOW)),
    ],
)
def test_record_crash_keeps_the_window(crashes: tuple[float, ...], kept: tuple[float, ...]) -> None:
    assert slots.record_crash(crashes, NOW) == kept


def test_a_hung_worker_is_respawned_for_its_hang() -> None:
    for state in (SlotState.HUNG, SlotState.HUNG_DUMPED, SlotState.HUNG_KILLED):
        action = _decide(-9, _view(state))
        assert (action.kind, action.spawn_reason) == (ExitKind.RESPAWN, "hang")


# -- exit descriptions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "state", "failure", "text"),
    [
        (0, SlotState.READY, None, "exit 0 (OK)"),
        (1, SlotState.READY, "oops", "exit 1 (GENERIC): oops"),
        (7, SlotState.READY, None, "exit 7"),
        (44, SlotState.STARTING, None, "exit 44 (TOO_MANY_FILES)"),
        (-15, SlotState.READY, None, "killed by SIGTERM"),
        (-9, SlotState.TIMED_OUT, None, "killed by SIGKILL (startup timeout)"),
        (-200, SlotState.READY, None, "killed by signal 200"),
    ],
)
def test_describe_exit(code: int, state: SlotState, failure: str | None, text: str) -> None:
    assert slots.describe_exit(code, _view(state, failure=failure)) == text


# -- deadlines -------------------------------------------------------------------------------


def test_startup_timeout() -> None:
    step = slots.started(NOW, 20.0)
    assert step == Step(SlotState.STARTING, NOW + 20.0)
    assert not slots.is_due(step.deadline, NOW + 19.999)
    assert slots.is_due(step.deadline, NOW + 20.0)
    killed = slots.on_deadline(_view(step.state), NOW + 20.0, 20.0)
    assert (killed.state, killed.deadline, killed.signal) == (
        SlotState.TIMED_OUT,
        None,
        signal.SIGKILL,
    )
    assert killed.log is not None
    assert killed.log.text() == "worker 4 not ready within 20 s (--startup-timeout); killing it"


def test_ready_clears_the_startup_deadline_but_not_a_kill() -> None:
    assert slots.became_ready(SlotState.STARTING, NOW + 20) == Step(SlotState.READY)
    assert slots.became_ready(SlotState.TIMED_OUT, None) == Step(SlotState.TIMED_OUT)
    assert slots.became_ready(SlotState.RETIRING, NOW + 5) == Step(SlotState.RETIRING, NOW + 5)


def test_a_waiting_slot_starts_its_worker_at_its_deadline() -> None:
    step = slots.on_deadline(_view(SlotState.WAITING), NOW, 20.0)
    assert step == Step(SlotState.IDLE, start=True)


@pytest.mark.parametrize("state", list(SlotState))
def test_stopping_cancels_only_a_respawn(state: SlotState) -> None:
    step = slots.cancel_respawn(state, NOW + 1)
    if state is SlotState.WAITING:
        assert step == Step(SlotState.IDLE)
    else:
        assert step == Step(state, NOW + 1)


@pytest.mark.parametrize(
    "state", [SlotState.IDLE, SlotState.TIMED_OUT, SlotState.READY, SlotState.STOPPED]
)
def test_states_without_a_timer_do_nothing_at_a_deadline(state: SlotState) -> None:
    assert slots.on_deadline(_view(state), NOW, 20.0) == Step(state)


def test_is_due() -> None:
    assert not slots.is_due(None, NOW)
    assert not slots.is_due(NOW + 0.001, NOW)
    assert slots.is_due(NOW, NOW)


# -- hang escalation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "age", "hung"),
    [
        (SlotState.READY, 9.99, False),
        (SlotState.READY, 10.0, True),
        (SlotState.RETIRING, 30.0, True),
        (SlotState.STARTING, 30.0, False),
        (SlotState.HUNG, 30.0, False),
        (SlotState.HUNG_DUMPED, 30.0, False),
        (SlotState.TIMED_OUT, 30.0, False),
    ],
)
def test_a_stale_heartbeat_starts_the_escalation(state: SlotState, age: float, hung: bool) -> None:
    step = slots.hang_detected(_view(state), NOW, age, 10.0)
    if not hung:
        assert step is None
        return
    assert step is not None
    assert (step.state, step.deadline, step.signal) == (
        SlotState.HUNG,
        NOW + HANG_DUMP_WAIT,
        signal.SIGUSR1,
    )
    assert step.log is not None and step.log.level is Level.ERROR
    assert step.log.text().startswith(
        f"worker 4 (pid 77) is hung: its hub loop has not run for {age:.1f} s"
    )


def test_hang_escalation_without_a_dump() -> None:
    first = slots.hang_detected(_view(), NOW, 12.0, 10.0)
    assert first is not None and first.deadline == NOW + 3.0
    second = slots.on_deadline(_view(first.state), NOW + 3.0, 20.0)
    assert (second.state, second.deadline, second.signal) == (
        SlotState.HUNG_DUMPED,
        NOW + 3.0 + FAULTHANDLER_WAIT,
        signal.SIGUSR2,
    )
    assert second.log is not None and "did not log its tracebacks; asking faulthandler" in (
        second.log.text()
    )
    third = slots.on_deadline(_view(second.state), NOW + 3.5, 20.0)
    assert (third.state, third.deadline, third.signal) == (
        SlotState.HUNG_KILLED,
        None,
        signal.SIGKILL,
    )
    assert third.log is not None and third.log.text() == "worker 4 (pid 77) hung: killing it"


@pytest.mark.parametrize("state", [SlotState.HUNG, SlotState.HUNG_DUMPED])
def test_a_dumped_message_skips_to_the_kill(state: SlotState) -> None:
    step = slots.on_dumped(state, NOW + 3.0, NOW + 1.0)
    assert step == Step(SlotState.HUNG_DUMPED, NOW + 1.0)
    assert slots.is_due(step.deadline, NOW + 1.0)
    kill = slots.on_deadline(_view(step.state), NOW + 1.0, 20.0)
    assert (kill.state, kill.signal) == (SlotState.HUNG_KILLED, signal.SIGKILL)


@pytest.mark.parametrize(
    "state", [SlotState.READY, SlotState.STARTING, SlotState.RETIRING, SlotState.HUNG_KILLED]
)
def test_a_dumped_message_from_a_worker_not_hung_changes_nothing(state: SlotState) -> None:
    assert slots.on_dumped(state, NOW + 7, NOW) == Step(state, NOW + 7)


# -- retiring --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "drain_message"), [(SlotState.READY, True), (SlotState.STARTING, False)]
)
def test_retire_deadline(state: SlotState, drain_message: bool) -> None:
    step, drain = slots.retire(state, None, NOW, 35.0)
    assert step == Step(SlotState.RETIRING, NOW + 35.0 + SHUTDOWN_HOOKS_GRACE)
    assert drain is drain_message
    kill = slots.on_deadline(_view(SlotState.RETIRING), NOW + 40.0, 20.0)
    assert (kill.state, kill.deadline, kill.signal) == (SlotState.RETIRING, None, signal.SIGKILL)
    assert kill.log is not None
    assert kill.log.text() == "worker 4 (pid 77) did not finish draining in time; killing it"


def test_a_hung_worker_retired_keeps_its_escalation() -> None:
    step, drain = slots.retire(SlotState.HUNG, NOW + 2, NOW, 35.0)
    assert (step, drain) == (Step(SlotState.HUNG, NOW + 2), True)


# -- rolling replacements --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "stopping", "being_replaced", "queue", "wanted"),
    [
        (True, False, False, (), True),
        (True, False, False, ((2, "reload"),), True),
        (True, False, False, ((4, "reload"),), False),
        (False, False, False, (), False),
        (True, True, False, (), False),
        (True, False, True, (), False),
    ],
)
def test_recycle_wanted(
    member: bool,
    stopping: bool,
    being_replaced: bool,
    queue: slots.ReplaceQueue,
    wanted: bool,
) -> None:
    assert (
        slots.recycle_wanted(
            queue, 4, member=member, stopping=stopping, being_replaced=being_replaced
        )
        is wanted
    )


def test_next_replacement_skips_workers_that_cannot_be_replaced() -> None:
    queue: slots.ReplaceQueue = ((1, "reload"), (2, "reload"), (3, "recycle"))
    assert slots.next_replacement(queue, {2, 3}) == ((2, "reload"), ((3, "recycle"),))
    assert slots.next_replacement(queue, {1}) == ((1, "reload"), ((2, "reload"), (3, "recycle")))
    assert slots.next_replacement(queue, set()) == (None, ())
    assert slots.next_replacement((), {1}) == (None, ())


def test_reload_queue_replaces_a_previous_reload_after_queued_recycles() -> None:
    queue: slots.ReplaceQueue = ((3, "reload"), (2, "recycle"), (4, "reload"))
    assert slots.queue_reload(queue, [1, 2]) == ((2, "recycle"), (1, "reload"), (2, "reload"))
    assert slots.without_reloads(queue) == ((2, "recycle"),)
    assert slots.without_worker(queue, 3) == ((2, "recycle"), (4, "reload"))


@pytest.mark.parametrize(
    ("reloading", "replacing", "queue", "retiring", "complete"),
    [
        (True, False, (), 0, True),
        (False, False, (), 0, False),
        (True, True, (), 0, False),
        (True, False, ((1, "reload"),), 0, False),
        (True, False, (), 1, False),
    ],
)
def test_a_reload_is_complete_once_every_old_worker_exited(
    reloading: bool, replacing: bool, queue: slots.ReplaceQueue, retiring: int, complete: bool
) -> None:
    result = slots.reload_complete(
        reloading=reloading, replacing=replacing, queue=queue, retiring=retiring
    )
    assert result is complete


def test_a_full_reload_sequence() -> None:
    """Three workers reloaded one at a time; the second one's successor fails: the reload stops
    (its queue is dropped) and is not complete; a recycle queued meanwhile still runs."""
    queue = slots.queue_reload((), [1, 2, 3])
    first, queue = slots.next_replacement(queue, {1, 2, 3})
    assert first == (1, "reload")
    queue = (*queue, (3, "recycle"))
    second, queue = slots.next_replacement(queue, {1, 2, 3})
    assert second == (2, "reload")
    failed = _decide(3, _view(SlotState.STARTING, spawn_reason="reload"), is_replacement=True)
    assert failed.kind is ExitKind.RELOAD_FAILED
    queue = slots.without_reloads(queue)
    assert queue == ((3, "recycle"),)
    assert not slots.reload_complete(reloading=False, replacing=False, queue=queue, retiring=0)
    third, queue = slots.next_replacement(queue, {1, 2, 3})
    assert (third, queue) == ((3, "recycle"), ())
