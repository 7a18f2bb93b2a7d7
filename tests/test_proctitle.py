"""Process titles without setproctitle: the kernel keeps 15 bytes of a name, so the supervisor
and its workers use short forms that stay apart ("tf:master", "tf:w1")."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess

from theframework.process.proctitle import short_title

HIDE_SETPROCTITLE = str(Path(__file__).parent / "no_setproctitle")


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@pytest.mark.parametrize(
    ("proc_name", "role", "short"),
    [
        ("theframework", "master", "tf:master"),
        ("theframework", "w1", "tf:w1"),
        ("myapp", "w12", "myapp:w12"),
        ("a-very-long-service-name", "master", "a-very-l:master"),
        ("a-very-long-service-name", "w123", "a-very-lon:w123"),
    ],
)
def test_short_titles_keep_the_role(proc_name: str, role: str, short: str) -> None:
    assert short_title(proc_name, role) == short
    assert len(short.encode()) <= 15


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_without_setproctitle_master_and_workers_have_distinct_short_names(
    start_method: str,
) -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0",
        "--start-method", start_method,
        environment={"PYTHONPATH": HIDE_SETPROCTITLE},
    ) as server:  # fmt: skip
        server.wait_ready()
        assert _comm(server.pid) == "tf:master"
        workers = server.worker_pids()
        assert {_comm(pid) for pid in workers.values()} == {"tf:w1", "tf:w2"}
        assert _comm(workers[1]) == "tf:w1"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
