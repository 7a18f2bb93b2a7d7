"""The Autobahn|Testsuite (wstest -m fuzzingclient, the WebSocket conformance suite) against the
echo route of a real server (a handler echoing with receive(), and one with WebSocket.listen):
every case must end OK, NON-STRICT or INFORMATIONAL, none FAILED or UNIMPLEMENTED, judged from
the suite's own report (index.json).

wstest needs Python 2.7; scripts/autobahn_env.sh installs it once into .venv-autobahn/ (about
40 s; CPython 2.7 from pyenv). Cases 1.* to 11.* run whole. Of the permessage-deflate cases,
every data set of 12.* and every offer of 13.* (context takeover on and off, window bits 9 to 15)
runs with the five smaller message sizes (16 B to 4 KiB, 1,000 messages each): the larger sizes
take minutes each in the suite's Python 2 client (about 20 s per case at 128 KiB), far past what a
CI run can spend, and add no protocol path the smaller ones miss. Cases 9.* send messages up to
16 MiB, so the server runs with --ws-max-message-size 16 MiB.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from websocket_helpers import serve

pytestmark = pytest.mark.timeout(900)

REPOSITORY = Path(__file__).resolve().parent.parent
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
COMPRESSION_CASES = [f"12.{data}.{size}" for data in range(1, 6) for size in range(1, 6)] + [
    f"13.{offer}.{size}" for offer in range(1, 8) for size in range(1, 6)
]


def wstest() -> str:
    completed = subprocess.run(
        [str(REPOSITORY / "scripts" / "autobahn_env.sh"), str(REPOSITORY / ".venv-autobahn")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "app",
    [
        pytest.param("websocket_apps.echo:app", id="receive"),
        # The same echo through WebSocket.listen: the hub reads, a dispatch task echoes.
        pytest.param("websocket_apps.listen:app", id="listen"),
    ],
)
def test_autobahn_fuzzingclient(tmp_path: Path, app: str) -> None:
    program = wstest()
    process, port = serve("--ws-max-message-size", str(16 * 1024 * 1024), app=app)
    with process:
        spec = {
            "outdir": str(tmp_path / "report"),
            "servers": [{"agent": "theframework", "url": f"ws://127.0.0.1:{port}/echo"}],
            "cases": [f"{group}.*" for group in range(1, 12)] + COMPRESSION_CASES,
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        completed = subprocess.run(
            [program, "-m", "fuzzingclient", "-s", "spec.json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
        assert "Traceback" not in process.output, process.output
    results = json.loads((tmp_path / "report" / "index.json").read_text())["theframework"]
    # 1.* to 11.*: 301 cases in this suite's release, then the compression cases chosen.
    assert len(results) >= 301 + len(COMPRESSION_CASES), len(results)
    assert set(COMPRESSION_CASES) <= set(results), sorted(set(COMPRESSION_CASES) - set(results))
    bad = {
        case: (result["behavior"], result["behaviorClose"])
        for case, result in results.items()
        if result["behavior"] not in ACCEPTED or result["behaviorClose"] not in ACCEPTED
    }
    assert not bad, bad
