"""The benchmark scripts in bench/ run, in their quick modes, against our servers only, so that
they cannot rot between benchmark runs. Speed is never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
DATABASE_TESTS = ("db", "queries", "fortunes", "updates")
OURS = ("theframework", "theframework-flask")


def test_database_benchmark_verifies_and_measures_ours(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """bench/database.py --quick on the session's PostgreSQL: both of our apps answer every
    endpoint as TechEmpower's rules say (checked against the database: rows, clamping of
    ``queries``, the escaped and sorted fortunes with the one added at request time, updates
    written) and are measured with no errors."""
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "database.py"),
            "--quick",
            "--servers",
            ",".join(OURS),
            "--dsn",
            postgres.dsn,
            "--results",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr
    for server in OURS:
        assert f"round 1 {server:18} answers verified" in completed.stderr, completed.stderr
    raw = json.loads((tmp_path / "database.json").read_text())
    assert raw["failed"] == {} and raw["skipped"] == {}
    for test in DATABASE_TESTS:
        for server in OURS:
            (result,) = raw["by_test"][test][server]
            assert result["requests_per_second"] > 0, (test, server, result["detail"])
            assert result["errors"] == 0 and result["non_2xx"] == 0, (test, server, result)
            assert result["p99_ms"] > 0 and result["server_cpu"] > 0, (test, server, result)
    report = (tmp_path / "database.md").read_text()
    assert "| theframework-flask |" in report and "20 updates" in report
