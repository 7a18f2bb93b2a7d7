"""Server configuration: one frozen dataclass, built once (CLI, environment or ``run()`` keyword
arguments) and handed down to the server."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "BACKENDS",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "ENV_PREFIX",
    "INTERFACES",
    "LOG_LEVELS",
    "START_METHODS",
    "SUPERVISOR_ONLY_OPTIONS",
    "ProcessConfig",
    "ServerConfig",
    "config_from_env",
    "env_name",
]

BACKENDS = ("auto", "io_uring", "epoll")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
INTERFACES = ("auto", "framework", "wsgi")
START_METHODS = ("auto", "fork", "spawn", "forkserver")
ENV_PREFIX = "THEFRAMEWORK_"
# The access log line (see theframework.accesslog for the fields): a common-log-like default.
DEFAULT_ACCESS_LOG_FORMAT = (
    '%(client)s "%(method)s %(path)s %(version)s" %(status)s %(bytes)s %(duration_ms).2fms'
)
# ProcessConfig options that only a supervisor uses (refused with --workers 1 when set).
SUPERVISOR_ONLY_OPTIONS = (
    "worker_timeout",
    "max_requests",
    "max_requests_jitter",
    "worker_lifetime",
    "worker_lifetime_jitter",
    "worker_max_rss",
    "rss_interval",
    "rss_samples",
    "metrics_address",
    "metrics_port",
)


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        requirement = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ValueError(f"{name} must be {requirement} seconds, got {value}")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server needs, validated on construction (ValueError naming the option).

    Build variants with ``dataclasses.replace(config, port=9000)``.
    """

    # "module:attribute" of the application when it was given as an import string, else None.
    app: str | None = None
    # TCP listener: IPv4 address or host name, or IPv6 when it contains ":" ("::1", "[::1]").
    host: str = "127.0.0.1"
    # TCP port; 0 lets the kernel choose one.
    port: int = 8000
    # Path of a UNIX socket to listen on instead of host:port.
    uds: str | None = None
    backlog: int = 1024
    # "auto" tries io_uring and falls back to epoll.
    backend: str = "auto"
    # Request line plus header block, in bytes (larger: 431).
    max_header_size: int = 32768
    # Request body, in bytes (larger: 413).
    max_body_size: int = 1048576
    # Seconds to receive the whole header block (slower: 408).
    header_timeout: float = 10.0
    # Seconds between two reads of the body.
    body_timeout: float = 30.0
    # Seconds an idle keep-alive connection is kept open.
    keepalive_timeout: float = 5.0
    # Seconds a write may wait for the client to read.
    write_timeout: float = 30.0
    # Open connections per process; more wait in the listen backlog.
    max_connections: int = 1024
    # Seconds in-flight requests get to finish at shutdown before connections are closed.
    graceful_timeout: float = 30.0
    # Logging level of the "theframework" logger: critical, error, warning, info, debug.
    log_level: str = "info"
    # What the application is: "framework" (a Framework or handler(request, response)), "wsgi"
    # (a PEP 3333 application), or "auto" to tell from the object (see docs/wsgi.md).
    interface: str = "auto"
    # WSGI SCRIPT_NAME: the URL prefix the application is mounted under ("" or "/prefix").
    root_path: str = ""

    def __post_init__(self) -> None:
        if self.app is not None and (not isinstance(self.app, str) or ":" not in self.app):
            raise ValueError(f"app must be 'module:attribute', got {self.app!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty string, got {self.host!r}")
        _check_int("port", self.port, 0, 65535)
        if self.uds is not None and (not isinstance(self.uds, str) or not self.uds):
            raise ValueError(f"uds must be a non-empty path, got {self.uds!r}")
        _check_int("backlog", self.backlog, 1)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        _check_int("max_header_size", self.max_header_size, 1)
        _check_int("max_body_size", self.max_body_size, 1)
        _check_seconds("header_timeout", self.header_timeout)
        _check_seconds("body_timeout", self.body_timeout)
        _check_seconds("keepalive_timeout", self.keepalive_timeout)
        _check_seconds("write_timeout", self.write_timeout)
        _check_int("max_connections", self.max_connections, 1)
        _check_seconds("graceful_timeout", self.graceful_timeout, allow_zero=True)
        if not isinstance(self.log_level, str) or self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.interface not in INTERFACES:
            raise ValueError(
                f"interface must be one of {', '.join(INTERFACES)}, got {self.interface!r}"
            )
        if not isinstance(self.root_path, str) or (
            self.root_path and not self.root_path.startswith("/")
        ):
            raise ValueError(f"root_path must be empty or start with '/', got {self.root_path!r}")

    @property
    def bind_description(self) -> str:
        """The listening address as written in logs: "unix:/path" or "host:port"."""
        if self.uds is not None:
            return f"unix:{self.uds}"
        host = self.host.strip("[]")
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """How many processes serve and how they are run: the supervisor's options, validated on
    construction (ValueError naming the option). ServerConfig is what each serving process uses;
    this is what only the command line and the supervisor look at."""

    # Worker processes: 1 serves in the current process (no supervisor); 0 means one per CPU.
    workers: int = 1
    # How workers are started: auto, fork, spawn or forkserver (see docs/processes.md).
    start_method: str = "auto"
    # Seconds a worker gets to report ready before it is killed as a failed boot.
    startup_timeout: float = 60.0
    # Process titles: "<proc_name> master" and "<proc_name> worker-<id>".
    proc_name: str = "theframework"
    # KEY=VALUE files loaded into each worker before the application is imported.
    env_files: tuple[str, ...] = ()
    # File the supervisor writes its pid to once every worker is ready (removed at exit).
    pid_file: str | None = None
    # Call theframework.monkey.patch_all() in each worker before the application is imported.
    patch_all: bool = False
    # Seconds a worker's hub may go without a heartbeat before it is dumped and killed (0: off).
    worker_timeout: float = 30.0
    # Recycle a worker after this many requests (0: never), plus a random 0..jitter more.
    max_requests: int = 0
    max_requests_jitter: int = 0
    # Recycle a worker after this many seconds (0: never), plus a random 0..jitter more.
    worker_lifetime: float = 0.0
    worker_lifetime_jitter: float = 0.0
    # Recycle a worker whose resident memory exceeds this many MiB (0: never) in rss_samples
    # consecutive samples taken every rss_interval seconds.
    worker_max_rss: int = 0
    rss_interval: float = 5.0
    rss_samples: int = 3
    # Prometheus text on http://metrics_address:metrics_port/metrics (None: off; 0: any port).
    metrics_address: str = "127.0.0.1"
    metrics_port: int | None = None
    # Log every handled request to the "theframework.access" logger, in access_log_format.
    access_log: bool = False
    access_log_format: str = DEFAULT_ACCESS_LOG_FORMAT
    # A logging.config.dictConfig JSON file applied after the default logging set-up.
    log_config: str | None = None

    def __post_init__(self) -> None:
        _check_int("workers", self.workers, 0)
        if self.start_method not in START_METHODS:
            choices = ", ".join(START_METHODS)
            raise ValueError(f"start_method must be one of {choices}, got {self.start_method!r}")
        _check_seconds("startup_timeout", self.startup_timeout)
        if not isinstance(self.proc_name, str) or not self.proc_name:
            raise ValueError(f"proc_name must be a non-empty string, got {self.proc_name!r}")
        if not isinstance(self.env_files, tuple) or not all(
            isinstance(path, str) and path for path in self.env_files
        ):
            raise ValueError(f"env_files must be a tuple of paths, got {self.env_files!r}")
        if self.pid_file is not None and (not isinstance(self.pid_file, str) or not self.pid_file):
            raise ValueError(f"pid_file must be a non-empty path, got {self.pid_file!r}")
        if not isinstance(self.patch_all, bool):
            raise ValueError(f"patch_all must be True or False, got {self.patch_all!r}")
        _check_seconds("worker_timeout", self.worker_timeout, allow_zero=True)
        _check_int("max_requests", self.max_requests, 0)
        _check_int("max_requests_jitter", self.max_requests_jitter, 0)
        _check_seconds("worker_lifetime", self.worker_lifetime, allow_zero=True)
        _check_seconds("worker_lifetime_jitter", self.worker_lifetime_jitter, allow_zero=True)
        _check_int("worker_max_rss", self.worker_max_rss, 0)
        _check_seconds("rss_interval", self.rss_interval)
        _check_int("rss_samples", self.rss_samples, 1)
        if not isinstance(self.metrics_address, str) or not self.metrics_address:
            raise ValueError(f"metrics_address must be a host, got {self.metrics_address!r}")
        if self.metrics_port is not None:
            _check_int("metrics_port", self.metrics_port, 0, 65535)
        if not isinstance(self.access_log, bool):
            raise ValueError(f"access_log must be True or False, got {self.access_log!r}")
        if not isinstance(self.access_log_format, str) or not self.access_log_format:
            raise ValueError(
                f"access_log_format must be a non-empty string, got {self.access_log_format!r}"
            )
        if self.log_config is not None and (
            not isinstance(self.log_config, str) or not self.log_config
        ):
            raise ValueError(f"log_config must be a non-empty path, got {self.log_config!r}")

    @property
    def worker_count(self) -> int:
        """``workers``, with 0 resolved to the CPUs this process may run on."""
        if self.workers:
            return self.workers
        return max(1, len(os.sched_getaffinity(0)))

    def supervisor_only_options_set(self) -> list[str]:
        """The supervisor-only options (SUPERVISOR_ONLY_OPTIONS) whose value is not the
        default: meaningless with ``workers`` 1."""
        defaults = ProcessConfig()
        return [
            name
            for name in SUPERVISOR_ONLY_OPTIONS
            if getattr(self, name) != getattr(defaults, name)
        ]

    @property
    def supervised(self) -> bool:
        """True when a supervisor runs worker processes (``workers`` is not 1)."""
        return self.workers != 1


def _parse_int(text: str) -> int:
    return int(text.strip().replace("_", ""))


def _parse_seconds(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_optional_int(text: str) -> int | None:
    return _parse_int(text) if text.strip() else None


def _parse_optional_text(text: str) -> str | None:
    return text or None


def _parse_text(text: str) -> str:
    return text


def _parse_lower(text: str) -> str:
    return text.strip().lower()


def _parse_paths(text: str) -> tuple[str, ...]:
    return tuple(path for path in text.split(os.pathsep) if path)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(text)


_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "app": (_parse_optional_text, "a 'module:attribute' import string"),
    "host": (_parse_text, "a host"),
    "port": (_parse_int, "an integer"),
    "uds": (_parse_optional_text, "a path"),
    "backlog": (_parse_int, "an integer"),
    "backend": (_parse_lower, "a backend name"),
    "max_header_size": (_parse_int, "an integer"),
    "max_body_size": (_parse_int, "an integer"),
    "header_timeout": (_parse_seconds, "a number of seconds"),
    "body_timeout": (_parse_seconds, "a number of seconds"),
    "keepalive_timeout": (_parse_seconds, "a number of seconds"),
    "write_timeout": (_parse_seconds, "a number of seconds"),
    "max_connections": (_parse_int, "an integer"),
    "graceful_timeout": (_parse_seconds, "a number of seconds"),
    "log_level": (_parse_lower, "a log level"),
    "interface": (_parse_lower, "an interface"),
    "root_path": (_parse_text, "a URL path"),
    # ProcessConfig
    "workers": (_parse_int, "an integer"),
    "start_method": (_parse_lower, "a start method"),
    "startup_timeout": (_parse_seconds, "a number of seconds"),
    "proc_name": (_parse_text, "a name"),
    "env_files": (_parse_paths, f"a list of paths separated by {os.pathsep!r}"),
    "pid_file": (_parse_optional_text, "a path"),
    "patch_all": (_parse_bool, "a boolean (1/0, true/false, yes/no, on/off)"),
    "worker_timeout": (_parse_seconds, "a number of seconds"),
    "max_requests": (_parse_int, "an integer"),
    "max_requests_jitter": (_parse_int, "an integer"),
    "worker_lifetime": (_parse_seconds, "a number of seconds"),
    "worker_lifetime_jitter": (_parse_seconds, "a number of seconds"),
    "worker_max_rss": (_parse_int, "an integer (MiB)"),
    "rss_interval": (_parse_seconds, "a number of seconds"),
    "rss_samples": (_parse_int, "an integer"),
    "metrics_address": (_parse_text, "a host"),
    "metrics_port": (_parse_optional_int, "an integer"),
    "access_log": (_parse_bool, "a boolean (1/0, true/false, yes/no, on/off)"),
    "access_log_format": (_parse_text, "a format"),
    "log_config": (_parse_optional_text, "a path"),
}

_ConfigT = TypeVar("_ConfigT", ServerConfig, ProcessConfig)


def env_name(option: str) -> str:
    """The environment variable of an option: ``env_name("max_body_size")`` is
    "THEFRAMEWORK_MAX_BODY_SIZE"."""
    return ENV_PREFIX + option.upper()


def config_from_env(base: _ConfigT, environ: Mapping[str, str]) -> _ConfigT:
    """``base`` (a ServerConfig or a ProcessConfig) with every option that has a
    THEFRAMEWORK_<OPTION> variable in ``environ`` replaced by its converted value. Other
    THEFRAMEWORK_ variables are ignored (they belong to other parts). A bad value raises
    ValueError naming the variable."""
    config = base
    for field in dataclasses.fields(base):
        variable = env_name(field.name)
        text = environ.get(variable)
        if text is None:
            continue
        parse, expected = _PARSERS[field.name]
        try:
            value: Any = parse(text)
        except ValueError:
            raise ValueError(f"{variable}={text!r} is not {expected}") from None
        try:
            config = dataclasses.replace(config, **{field.name: value})
        except ValueError as error:
            raise ValueError(f"{variable}={text!r}: {error}") from None
    return config
