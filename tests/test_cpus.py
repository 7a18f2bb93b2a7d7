"""``--workers 0``: the CPU count from the affinity and the cgroup CPU quota (fake cgroup trees
in a temporary directory), and a real server started with a fake quota."""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get

from theframework.process.cpus import CGROUP_ROOT_VARIABLE, available_cpus, cgroup_cpu_quota

AFFINITY = len(os.sched_getaffinity(0))


def _tree(tmp_path: Path, files: dict[str, str], membership: str = "0::/\n") -> tuple[Path, str]:
    """A fake cgroup mount at tmp_path/cgroup holding ``files`` and a /proc/self/cgroup file."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    membership_file = tmp_path / "membership"
    membership_file.write_text(membership)
    return root, str(membership_file)


@pytest.mark.parametrize(
    ("text", "quota"),
    [
        ("max 100000\n", None),
        ("max\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000\n", 1.5),
        ("50000 100000\n", 0.5),
        ("100000\n", 1.0),  # the period defaults to 100000
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, text: str, quota: float | None) -> None:
    root, membership = _tree(tmp_path, {"cpu.max": text})
    assert cgroup_cpu_quota(root, membership) == quota
    expected = AFFINITY if quota is None else max(1, min(AFFINITY, math.ceil(quota)))
    assert available_cpus(root, membership) == expected


def test_quota_below_the_affinity_wins_rounded_up(tmp_path: Path) -> None:
    root, membership = _tree(tmp_path, {"cpu.max": "50000 100000\n"})
    assert available_cpus(root, membership) == 1  # 0.5 CPU: one worker, never zero
    root, membership = _tree(tmp_path / "wide", {"cpu.max": f"{AFFINITY * 400000} 100000\n"})
    assert available_cpus(root, membership) == AFFINITY  # a quota above the affinity


def test_the_tightest_group_on_the_way_up_wins(tmp_path: Path) -> None:
    root, membership = _tree(
        tmp_path,
        {
            "cpu.max": "max 100000\n",
            "system.slice/cpu.max": "150000 100000\n",
            "system.slice/app.service/cpu.max": "300000 100000\n",
        },
        membership="0::/system.slice/app.service\n",
    )
    assert cgroup_cpu_quota(root, membership) == 1.5


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    }
    root, membership = _tree(tmp_path, files, membership="2:cpu,cpuacct:/\n1:name=systemd:/\n")
    assert cgroup_cpu_quota(root, membership) == 2.5
    unlimited = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    root, membership = _tree(tmp_path / "none", unlimited, membership="3:cpu:/\n")
    assert cgroup_cpu_quota(root, membership) is None


@pytest.mark.parametrize("text", ["garbage\n", "", "1 2 3\n", "-5 100000\n", "100 0\n", "\xff"])
def test_garbage_falls_back_to_the_affinity_with_a_debug_line(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    root, membership = _tree(tmp_path, {})
    (root / "cpu.max").write_bytes(text.encode("latin-1"))
    with caplog.at_level(logging.DEBUG, logger="theframework.supervisor"):
        assert available_cpus(root, membership) == AFFINITY
    assert any("CPU quota: cannot" in record.getMessage() for record in caplog.records)


def test_unreadable_file_and_missing_tree_fall_back_to_the_affinity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, membership = _tree(tmp_path, {})
    (root / "cpu.max").mkdir()  # reading a directory fails with IsADirectoryError
    with caplog.at_level(logging.DEBUG, logger="theframework.supervisor"):
        assert available_cpus(root, membership) == AFFINITY
    assert any("CPU quota: cannot read" in record.getMessage() for record in caplog.records)
    assert available_cpus(tmp_path / "absent", str(tmp_path / "absent-membership")) == AFFINITY


@pytest.mark.skipif(AFFINITY < 2, reason="needs 2 CPUs to tell the quota from the affinity")
def test_workers_zero_follows_the_quota_in_a_real_server(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("50000 100000\n")  # half a CPU: one worker
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "0", "--port", "0",
        environment={CGROUP_ROOT_VARIABLE: str(root)},
    ) as server:  # fmt: skip
        port = server.port()
        assert "(1 workers" in server.output
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    (root / "cpu.max").write_text("max 100000\n")
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "0", "--port", "0",
        environment={CGROUP_ROOT_VARIABLE: str(root)},
    ) as server:  # fmt: skip
        server.port()
        assert f"({AFFINITY} workers" in server.output
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
