"""``--reload`` (development): the supervisor with one worker, replaced whenever a watched file
changes.

The replacement is the supervisor's SIGHUP reload (docs/operations.md): a new worker imports the
new code and, only once it is ready (listening beside the old one with SO_REUSEPORT), the old one
drains; a new worker that cannot start (a syntax error, an import error) is reported once with
its traceback and the old one keeps serving until the next change. So the watcher only has to
send SIGHUP: it runs in a process of its own (spawned once every worker is first ready: the
supervisor holds no threads, and watchfiles runs one), watches with watchfiles, and exits when
its parent does. SIGINT / SIGTERM stop the supervisor as usual; the watcher is stopped with it.

An application that cannot be imported at the very start (the supervisor stops with exit 3)
has no old code to keep serving: the traceback is logged once, a watcher waits for the next
change, and the supervisor starts again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from types import FrameType

from ..config import ProcessConfig, ServerConfig, option
from ..server.exitcodes import ExitCode
from ..server.logs import configure_logging
from .supervisor import Supervisor

__all__ = [
    "DEFAULT_EXCLUDES",
    "DEFAULT_INCLUDES",
    "WatchSpec",
    "is_watched",
    "reload_problem",
    "run_reloading",
    "watch_spec",
]

logger = logging.getLogger("theframework.reloader")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".git", "__pycache__", ".venv", "*.pyc")
# How often (milliseconds) the watcher looks up from watching to see whether its parent is gone.
_PARENT_CHECK_MS = 500
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A file that changes again within this many milliseconds of the first change is in one reload.
_DEBOUNCE_MS = 1600


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What the watcher watches: absolute ``directories``, and the globs a changed file must
    match (``includes``, its name) and must not match (``excludes``, its name or a directory
    between it and the watched directory)."""

    directories: tuple[str, ...]
    includes: tuple[str, ...]
    excludes: tuple[str, ...]


def reload_problem(process: ProcessConfig) -> str | None:
    """The usage error of the --reload options (exit 2), or None."""
    if not process.reload:
        given = [
            option(name).cli_flag
            for name in ("reload_dirs", "reload_includes", "reload_excludes")
            if getattr(process, name)
        ]
        return f"{', '.join(given)}: only --reload uses these" if given else None
    if process.workers != 1:
        return (
            f"--reload runs one worker and replaces it on each change; it cannot be combined "
            f"with --workers {process.workers} (leave --workers at 1)"
        )
    try:
        import watchfiles  # noqa: F401
    except ImportError as error:
        return (
            f"--reload needs the watchfiles package ({error}): pip install 'theframework[reload]'"
        )
    for directory in process.reload_dirs:
        if not os.path.isdir(directory):
            return f"--reload-dir {directory}: not a directory"
    return None


def watch_spec(process: ProcessConfig, cwd: str) -> WatchSpec:
    """The directories (``--reload-dir``, else ``--app-dir``, else ``cwd``) and globs (the
    defaults plus the ones given) of ``process``."""
    given = process.reload_dirs or (process.app_dir or cwd,)
    directories = tuple(os.path.abspath(os.path.join(cwd, directory)) for directory in given)
    return WatchSpec(
        directories,
        DEFAULT_INCLUDES + process.reload_includes,
        DEFAULT_EXCLUDES + process.reload_excludes,
    )


def _matches(path: PurePath, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path.name, pattern) or path.match(pattern)


def is_watched(path: str, spec: WatchSpec) -> bool:
    """True when a change of ``path`` should reload: it matches an include glob, and neither it
    nor a directory between it and its watched directory matches an exclude glob."""
    changed = PurePath(path)
    if not any(_matches(changed, pattern) for pattern in spec.includes):
        return False
    below = changed
    for directory in spec.directories:
        with contextlib.suppress(ValueError):
            below = changed.relative_to(directory)
            break
    parts = below.parts
    return not any(
        fnmatch.fnmatchcase(part, pattern) or PurePath(*parts[: index + 1]).match(pattern)
        for index, part in enumerate(parts)
        for pattern in spec.excludes
    )


def _describe(paths: Iterable[str], spec: WatchSpec) -> str:
    names = []
    for path in sorted(paths):
        for directory in spec.directories:
            if path.startswith(directory + os.sep):
                path = os.path.relpath(path, directory)
                break
        names.append(path)
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def forget_bytecode(paths: Iterable[str]) -> None:
    """Removes the cached bytecode of the ``.py`` files among ``paths``: Python trusts a cache
    whose recorded source size and mtime (whole seconds) match, so an edit that keeps both (a
    "1" made a "2" within the second the cache was written) would import the old code."""
    for path in paths:
        if path.endswith(".py"):
            with contextlib.suppress(OSError, ValueError):
                os.remove(importlib.util.cache_from_source(path))


def watch_and_signal(spec: WatchSpec, parent: int, log_level: str, once: bool = False) -> None:
    """The watcher process: sends SIGHUP to ``parent`` after each batch of watched changes (with
    ``once``: returns after the first batch instead), logs "watching ..." once the watch is in
    place, and returns when ``parent`` is gone."""
    configure_logging(log_level, "reloader")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: parent decides
    if log_level != "debug":
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # "1 change detected"
    from watchfiles import watch

    announced = False
    for changes in watch(
        *spec.directories,
        watch_filter=lambda change, path: is_watched(path, spec),
        debounce=_DEBOUNCE_MS,
        rust_timeout=_PARENT_CHECK_MS,
        yield_on_timeout=True,
        raise_interrupt=False,
    ):
        if os.getppid() != parent:
            return
        if not announced:
            announced = True
            logger.info(
                "watching %s for changes to %s (ignoring %s)",
                ", ".join(spec.directories),
                ", ".join(spec.includes),
                ", ".join(spec.excludes),
            )
        if not changes:
            continue
        paths = {path for _, path in changes}
        forget_bytecode(paths)
        if once:
            logger.info("%s changed: starting again", _describe(paths, spec))
            return
        logger.info("%s changed: reloading", _describe(paths, spec))
        try:
            os.kill(parent, signal.SIGHUP)
        except ProcessLookupError:
            return


# The watcher's command: this interpreter with the parent's sys.path (as multiprocessing's spawn
# does, without its resource-tracker process), running watcher_main with a JSON argument.
_WATCHER_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1])['sys_path']; "
    "from theframework.process.reloader import watcher_main; watcher_main(sys.argv[1])"
)


def watcher_main(argument: str) -> None:
    """The watcher process's entry point: ``argument`` is the JSON _Watcher.start() writes."""
    data = json.loads(argument)
    spec = WatchSpec(*(tuple(data[field.name]) for field in dataclasses.fields(WatchSpec)))
    watch_and_signal(spec, data["parent"], data["log_level"], data["once"])


class _Watcher:
    """The watcher process, started by ``start()`` (the supervisor's ready callback) and ended
    by ``stop()``. With ``once`` it exits (0) at the first change instead of signalling."""

    def __init__(self, spec: WatchSpec, log_level: str, *, once: bool = False) -> None:
        self.spec = spec
        self.log_level = log_level
        self.once = once
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False

    def start(self) -> None:
        if self.process is not None:
            return
        argument = json.dumps(
            {
                **dataclasses.asdict(self.spec),
                "parent": os.getpid(),
                "log_level": self.log_level,
                "once": self.once,
                "sys_path": sys.path,
            }
        )
        command: Sequence[str] = (sys.executable, "-c", _WATCHER_CODE, argument)
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self.started = True

    def terminate(self) -> None:
        """Sends SIGTERM to a running watcher (safe in a signal handler)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _wait_for_change(spec: WatchSpec, log_level: str) -> bool:
    """Waits for the first watched change: True; False when SIGINT or SIGTERM comes first (or
    the watcher fails)."""
    watcher = _Watcher(spec, log_level, once=True)
    stop_signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_signals.append(signum)
        watcher.terminate()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        watcher.start()
        assert watcher.process is not None
        if stop_signals:
            return False
        code = watcher.process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        watcher.stop()
    if stop_signals:
        logger.info("%s received: stopping", signal.Signals(stop_signals[0]).name)
    return code == 0 and not stop_signals


def run_reloading(app: str, server: ServerConfig, process: ProcessConfig) -> int:
    """Serves ``app`` with one worker that is replaced on every watched change, until SIGINT
    or SIGTERM; returns the supervisor's exit code. When the application cannot be imported
    at the start (exit 3), waits for a change and starts again; SIGINT or SIGTERM while it
    waits exits 3. ``reload_problem(process)`` must be None."""
    spec = watch_spec(process, os.getcwd())
    while True:
        watcher = _Watcher(spec, server.log_level)
        try:
            code = Supervisor(app, server, process, ready=watcher.start).run()
        finally:
            watcher.stop()
        if code != ExitCode.APP_FAILED or watcher.started:
            return code
        logger.error("the application cannot be imported: waiting for a change to start again")
        if not _wait_for_change(spec, server.log_level):
            return code
