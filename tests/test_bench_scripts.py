"""The benchmark scripts keep working: each runs here in its quick mode against theframework
only (real servers, real wrk), and its report is checked against what really happened."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


def test_zero_loss_quick_runs_each_event_and_counts_every_connection(tmp_path: Path) -> None:
    # wrk is a test requirement installed by scripts/bootstrap.sh: missing, the test fails.
    assert shutil.which("wrk"), "wrk is not installed (scripts/bootstrap.sh installs it)"
    output = tmp_path / "zero_loss.md"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "zero_loss.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    raw: dict[str, Any] = json.loads(output.with_suffix(".json").read_text())
    runs = {run["event"]: run for run in raw["runs"]}
    assert sorted(runs) == ["kill", "reload", "scale-down"]
    for run in runs.values():
        assert run["server"] == "theframework"
        assert run["events"] == 2
        # the pids before the first event, then after each one
        assert len(run["pids"]) == 3
        # every connection is counted: answered + wrk's connect/read/write errors, as wrk said
        wrk = run["wrk"]
        total = re.search(r"(\d+) requests in", wrk)
        assert total, wrk
        answered = int(total[1])
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", wrk)
        failed = sum(map(int, errors.groups())) if errors else 0
        assert run["counts"]["answered"] == answered > 1000
        assert run["failed"] == failed
        assert run["connections"] == answered + failed
    # a reload replaces every worker; kill -9 replaces exactly the oldest one
    before, first, second = (set(pids) for pids in runs["reload"]["pids"])
    assert len(before) == len(first) == len(second) == 2
    assert not before & first and not first & second
    before, first, second = (set(pids) for pids in runs["kill"]["pids"])
    assert len(before - first) == 1 and len(first - second) == 1 and len(second) == 2
    assert (first - second) <= before  # the oldest: the other original, not the one just started
    # scale-down: 4 workers, then 3, then 2
    assert [len(pids) for pids in runs["scale-down"]["pids"]] == [4, 3, 2]
    # the table has the row and every event, with the figures of the runs
    table = output.read_text()
    row = next(line for line in table.splitlines() if line.startswith("| theframework |"))
    for run in runs.values():
        share = run["failed"] * 100_000 / run["connections"]
        assert f"**{share:.1f}** ({run['failed']:,} of {run['connections']:,}; 1 runs" in row
    assert "| server | reload | kill | scale-down |" in table
