"""``--reload``: a real server watching a temporary application directory. An edit is served
after the reload (and requests keep being answered while it happens); a broken edit keeps the old
code serving and logs the traceback once; the next good edit replaces it. The usage errors, the
watch filter (pure), and SIGINT/SIGTERM stopping the watcher with the server."""

from __future__ import annotations

import os
import py_compile
import signal
import threading
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get

from theframework.config import ProcessConfig
from theframework.process.reloader import WatchSpec, is_watched, reload_problem, watch_spec

HIDE_WATCHFILES = str(Path(__file__).parent / "no_watchfiles")

APP_SOURCE = """
from theframework import Framework

app = Framework()


@app.get("/")
def index(request, response):
    response.write({body!r})
"""


def _write_app(directory: Path, body: str) -> None:
    # Each version has a new length: Python's bytecode cache checks the source's size and its
    # mtime in whole seconds, and a test edits faster than that.
    (directory / "reload_app.py").write_text(APP_SOURCE.format(body=body))


def _start(directory: Path, *arguments: str) -> tuple[ServerProcess, int]:
    server = ServerProcess(
        "reload_app:app", "--reload", "--port", "0", "--app-dir", str(directory), *arguments
    )
    port = server.port()
    server.wait_for_line(r"\[reloader\] .*watching .* for changes")
    return server, port


def _live_processes_in_group(group: int) -> list[str]:
    """The processes of process group ``group`` that are not zombies (an orphan's zombie waits
    for init, which may be slow to reap it in a container), as "pid state name"."""
    live = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rindex(")")
        fields = stat[name_end + 2 :].split()
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state not in ("Z", "X"):
            live.append(f"{entry.name} {state} {stat[: name_end + 1]}")
    return live


def _lines(server: ServerProcess) -> int:
    return len(server.output.splitlines())


def test_edits_are_served_and_a_broken_edit_keeps_the_old_code(tmp_path: Path) -> None:
    _write_app(tmp_path, "version one")
    server, port = _start(tmp_path)
    with server:
        assert http_get(port)[2] == "version one"

        # A good edit, with a client asking all along: a listener is there all the time (no
        # connection refused). A connection the kernel queued for the old worker's socket can
        # still be reset when it closes: listeners that outlive workers are issue 15's.
        failures: list[BaseException] = []
        answers: list[str] = []
        done = threading.Event()

        def ask() -> None:
            while not done.is_set():
                try:
                    answers.append(http_get(port, timeout=10)[2])
                except OSError as error:
                    failures.append(error)

        client = threading.Thread(target=ask)
        client.start()
        mark = _lines(server)
        _write_app(tmp_path, "version two!")
        server.wait_for_line(r"reload_app\.py changed: reloading", start=mark)
        server.wait_for_line(r"reload complete", start=mark)
        done.set()
        client.join(30)
        assert not [error for error in failures if isinstance(error, ConnectionRefusedError)]
        assert "version one" in answers and set(answers) <= {"version one", "version two!"}
        assert http_get(port)[2] == "version two!"

        # A broken edit: the old code keeps serving, the traceback is logged once.
        mark = _lines(server)
        (tmp_path / "reload_app.py").write_text("def broken(:\n")
        server.wait_for_line(r"reload failed: the new worker 1 did not start", start=mark)
        assert http_get(port)[2] == "version two!"
        after = "\n".join(server.output.splitlines()[mark:])
        assert after.count("Traceback (most recent call last)") == 1
        assert after.count("SyntaxError: invalid syntax") == 1

        # The next good edit replaces it.
        mark = _lines(server)
        _write_app(tmp_path, "version three, fixed")
        server.wait_for_line(r"reload complete", start=mark)
        assert http_get(port)[2] == "version three, fixed"

        server.send_signal(signal.SIGINT)
        assert server.wait() == 0
        assert _live_processes_in_group(server.pid) == []  # no watcher nor worker left behind


def test_an_edit_keeping_size_and_mtime_is_served(tmp_path: Path) -> None:
    """The bytecode cache would hand the new worker the old code: the watcher removes it."""
    _write_app(tmp_path, "version 1")
    source = tmp_path / "reload_app.py"
    # The cache as an import writes it (made here: PYTHONDONTWRITEBYTECODE may be set).
    py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    server, port = _start(tmp_path)
    with server:
        assert http_get(port)[2] == "version 1"
        before = source.stat()
        mark = _lines(server)
        _write_app(tmp_path, "version 2")
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert source.stat().st_size == before.st_size
        server.wait_for_line(r"reload complete", start=mark)
        assert http_get(port)[2] == "version 2"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_broken_at_the_start_waits_for_a_fix(tmp_path: Path) -> None:
    (tmp_path / "reload_app.py").write_text("import not_a_module_anywhere\n")
    with ServerProcess(
        "reload_app:app", "--reload", "--port", "0", "--app-dir", str(tmp_path)
    ) as server:
        waiting = server.wait_for_line(r"cannot be imported: waiting for a change to start again")
        assert server.output.count("Traceback (most recent call last)") == 1
        assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in server.output
        mark = _lines(server)
        server.wait_for_line(r"\[reloader\] .*watching .* for changes", start=mark)
        _write_app(tmp_path, "fixed at last")
        server.wait_for_line(r"reload_app\.py changed: starting again", start=mark)
        port = int(server.wait_for_line(r"ready: \S+:(\d+) ", start=mark).group(1))
        assert http_get(port)[2] == "fixed at last"
        assert waiting.string in server.output
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert _live_processes_in_group(server.pid) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stopping_while_waiting_for_a_fix(tmp_path: Path, signum: signal.Signals) -> None:
    (tmp_path / "reload_app.py").write_text("raise RuntimeError('broken at import')\n")
    with ServerProcess(
        "reload_app:app", "--reload", "--port", "0", "--app-dir", str(tmp_path)
    ) as server:
        server.wait_for_line(r"waiting for a change to start again")
        server.wait_for_line(r"\[reloader\] .*watching .* for changes")
        server.send_signal(signum)
        assert server.wait() == 3
        assert f"{signum.name} received: stopping" in server.output
        assert _live_processes_in_group(server.pid) == []


def test_ignored_files_do_not_reload_and_sigterm_stops_everything(tmp_path: Path) -> None:
    _write_app(tmp_path, "version one")
    (tmp_path / "skipped").mkdir()
    server, _ = _start(tmp_path, "--reload-exclude", "skipped", "--reload-include", "*.txt")
    with server:
        mark = _lines(server)
        (tmp_path / "notes.md").write_text("not watched\n")
        (tmp_path / "skipped" / "module.py").write_text("X = 1\n")
        (tmp_path / "data.txt").write_text("watched\n")  # included: this one reloads
        changed = server.wait_for_line(r"changed: reloading", start=mark)
        assert "data.txt" in changed.string and "notes.md" not in changed.string
        assert "skipped" not in changed.string
        server.wait_for_line(r"reload complete", start=mark)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "stopped (exit code 0)" in server.output
        assert _live_processes_in_group(server.pid) == []


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (("--reload", "--workers", "2"), {}, "cannot be combined with --workers 2"),
        (("--reload", "--workers", "0"), {}, "cannot be combined with --workers 0"),
        (("--reload-dir", "."), {}, "--reload-dir: only --reload uses these"),
        (("--reload", "--reload-dir", "/nonexistent/dir"), {}, "not a directory"),
        (
            ("--reload",),
            {"PYTHONPATH": HIDE_WATCHFILES},
            "--reload needs the watchfiles package (watchfiles hidden by the test): "
            "pip install 'theframework[reload]'",
        ),
    ],
)
def test_usage_errors(
    arguments: tuple[str, ...], environment: dict[str, str], message: str
) -> None:
    with ServerProcess("prefork_apps.pid_app:app", *arguments, environment=environment) as server:
        assert server.wait() == 2
        assert "theframework: error: " in server.output and message in server.output
        assert "listening" not in server.output


def test_reload_problem_and_python_api() -> None:
    assert reload_problem(ProcessConfig()) is None
    assert reload_problem(ProcessConfig(reload=True)) is None
    from theframework.main import serve

    with pytest.raises(ValueError, match="only the command line watches files"):
        serve("prefork_apps.pid_app:app", reload=True)


def test_watch_spec_defaults(tmp_path: Path) -> None:
    spec = watch_spec(ProcessConfig(reload=True), str(tmp_path))
    assert spec == WatchSpec((str(tmp_path),), ("*.py",), (".git", "__pycache__", ".venv", "*.pyc"))
    spec = watch_spec(
        ProcessConfig(
            reload=True, app_dir="src", reload_includes=("*.html",), reload_excludes=("build",)
        ),
        str(tmp_path),
    )
    assert spec.directories == (str(tmp_path / "src"),)
    assert spec.includes == ("*.py", "*.html") and spec.excludes[-1] == "build"
    spec = watch_spec(ProcessConfig(reload=True, reload_dirs=("a", "/b")), str(tmp_path))
    assert spec.directories == (str(tmp_path / "a"), "/b")


@pytest.mark.parametrize(
    ("path", "watched"),
    [
        ("/app/main.py", True),
        ("/app/pkg/module.py", True),
        ("/app/templates/page.html", True),
        ("/app/README.md", False),
        ("/app/pkg/__pycache__/module.cpython-311.pyc", False),
        ("/app/.venv/lib/site.py", False),
        ("/app/.git/hooks/pre-commit.py", False),
        ("/app/build/generated.py", False),
        ("/app/pkg/build_tools.py", True),
        ("/elsewhere/build/x.py", False),  # outside every watched directory: the whole path
    ],
)
def test_watch_filter(path: str, watched: bool) -> None:
    spec = WatchSpec(
        ("/app",), ("*.py", "templates/*.html"), (".git", "__pycache__", ".venv", "*.pyc", "build")
    )
    assert is_watched(path, spec) is watched
