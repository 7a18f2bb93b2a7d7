"""The config file's server hooks in real servers, under fork, spawn and forkserver.

The config file tests/config_files/recording.py appends one JSON line per hook call, with the
pid that ran it, to HOOKS_RECORD; each test reads that record once the server has exited and
checks that every hook ran the right number of times, in the right process, with the right
arguments; HOOKS_RAISE makes hooks raise. Servers are real ``python -m theframework`` processes
on loopback (tests/prefork_apps/harness.py), waited on through their log lines.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from prefork_apps.harness import TESTS_DIRECTORY, ServerProcess, http_get

pytestmark = pytest.mark.timeout(120)

RECORDING = str(TESTS_DIRECTORY / "config_files" / "recording.py")
START_METHODS = ("fork", "spawn", "forkserver")


def _write(directory: Path, text: str, name: str = "theframework.conf.py") -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _calls(records: list[dict[str, Any]], hook: str) -> list[dict[str, Any]]:
    return [record for record in records if record["hook"] == hook]


def _stop(server: ServerProcess) -> int:
    server.send_signal(signal.SIGTERM)
    return server.wait()


@pytest.mark.parametrize("start_method", START_METHODS)
def test_every_hook_runs_once_in_the_right_process(tmp_path: Path, start_method: str) -> None:
    """(With --access-log: post_request shares the after-response callback with it.)"""
    record = tmp_path / "record.jsonl"
    with ServerProcess(
        "prefork_apps.pid_app:app",
        "--workers", "2", "--port", "0", "--start-method", start_method, "--config", RECORDING,
        "--access-log", environment={"HOOKS_RECORD": str(record)},
    ) as server:  # fmt: skip
        port = server.port()
        status, _, body = http_get(port, "/")
        assert status == 200
        served_by = int(body)
        workers = server.worker_pids()
        server.wait_for_line(r'theframework\.access: 127\.0\.0\.1 "GET / HTTP/1\.1" 200 ')
        assert _stop(server) == 0
    supervisor = server.pid
    records = _records(record)
    names = [entry["hook"] for entry in records]
    assert names[0] == "on_starting" and names[-1] == "on_exit", names

    def only(hook: str) -> dict[str, Any]:
        calls = _calls(records, hook)
        assert len(calls) == 1, (hook, records)
        return calls[0]

    assert only("on_starting") == {
        "hook": "on_starting", "pid": supervisor, "args": [2, start_method]
    }  # fmt: skip
    assert only("when_ready") == {"hook": "when_ready", "pid": supervisor, "args": [2]}
    assert only("on_exit") == {"hook": "on_exit", "pid": supervisor, "args": [2]}
    assert _calls(records, "on_reload") == []
    # when_ready comes after both workers reported ready.
    assert names.index("when_ready") > max(
        index for index, name in enumerate(names) if name == "worker_ready"
    )
    for hook in ("worker_ready", "worker_exit"):  # in the supervisor, once per worker
        calls = _calls(records, hook)
        assert {call["pid"] for call in calls} == {supervisor}, hook
        assert sorted(call["args"][0] for call in calls) == [1, 2], hook
    assert sorted(call["args"] for call in _calls(records, "worker_exit")) == [[1, 0], [2, 0]]
    for hook in ("worker_start", "worker_shutdown"):  # in each worker, with its own id
        calls = _calls(records, hook)
        assert {call["args"][0]: call["pid"] for call in calls} == workers, hook
        assert supervisor not in {call["pid"] for call in calls}
    # Each worker's worker_start ran before it was ready, its worker_shutdown after serving.
    assert only("pre_request") == {"hook": "pre_request", "pid": served_by, "args": ["/"]}
    assert only("post_request") == {
        "hook": "post_request", "pid": served_by, "args": ["/", 200, True]
    }  # fmt: skip
    assert names.index("pre_request") < names.index("post_request")


def test_single_process_runs_its_hooks_in_that_process(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    with ServerProcess(
        "prefork_apps.pid_app:app", "--port", "0", "--config", RECORDING,
        environment={"HOOKS_RECORD": str(record)},
    ) as server:  # fmt: skip
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        status, _, body = http_get(port, "/")
        assert (status, int(body)) == (200, server.pid)
        assert _stop(server) == 0
    records = _records(record)
    assert {entry["pid"] for entry in records} == {server.pid}
    assert [(entry["hook"], entry["args"]) for entry in records] == [
        ("on_starting", [1, "auto"]),
        ("worker_start", [1]),
        ("worker_ready", [1]),
        ("when_ready", [1]),
        ("pre_request", ["/"]),
        ("post_request", ["/", 200, True]),
        ("worker_shutdown", [1]),
        ("on_exit", [1]),
    ]


def test_on_reload_runs_in_the_supervisor_and_new_workers_start_again(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--config", RECORDING,
        environment={"HOOKS_RECORD": str(record)},
    ) as server:  # fmt: skip
        server.wait_ready()
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload complete: 2 workers")
        assert _stop(server) == 0
    records = _records(record)
    reloads = _calls(records, "on_reload")
    assert reloads == [{"hook": "on_reload", "pid": server.pid, "args": [2]}]
    # Two workers, each replaced once: four starts, four ready reports, four exits.
    for hook in ("worker_start", "worker_ready", "worker_exit", "worker_shutdown"):
        assert len(_calls(records, hook)) == 4, hook
    assert len(_calls(records, "when_ready")) == 1


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("hook", ["on_starting", "worker_start"])
def test_a_raising_start_hook_stops_the_start_with_exit_3(
    tmp_path: Path, start_method: str, hook: str
) -> None:
    record = tmp_path / "record.jsonl"
    with ServerProcess(
        "prefork_apps.pid_app:app",
        "--workers", "2", "--port", "0", "--start-method", start_method, "--config", RECORDING,
        environment={"HOOKS_RECORD": str(record), "HOOKS_RAISE": hook},
        expected_tracebacks=(f"RuntimeError: {hook} failed on purpose",),
    ) as server:  # fmt: skip
        assert server.wait() == 3
    output = server.output
    assert f"the {hook} hook raised RuntimeError('{hook} failed on purpose')" in output
    assert f"RuntimeError: {hook} failed on purpose" in output  # the traceback
    assert "Traceback (most recent call last)" in output
    records = _records(record)
    assert _calls(records, "worker_ready") == []
    if hook == "on_starting":
        assert [entry["hook"] for entry in records] == ["on_starting"]  # no worker, no on_exit
    else:
        assert _calls(records, "on_exit") != []


@pytest.mark.parametrize("hook", ["on_starting", "worker_start"])
def test_a_raising_start_hook_stops_a_single_process_with_exit_3(tmp_path: Path, hook: str) -> None:
    record = tmp_path / "record.jsonl"
    with ServerProcess(
        "prefork_apps.pid_app:app", "--port", "0", "--config", RECORDING,
        environment={"HOOKS_RECORD": str(record), "HOOKS_RAISE": hook},
        expected_tracebacks=(f"RuntimeError: {hook} failed on purpose",),
    ) as server:  # fmt: skip
        assert server.wait() == 3
    assert f"theframework: error: the {hook} hook raised RuntimeError" in server.output
    assert f"RuntimeError: {hook} failed on purpose" in server.output
    assert "listening on" not in server.output


def test_other_raising_hooks_are_logged_and_serving_goes_on(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    raising = ["pre_request", "post_request", "worker_ready", "when_ready", "worker_shutdown"]
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--config", RECORDING,
        environment={"HOOKS_RECORD": str(record), "HOOKS_RAISE": ",".join(raising)},
        expected_tracebacks=tuple(f"RuntimeError: {hook} failed on purpose" for hook in raising),
    ) as server:  # fmt: skip
        port = server.port()
        for _ in range(2):
            status, _, _ = http_get(port, "/")
            assert status == 200
        server.wait_for_line(r"the post_request hook raised")
        assert _stop(server) == 0
    output = server.output
    for hook in raising:
        assert f"the {hook} hook raised" in output, hook
        assert f"RuntimeError: {hook} failed on purpose" in output, hook
    assert len(_calls(_records(record), "post_request")) == 2


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_wsgi_app_gets_per_worker_startup_and_shutdown(tmp_path: Path, start_method: str) -> None:
    record = tmp_path / "record.jsonl"
    with ServerProcess(
        "prefork_apps.wsgi_hooked:app",
        "--workers", "2", "--port", "0", "--start-method", start_method, "--config", RECORDING,
        environment={"HOOKS_RECORD": str(record)},
    ) as server:  # fmt: skip
        port = server.port()
        status, _, body = http_get(port, "/")
        workers = server.worker_pids()
        assert _stop(server) == 0
    assert status == 200
    worker_id, pid = (int(part) for part in body.split())
    assert workers[worker_id] == pid  # worker_start ran in this worker before the import
    records = _records(record)
    assert {"hook": "worker_shutdown", "pid": pid, "args": [worker_id]} in records
    assert {"hook": "pre_request", "pid": pid, "args": ["/"]} in records
    assert {"hook": "post_request", "pid": pid, "args": ["/", 200, True]} in records


def test_file_options_reach_a_real_server_below_the_environment(tmp_path: Path) -> None:
    """workers = 3 in the file beats WEB_CONCURRENCY=1; THEFRAMEWORK_PROC_NAME beats the file's
    proc_name (setproctitle is a test dependency)."""
    path = _write(tmp_path, "workers = 3\nproc_name = 'from-file'\nport = 0\n")
    with ServerProcess(
        "prefork_apps.pid_app:app", "--config", path,
        environment={"WEB_CONCURRENCY": "1", "THEFRAMEWORK_PROC_NAME": "from-env"},
    ) as server:  # fmt: skip
        server.wait_ready()
        assert sorted(server.worker_pids()) == [1, 2, 3]
        pid = server.worker_pids()[1]
        title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert _stop(server) == 0
    assert "from-env worker-1" in title, title


_VERSIONED = """
import json, os

def _record(hook, *arguments):
    with open(os.environ["HOOKS_RECORD"], "a", encoding="utf-8") as stream:
        stream.write(json.dumps({{"hook": hook, "pid": os.getpid(), "args": arguments}}) + "\\n")

def worker_start(worker_id):
    _record("worker_start", worker_id, "{version}")

def on_reload(config):
    _record("on_reload", "{version}")
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_sighup_runs_the_config_file_again(tmp_path: Path, start_method: str) -> None:
    """An edited file's hooks apply from the reload on (under fork too, where workers would
    otherwise inherit the old ones); a file that no longer loads refuses the reload and the old
    hooks stay."""
    record = tmp_path / "record.jsonl"
    path = _write(tmp_path, _VERSIONED.format(version="v1"))
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--config", path,
        "--start-method", start_method, environment={"HOOKS_RECORD": str(record)},
    ) as server:  # fmt: skip
        server.wait_ready()
        _write(tmp_path, _VERSIONED.format(version="v2") + "workers = 3\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload complete: 2 workers")
        assert "the config file's options changed; they apply at the next start" in server.output
        _write(tmp_path, "workers = 'broken'\n")
        mark = len(server.lines)
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(
            r"reload refused: config file .*workers must be an integer", start=mark
        )
        assert _stop(server) == 0
    records = _records(record)
    assert _calls(records, "on_reload") == [
        {"hook": "on_reload", "pid": server.pid, "args": ["v2"]}
    ]
    versions = [call["args"][1] for call in _calls(records, "worker_start")]
    assert versions == ["v1", "v1", "v2", "v2"], records
