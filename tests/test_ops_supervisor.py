"""Operating a supervised server: hang detection, recycling, reload, scaling, metrics, access
log, log config and pid-file rules (docs/operations.md).

Every test runs a real ``python -m theframework ... --workers N`` on loopback and waits for its
log lines; load tests use wrk (bounded with -d) and fail on any socket error or non-2xx.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefork_apps.harness import TESTS_DIRECTORY, ServerProcess, http_get
from prefork_apps.harness import metric_value as _value
from prefork_apps.harness import scrape_metrics as _scrape
from prefork_apps.harness import wait_for_metric as _wait_metric

pytestmark = pytest.mark.timeout(120)

APP = "ops_apps.ops_app:app"


def _metrics_url(server: ServerProcess) -> str:
    return server.wait_for_line(r"metrics: (http://\S+)").group(1)


def _wrk(port: int, seconds: int, path: str = "/") -> subprocess.Popen[str]:
    # wrk is a test requirement installed by scripts/bootstrap.sh: missing, the test fails.
    assert shutil.which("wrk"), "wrk is not installed (scripts/bootstrap.sh installs it)"
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            "-c64",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            f"http://127.0.0.1:{port}{path}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_no_failures(output: str) -> int:
    """The request count of a wrk report without socket errors and non-2xx answers."""
    assert "Socket errors" not in output, output
    assert "Non-2xx" not in output, output
    match = re.search(r"(\d+) requests in", output)
    assert match, output
    return int(match.group(1))


# -- hang detection ------------------------------------------------------------------------------


def test_hung_worker_is_dumped_killed_and_respawned() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--worker-timeout", "1",
                       "--metrics-port", "0") as server:  # fmt: skip
        port = server.port()
        url = _metrics_url(server)
        before = server.worker_pids()
        stuck = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            stuck.sendall(b"GET /spin HTTP/1.1\r\nHost: t\r\n\r\n")
            hung = server.wait_for_line(r"worker (\d+) \(pid (\d+)\) is hung", timeout=20)
            worker_id, pid = int(hung.group(1)), int(hung.group(2))
            assert pid == before[worker_id]
            server.wait_for_line(r"tracebacks of every greenlet \(SIGUSR1\)")
            server.wait_for_line(r"in spin$")  # the handler's frame is in the dump
            server.wait_for_line(rf"worker {worker_id}: killed by SIGKILL; restarting it")
            server.wait_for_line(rf"worker {worker_id} ready \(pid (?!{pid}\))\d+\)")
        finally:
            stuck.close()
        assert server.worker_pids()[worker_id] != pid
        assert http_get(port)[0] == 200
        samples = _scrape(url)
        assert _value(samples, "theframework_worker_spawns_total", reason="hang") == 1
        assert "the hub failed" not in server.output


def test_busy_but_responsive_workers_are_not_killed() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--worker-timeout", "0.5") as server:
        port = server.port()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert http_get(port)[0] == 200
        assert "is hung" not in server.output


# -- recycling -----------------------------------------------------------------------------------


def test_max_requests_recycles_one_worker_at_a_time() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--max-requests", "20",
                       "--max-requests-jitter", "5") as server:  # fmt: skip
        port = server.port()
        first = server.worker_pids()
        for _ in range(80):
            assert http_get(port)[0] == 200
        match = server.wait_for_line(
            r"worker (\d+) \(pid (\d+)\) asks to be recycled \(max-requests"
        )
        worker_id, old_pid = int(match.group(1)), int(match.group(2))
        assert old_pid == first[worker_id]
        replaced = server.wait_for_line(rf"worker {worker_id}: pid (\d+) replaces pid {old_pid}")
        server.wait_for_line(rf"worker {worker_id} \(pid {old_pid}\) retired")
        new_pid = int(replaced.group(1))
        # The successor was ready before the old worker was told to drain.
        lines = server.output.splitlines()
        ready_index = next(i for i, line in enumerate(lines) if f"ready (pid {new_pid})" in line)
        drain_index = next(i for i, line in enumerate(lines) if f"replaces pid {old_pid}" in line)
        assert ready_index < drain_index
        assert http_get(port)[0] == 200


def test_worker_lifetime_recycles_each_worker_after_it() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0",
                       "--worker-lifetime", "1") as server:  # fmt: skip
        port = server.port()
        ready_at = time.monotonic()
        first = server.worker_pids()
        asked_at = []
        for worker_id, old_pid in first.items():
            server.wait_for_line(
                rf"worker {worker_id} \(pid {old_pid}\) asks to be recycled \(lifetime: running"
            )
            asked_at.append(time.monotonic())
            replaced = server.wait_for_line(
                rf"worker {worker_id}: pid (\d+) replaces pid {old_pid}"
            )
            server.wait_for_line(rf"worker {worker_id} \(pid {old_pid}\) retired")
            assert int(replaced.group(1)) not in first.values()
        # Not before the lifetime (1 s from each worker's start; they were ready just before).
        assert asked_at[0] - ready_at >= 0.5, asked_at[0] - ready_at
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_rss_limit_recycles_a_worker_that_allocates() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--worker-max-rss", "90",
                       "--rss-interval", "0.2", "--rss-samples", "2") as server:  # fmt: skip
        port = server.port()
        status, _, body = http_get(port, "/grow?mib=150")
        assert status == 200
        grown = int(body)
        match = server.wait_for_line(rf"\(pid {grown}\) asks to be recycled \(max-rss: resident")
        assert match
        server.wait_for_line(rf"pid \d+ replaces pid {grown} \(recycle\)")
        server.wait_for_line(rf"\(pid {grown}\) retired")
        assert http_get(port)[0] == 200


# -- reload --------------------------------------------------------------------------------------


def test_reload_and_recycles_under_load_fail_no_request() -> None:
    # Keep-alive load until a reload and a recycle by --max-requests have both happened: the run
    # ends on those log lines, not after a fixed time, however slow the shared machine is.
    with ServerProcess(APP, "--workers", "4", "--port", "0", "--max-requests", "3000",
                       "--max-requests-jitter", "1500",
                       "--metrics-port", "0") as server:  # fmt: skip
        port = server.port()
        metrics = _metrics_url(server)
        load = _wrk(port, 120)
        try:
            _wait_metric(metrics, "theframework_requests_total", 500, timeout=30)
            server.send_signal(signal.SIGHUP)
            server.wait_for_line(r"reload complete: 4 workers", timeout=60)
            server.wait_for_line(r"\(recycle\); draining the old one", timeout=60)
        finally:
            load.send_signal(signal.SIGINT)  # wrk prints its report for the whole run
        output, _ = load.communicate(timeout=60)
        assert _assert_no_failures(output) > 1000
        assert server.output.count("replaces pid") >= 5
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_reload_reimports_the_application_and_rereads_env_files(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("OPS_APP_VERSION=1\n")
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--env-file", str(env_file)) as server:
        port = server.port()
        assert http_get(port, "/version")[2] == "1"
        env_file.write_text("OPS_APP_VERSION=2\n")
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload complete")
        for _ in range(20):
            assert http_get(port, "/version")[2] == "2"


def test_reload_of_a_broken_application_keeps_the_old_workers(tmp_path: Path) -> None:
    marker = tmp_path / "broken"
    with ServerProcess(
        APP, "--workers", "2", "--port", "0",
        environment={"OPS_APP_BROKEN_MARKER": str(marker)},
        expected_tracebacks=("ops_app is broken on purpose",),
    ) as server:  # fmt: skip
        port = server.port()
        pids = set(server.worker_pids().values())
        marker.write_text("")
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload failed: the new worker \d+ did not start .*keeping the old")
        server.wait_for_line(r"broken on purpose")
        seen = {int(http_get(port)[2]) for _ in range(40)}
        assert seen <= pids
        assert server.process.poll() is None
        # Fixed: the next reload goes through.
        marker.unlink()
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload complete: 2 workers")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


# -- scaling -------------------------------------------------------------------------------------


def test_ttin_adds_and_ttou_removes_workers_never_below_one() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0") as server:
        port = server.port()
        server.send_signal(signal.SIGTTIN)
        server.wait_for_line(r"adding worker 3 \(3 workers\)")
        third = int(server.wait_for_line(r"worker 3 ready \(pid (\d+)\)").group(1))
        server.send_signal(signal.SIGTTOU)
        server.wait_for_line(r"removing worker 3 \(2 workers\)")
        server.wait_for_line(rf"worker 3 \(pid {third}\) retired")
        server.send_signal(signal.SIGTTOU)
        server.wait_for_line(r"removing worker 2 \(1 workers\)")
        server.wait_for_line(r"worker 2 \(pid \d+\) retired")
        server.send_signal(signal.SIGTTOU)
        server.wait_for_line(r"already at one worker; ignored")
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


# -- metrics and load balance --------------------------------------------------------------------


def test_metrics_are_served_in_prometheus_text_format() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--metrics-port", "0") as server:
        port = server.port()
        url = _metrics_url(server)
        for _ in range(10):
            assert http_get(port)[0] == 200
        assert http_get(port, "/status/404")[0] == 404
        assert http_get(port, "/status/503")[0] == 503
        samples = _wait_metric(url, "theframework_requests_total", 12)
        assert _value(samples, "theframework_requests_total", status_class="2xx") >= 10
        assert _value(samples, "theframework_requests_total", status_class="4xx") >= 1
        assert _value(samples, "theframework_requests_total", status_class="5xx") >= 1
        assert _value(samples, "theframework_connections_accepted_total") >= 12
        assert _value(samples, "theframework_request_duration_seconds_count") >= 12
        assert _value(samples, "theframework_request_duration_seconds_bucket", le="+Inf") >= 12
        assert _value(samples, "theframework_sent_bytes_total") > 0
        assert _value(samples, "theframework_received_bytes_total") > 0
        assert _value(samples, "theframework_worker_spawns_total", reason="start") == 2
        assert _value(samples, "theframework_workers") == 2
        peaks = [value for _, value in samples["theframework_connections_peak"]]
        assert len(peaks) == 2 and 1 <= max(peaks) <= 1024, peaks
        for name in ("theframework_connections_active", "theframework_requests_in_flight",
                     "theframework_hub_loop_lag_seconds", "theframework_backpressure_waits_total",
                     "theframework_worker_resident_bytes"):  # fmt: skip
            assert name in samples, name
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
        assert missing.value.code == 404


def test_load_is_spread_fairly_over_four_workers() -> None:
    with ServerProcess(APP, "--workers", "4", "--port", "0", "--metrics-port", "0") as server:
        port = server.port()
        url = _metrics_url(server)
        output, _ = _wrk(port, 10).communicate(timeout=60)
        total = _assert_no_failures(output)
        samples = _wait_metric(url, "theframework_request_duration_seconds_count", total)
        counts = [value for _, value in samples["theframework_worker_requests_total"]]
        assert len(counts) == 4
        assert max(counts) <= 1.5 * min(counts), counts


# -- access log, log config, single process ------------------------------------------------------


def test_access_log_lines_in_workers() -> None:
    log_format = "%(method)s %(path)s %(status)s %(bytes)s"
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--access-log",
                       "--access-log-format", log_format) as server:  # fmt: skip
        port = server.port()
        assert http_get(port, "/status/418?x=1")[0] == 418
        server.wait_for_line(r"\[worker-\d\] theframework.access: GET /status/418\?x=1 418 \d+")


def test_access_log_is_off_by_default() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0") as server:
        port = server.port()
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "theframework.access" not in server.output


def test_single_process_access_log_and_log_config(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    config = {
        "version": 1,
        "formatters": {"plain": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file),
                              "formatter": "plain"}},
        "loggers": {"theframework.access": {"handlers": ["file"], "propagate": False}},
    }  # fmt: skip
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(config))
    with ServerProcess(
        APP, "--port", "0", "--access-log", "--log-config", str(config_file)
    ) as server:
        port = int(server.wait_for_line(r"listening on http://127.0.0.1:(\d+)").group(1))
        assert http_get(port, "/version")[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    text = log_file.read_text()
    assert re.search(r'ACCESS 127.0.0.1 "GET /version HTTP/1.1" 200 \d+ [\d.]+ms', text), text


def test_supervisor_only_options_are_refused_with_one_worker() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "theframework", APP, "--max-requests", "5", "--metrics-port", "0"],
        cwd=TESTS_DIRECTORY, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--max-requests, --metrics-port: only a supervisor uses these" in result.stderr


def test_bad_log_config_and_access_log_format_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    for arguments, message in [
        (["--log-config", str(bad)], "--log-config"),
        (["--access-log", "--access-log-format", "%(nope)s"], "unknown access log field"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "theframework", APP, "--workers", "2", *arguments],
            cwd=TESTS_DIRECTORY, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


# -- pid file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pid_file_naming_a_live_process_is_refused(tmp_path: Path, workers: str) -> None:
    pid_file = tmp_path / "server.pid"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file.write_text(f"{sleeper.pid}\n")
        with ServerProcess(APP, "--workers", workers, "--port", "0",
                           "--pid-file", str(pid_file)) as server:  # fmt: skip
            assert server.wait() == 1
            assert f"names a live process (pid {sleeper.pid})" in server.output
        assert pid_file.read_text() == f"{sleeper.pid}\n"
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_stale_pid_file_is_replaced_and_removed_at_exit(tmp_path: Path, workers: str) -> None:
    pid_file = tmp_path / "server.pid"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    pid_file.write_text(finished.stdout)
    with ServerProcess(APP, "--workers", workers, "--port", "0",
                       "--pid-file", str(pid_file)) as server:  # fmt: skip
        if workers == "1":
            server.wait_for_line(r"listening on")
        else:
            server.wait_ready()
        _wait_for_file_text(pid_file, f"{server.pid}\n")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not pid_file.exists()


def test_pid_file_taken_over_by_another_process_is_left_alone(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    with ServerProcess(APP, "--workers", "2", "--port", "0", "--pid-file", str(pid_file)) as server:
        server.wait_ready()
        _wait_for_file_text(pid_file, f"{server.pid}\n")
        pid_file.write_text("999999\n")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert pid_file.read_text() == "999999\n"


def _wait_for_file_text(path: Path, text: str, timeout: float = 10.0) -> None:
    """The pid file is written right after the readiness line (no further signal to wait on)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text() == text):
        assert time.monotonic() < deadline, f"{path} never held {text!r}"
        time.sleep(0.02)
