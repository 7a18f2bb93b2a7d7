"""The WebSocket benchmark scripts (bench/websocket_echo.py, websocket_broadcast.py,
websocket_idle.py) run end to end against theframework alone, with small counts, so that they
cannot rot: each must exit 0 and print a table whose figures show the load really went through
(round trips, deliveries, live idle connections). Speeds are never asserted.

The C++ client (build/bench/ws_client) is built on first use by the scripts themselves
(bench/build_tools.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def run_script(script: str, *arguments: str, tmp_path: Path) -> str:
    output = tmp_path / "table.md"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = output.read_text()
    assert table.strip() in done.stdout
    return table


def row_cells(table: str, first_cell: str) -> list[str]:
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == first_cell or cells[0].startswith(first_cell + ","):
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{table}")


def number(cell: str) -> float:
    match = re.match(r"[\d,.]+", cell)
    assert match is not None, cell
    return float(match.group(0).replace(",", ""))


def test_websocket_echo_quick(tmp_path: Path) -> None:
    table = run_script(
        "websocket_echo.py", "--servers", "theframework", "--clients", "4", "--seconds", "0.5",
        "--warmup", "0.2", "--rounds", "1", tmp_path=tmp_path,
    )  # fmt: skip
    assert "4 connections" in table
    rate, ratio, cpu = row_cells(table, "theframework")[1:4]
    assert number(rate) > 0
    assert ratio == "1.00x"
    assert cpu.endswith("µs") and number(cpu) > 0


def test_websocket_broadcast_quick(tmp_path: Path) -> None:
    table = run_script(
        "websocket_broadcast.py", "--servers", "theframework", "--clients", "20", "--seconds",
        "0.5", "--warmup", "0.2", "--rounds", "1", tmp_path=tmp_path,
    )  # fmt: skip
    assert "to 20 members" in table
    rate, _ratio, p50, p99, cpu = row_cells(table, "theframework")[1:6]
    assert number(rate) > 0
    assert 0 < number(p50) <= number(p99)
    assert number(cpu) > 0


def test_websocket_idle_quick(tmp_path: Path) -> None:
    table = run_script(
        "websocket_idle.py", "--connections", "300", "--rows",
        "theframework,theframework-listen,theframework-deflate-nct", tmp_path=tmp_path,
    )  # fmt: skip
    for row in ("theframework", "theframework-listen", "theframework-deflate-nct"):
        cells = row_cells(table, row)
        assert cells[1] == "300"
        assert cells[2] == "300"  # every connection still echoes after the measurement
        assert cells[3] == "1"  # one worker: 300 connections fit under the file limit
        assert cells[4] == "300"


def test_websocket_idle_spread_over_workers_and_client_processes(tmp_path: Path) -> None:
    """The path that reaches 100,000: the server's connections spread over its workers (read
    from /proc per worker), the client's over processes, each probing its own share."""
    table = run_script(
        "websocket_idle.py", "--connections", "400", "--rows", "theframework",
        "--workers", "2", "--client-processes", "2", tmp_path=tmp_path,
    )  # fmt: skip
    assert "the client's over 2 processes" in table
    cells = row_cells(table, "theframework")
    assert cells[1] == "400"
    assert cells[2] == "400"  # both client processes' connections echo
    assert cells[3] == "2"
    per_worker = [number(count) for count in cells[4].split(" / ")]
    assert len(per_worker) == 2  # both workers took connections
    assert sum(per_worker) == 400
