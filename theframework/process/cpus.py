"""How many CPUs this process may use: ``--workers 0`` starts one worker per CPU.

The count is the smallest of the CPUs the scheduler lets this process run on
(``os.sched_getaffinity``) and the CPU quota of its control group, rounded up: a container
limited to 1.5 CPUs on a 64-core host gets 2 workers, not 64. The quota is read from cgroup v2
(``cpu.max``: "max 100000" or "150000 100000") and cgroup v1 (``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``, -1 for none), for the process's own group and each group above it (a
parent's limit binds its children too). A file that cannot be read or parsed is ignored with a
debug log line: the affinity count stands.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "CGROUP_ROOT_VARIABLE", "available_cpus", "cgroup_cpu_quota"]

logger = logging.getLogger("theframework.supervisor")

# Where the cgroup file systems are mounted, and the variable that moves it (for tests).
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_ROOT_VARIABLE = "THEFRAMEWORK_CGROUP_ROOT"
MEMBERSHIP_FILE = "/proc/self/cgroup"

# cgroup v1 mounts the cpu controller under one of these names.
_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read(path: Path) -> str | None:
    """The file's text, or None (debug line) when it cannot be read; a missing file is silent."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        logger.debug("CPU quota: cannot read %s (%s); ignored", path, error)
        return None


def _v2_quota(directory: Path) -> float | None:
    """The quota in CPUs from ``directory/cpu.max``, or None (none, or an unusable file)."""
    path = directory / "cpu.max"
    text = _read(path)
    if text is None:
        return None
    fields = text.split()
    try:
        if len(fields) not in (1, 2):
            raise ValueError(text)
        period = int(fields[1]) if len(fields) == 2 else 100000
        if fields[0] == "max":
            return None
        quota = int(fields[0])
        if quota <= 0 or period <= 0:
            raise ValueError(text)
    except ValueError:
        logger.debug("CPU quota: cannot parse %s (%r); ignored", path, text)
        return None
    return quota / period


def _v1_quota(directory: Path) -> float | None:
    """The quota in CPUs from ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in ``directory``."""
    quota_text = _read(directory / "cpu.cfs_quota_us")
    period_text = _read(directory / "cpu.cfs_period_us")
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        logger.debug(
            "CPU quota: cannot parse %s (%r / %r); ignored", directory, quota_text, period_text
        )
        return None
    if quota < 0:  # -1: no limit
        return None
    if quota == 0 or period <= 0:
        logger.debug("CPU quota: %s has quota %d, period %d; ignored", directory, quota, period)
        return None
    return quota / period


def _groups(membership: str) -> tuple[str | None, str | None]:
    """The process's v2 group path and v1 cpu group path from /proc/self/cgroup's text."""
    v2: str | None = None
    v1: str | None = None
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, group = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = group
        elif "cpu" in controllers.split(","):
            v1 = group
    return v2, v1


def _lineage(mount: Path, group: str | None) -> list[Path]:
    """``mount/group`` and every directory above it up to ``mount`` (existing ones only)."""
    directories = [mount]
    if group:
        current = mount
        for part in Path(group).parts:
            if part == "/":
                continue
            current = current / part
            directories.append(current)
    return [directory for directory in directories if directory.is_dir()]


def cgroup_cpu_quota(
    root: str | os.PathLike[str] = CGROUP_ROOT, membership_file: str = MEMBERSHIP_FILE
) -> float | None:
    """The tightest CPU quota (in CPUs, may be fractional) of this process's control groups
    under ``root``, or None when there is none. Never raises."""
    root_path = Path(root)
    membership = _read(Path(membership_file)) or ""
    v2_group, v1_group = _groups(membership)
    quotas: list[float] = []
    for directory in _lineage(root_path, v2_group):
        quota = _v2_quota(directory)
        if quota is not None:
            quotas.append(quota)
    for name in _V1_CPU_MOUNTS:
        mount = root_path / name
        if not mount.is_dir():
            continue
        for directory in _lineage(mount, v1_group):
            quota = _v1_quota(directory)
            if quota is not None:
                quotas.append(quota)
        break
    return min(quotas) if quotas else None


def available_cpus(
    root: str | os.PathLike[str] | None = None, membership_file: str = MEMBERSHIP_FILE
) -> int:
    """The CPUs this process may use: min(affinity, quota rounded up), at least 1. ``root``
    defaults to $THEFRAMEWORK_CGROUP_ROOT, else /sys/fs/cgroup."""
    if root is None:
        root = os.environ.get(CGROUP_ROOT_VARIABLE) or CGROUP_ROOT
    affinity = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(root, membership_file)
    count = affinity if quota is None else min(affinity, math.ceil(quota))
    logger.debug("CPUs: %d (affinity %d, cgroup quota %s)", count, affinity, quota)
    return max(1, count)
