"""Test-side runner of the monkey scripts: each runs in a fresh interpreter (patching is
process-wide and cannot be undone) and prints one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent


def run_script(name: str, *arguments: str, timeout: float = 90.0) -> dict[str, Any]:
    """Runs tests/monkey_scripts/<name> with ``arguments``; returns its JSON report. Fails with
    the script's stderr when it exits non-zero or prints no report."""
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=SCRIPTS,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    lines = completed.stdout.strip().splitlines()
    assert completed.returncode == 0 and lines, (
        f"{name} exited with {completed.returncode}\nstdout:\n{completed.stdout}\n"
        f"stderr:\n{completed.stderr}"
    )
    report: dict[str, Any] = json.loads(lines[-1])
    return report
