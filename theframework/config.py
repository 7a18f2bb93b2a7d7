"""Configuration: ONE table of options, and everything made from it.

Each option is declared once, as an ``Option`` in ``OPTIONS``: its name, default, how text (an
environment variable or a command-line argument) becomes a value, the check of a value, its help,
its command-line form, and which part of the server reads it. From that table come:

- the defaults and the validation of the two frozen dataclasses (``ServerConfig``: what every
  serving process uses; ``ProcessConfig``: how many processes serve and how they are run);
- ``config_from_env`` (``THEFRAMEWORK_<OPTION>`` variables);
- the command line (``cli.build_parser``);
- the options table in README.md (``options_markdown``; a test fails when they disagree).

Precedence, highest first (``layered_config``): command line, THEFRAMEWORK_<OPTION>, the
config file (``--config``, theframework.configfile), the ``[tool.theframework]`` table of
./pyproject.toml, the conventional variable of a few options (PORT for --port, WEB_CONCURRENCY
for --workers, as on Heroku and Cloud Run), defaults.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "BACKENDS",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "ENV_PREFIX",
    "INTERFACES",
    "LOG_LEVELS",
    "OPTIONS",
    "START_METHODS",
    "Option",
    "ProcessConfig",
    "ServerConfig",
    "check_value",
    "config_from_env",
    "env_name",
    "env_value",
    "layered_config",
    "octal_mode",
    "option",
    "options_markdown",
]

BACKENDS = ("auto", "io_uring", "epoll")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
INTERFACES = ("auto", "framework", "wsgi")
START_METHODS = ("auto", "fork", "spawn", "forkserver")
ENV_PREFIX = "THEFRAMEWORK_"
# The access log line (see theframework.server.accesslog for the fields): common-log-like.
DEFAULT_ACCESS_LOG_FORMAT = (
    '%(client)s "%(method)s %(path)s %(version)s" %(status)s %(bytes)s %(duration_ms).2fms'
)

# Which part of the server reads an option:
# engine: the native HttpServer (handed over as keyword arguments);
# server: every serving process (the single process, or each worker);
# worker: each worker's boot (also the single process's);
# runtime: theframework.runtime.offload and theframework.monkey, at their first use (from the
# environment, so that a program that uses them without the server reads them too);
# processes: the choice of one process or a supervisor, and how workers start;
# supervisor: only the supervisor (refused with --workers 1).
Reader = Literal["engine", "server", "worker", "runtime", "processes", "supervisor"]
# What the command line does: takes a value; is a flag (True when given); is repeatable.
# "toggle": a boolean with a --no- form (--proxy-headers / --no-proxy-headers).
CliKind = Literal["value", "flag", "toggle", "append", "positional"]

_Check = Callable[[str, Any], None]


@dataclass(frozen=True, slots=True)
class Option:
    """One option, declared once. ``parse`` turns environment text into a value (ValueError when
    it cannot); ``check(name, value)`` raises ValueError naming the option for a bad value."""

    name: str
    # "server": a ServerConfig field; "process": a ProcessConfig field.
    section: Literal["server", "process"]
    default: Any
    parse: Callable[[str], Any]
    # What ``parse`` expects, for error messages: "an integer".
    expected: str
    check: _Check
    help: str
    reader: Reader
    # argparse ``type`` of a value option (its __name__ shows in argparse's messages).
    cli_type: Callable[[str], Any] = str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    cli: CliKind = "value"
    # The command-line flag when it is not --<name with dashes>.
    flag: str | None = None
    # A conventional variable read when THEFRAMEWORK_<NAME> is unset (PORT, WEB_CONCURRENCY).
    fallback_env: str | None = None
    # The environment variable when it is not THEFRAMEWORK_<NAME> (THEFRAMEWORK_CONFIG).
    variable: str | None = None

    @property
    def env(self) -> str:
        """The environment variable: THEFRAMEWORK_<NAME>, unless ``variable`` names another."""
        return self.variable or env_name(self.name)

    @property
    def cli_flag(self) -> str:
        """The command-line flag ("--max-body-size"), or "APP" for the positional argument."""
        if self.cli == "positional":
            return "APP"
        return self.flag or "--" + self.name.replace("_", "-")


# -- value checks (each raises ValueError naming the option) --------------------------------------


def _integer(minimum: int, maximum: int | None = None, *, optional: bool = False) -> _Check:
    def check(name: str, value: Any) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"{name} must be {bounds}, got {value}")

    return check


def _seconds(*, allow_zero: bool = False) -> _Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number of seconds, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            requirement = "finite and >= 0" if allow_zero else "finite and > 0"
            raise ValueError(f"{name} must be {requirement} seconds, got {value}")

    return check


def _text(what: str, *, optional: bool = False) -> _Check:
    def check(name: str, value: Any) -> None:
        if optional and value is None:
            return
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be {what}, got {value!r}")

    return check


def _choice(choices: tuple[str, ...], *, any_case: bool = False, optional: bool = False) -> _Check:
    def check(name: str, value: Any) -> None:
        if optional and value is None:
            return
        word = value.lower() if any_case and isinstance(value, str) else value
        if word not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")

    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _address_list(name: str, value: Any) -> None:
    """A comma-separated list of IP addresses, CIDR networks (address/prefix-length) and "*"."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a comma-separated list of addresses, got {value!r}")
    for entry in (part.strip() for part in value.split(",")):
        if not entry or entry == "*":
            continue
        address, slash, prefix = entry.partition("/")
        try:
            ipaddress.ip_address(address)
            if slash and not (prefix.isdigit() and len(prefix) <= 3):
                raise ValueError(entry)
            if slash:
                ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{name}: {entry!r} is not an IP address, a network (address/prefix) or '*'"
            ) from None


def _paths(name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(path, str) and path for path in value):
        raise ValueError(f"{name} must be a tuple of paths, got {value!r}")


def _app_reference(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or ":" not in value):
        raise ValueError(f"{name} must be 'module:attribute', got {value!r}")


def _file_mode(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"{name} must be an octal mode between 0 and 0777, got {value!r}")


def _group(name: str, value: Any) -> None:
    """A group that exists on this machine: a name, or a number."""
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a group name or number, got {value!r}")
    import grp

    try:
        if value.isdigit():
            grp.getgrgid(int(value))
        else:
            grp.getgrnam(value)
    except KeyError:
        raise ValueError(f"{name}: no group {value!r} on this machine") from None


def _descriptors(name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(fd, int) and not isinstance(fd, bool) and fd >= 0 for fd in value
    ):
        raise ValueError(f"{name} must be a tuple of file descriptor numbers, got {value!r}")


def _url_prefix(name: str, value: Any) -> None:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ValueError(f"{name} must be empty or start with '/', got {value!r}")


# -- text parsers (environment variables) ---------------------------------------------------------


def _parse_int(text: str) -> int:
    return int(text.strip().replace("_", ""))


def _parse_seconds(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _parse_optional_int(text: str) -> int | None:
    return _parse_int(text) if text.strip() else None


def octal_mode(text: str) -> int | None:
    """An octal file mode ("0660", "660", "0o660"); None for an empty text."""
    word = text.strip().lower().removeprefix("0o")
    return int(word, 8) if word else None


def _parse_descriptors(text: str) -> tuple[int, ...]:
    return tuple(_parse_int(part) for part in text.replace(",", " ").split())


def _parse_optional_text(text: str) -> str | None:
    return text or None


def _parse_text(text: str) -> str:
    return text


def _parse_lower(text: str) -> str:
    return text.strip().lower()


def _parse_optional_lower(text: str) -> str | None:
    return text.strip().lower() or None


def _parse_paths(text: str) -> tuple[str, ...]:
    return tuple(path for path in text.split(os.pathsep) if path)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_BOOLEAN_TEXT = "a boolean (1/0, true/false, yes/no, on/off)"


def _parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(text)


# -- option constructors --------------------------------------------------------------------------


def _int(
    name: str,
    section: Literal["server", "process"],
    default: int | None,
    help: str,
    reader: Reader,
    *,
    minimum: int,
    maximum: int | None = None,
    metavar: str = "N",
    optional: bool = False,
    expected: str = "an integer",
) -> Option:
    return Option(
        name,
        section,
        default,
        _parse_optional_int if optional else _parse_int,
        expected,
        _integer(minimum, maximum, optional=optional),
        help,
        reader,
        cli_type=int,
        metavar=metavar,
    )


def _secs(
    name: str,
    section: Literal["server", "process"],
    default: float,
    help: str,
    reader: Reader,
    *,
    allow_zero: bool = False,
) -> Option:
    return Option(
        name,
        section,
        default,
        _parse_seconds,
        "a number of seconds",
        _seconds(allow_zero=allow_zero),
        help,
        reader,
        cli_type=float,
        metavar="SECONDS",
    )


def _str(
    name: str,
    section: Literal["server", "process"],
    default: str | None,
    help: str,
    reader: Reader,
    *,
    what: str,
    expected: str,
    metavar: str,
    check: _Check | None = None,
) -> Option:
    optional = default is None
    return Option(
        name,
        section,
        default,
        _parse_optional_text if optional else _parse_text,
        expected,
        check or _text(what, optional=optional),
        help,
        reader,
        metavar=metavar,
    )


def _enum(
    name: str,
    section: Literal["server", "process"],
    default: str,
    choices: tuple[str, ...],
    help: str,
    reader: Reader,
    *,
    expected: str,
) -> Option:
    return Option(
        name,
        section,
        default,
        _parse_lower,
        expected,
        _choice(choices, any_case=name == "log_level"),
        help,
        reader,
        cli_type=str.lower,
        choices=choices,
    )


def _globs(name: str, help: str, metavar: str, flag: str) -> Option:
    """A repeatable ProcessConfig option of --reload holding paths or globs (a tuple)."""
    return Option(
        name, "process", (), _parse_paths, f"a list separated by {os.pathsep!r}", _paths, help,
        "processes", metavar=metavar, cli="append", flag=flag,
    )  # fmt: skip


def _flag(
    name: str,
    section: Literal["server", "process"],
    help: str,
    reader: Reader,
    *,
    default: bool = False,
) -> Option:
    """A boolean: a flag that sets it when off by default, a --X / --no-X toggle when on."""
    return Option(
        name, section, default, _parse_bool, _BOOLEAN_TEXT, _boolean, help, reader,
        cli="toggle" if default else "flag",
    )  # fmt: skip


# The table. Order is the order of --help and of README's table.
OPTIONS: tuple[Option, ...] = (
    # -- ServerConfig: every serving process -----------------------------------------------------
    Option("app", "server", None, _parse_optional_text, "a 'module:attribute' import string",
           _app_reference, "the application as module:attribute, e.g. myapp:app; "
           "module:create_app() calls a factory", "server", cli="positional"),
    _flag("factory", "server", "APP names a factory: call it with no arguments at start to get "
          "the application", "server"),
    _str("host", "server", "127.0.0.1", "TCP address to listen on; IPv6 when it contains ':'",
         "server", what="a non-empty string", expected="a host", metavar="HOST"),
    dataclasses.replace(
        _int("port", "server", 8000, "TCP port (0: any free port)", "server", minimum=0,
             maximum=65535, metavar="PORT"), fallback_env="PORT"),
    _str("uds", "server", None, "listen on this UNIX socket instead of TCP", "server",
         what="a non-empty path", expected="a path", metavar="PATH"),
    Option("uds_mode", "server", None, octal_mode, "an octal mode", _file_mode,
           "permissions of the --uds socket file, octal (e.g. 0660: owner and group may "
           "connect), set before it listens; unset: the umask decides", "server",
           cli_type=octal_mode, metavar="MODE"),
    _str("uds_group", "server", None, "group owning the --uds socket file (name or number), "
         "set before it listens", "server", what="a group", expected="a group",
         metavar="GROUP", check=_group),
    Option("fds", "server", (), _parse_descriptors, "file descriptor numbers separated by "
           "spaces or commas", _descriptors, "serve this inherited listening socket instead "
           "of binding (repeatable); systemd socket activation (LISTEN_FDS) does this by "
           "itself", "server", cli_type=int, metavar="N", cli="append", flag="--fd"),
    _int("backlog", "server", 1024, "listen backlog", "server", minimum=1),
    _enum("backend", "server", "auto", BACKENDS, "I/O backend; auto tries io_uring, then epoll "
          "when the kernel or seccomp refuses it (the startup log says which and why)", "server",
          expected="a backend name"),
    _int("max_header_size", "server", 32768, "largest request line + headers (431 above; 100 "
         "headers at most; a request line over 8 KiB: 414)", "engine", minimum=1,
         metavar="BYTES"),
    _int("max_body_size", "server", 1048576, "largest request body (413 above, checked from "
         "Content-Length before reading and while decoding chunks)", "engine", minimum=1,
         metavar="BYTES"),
    _secs("header_timeout", "server", 10.0, "time allowed to receive the headers (408 and close "
          "after)", "engine"),
    _secs("body_timeout", "server", 30.0, "time allowed between two reads of the body (408 "
          "after)", "engine"),
    _secs("keepalive_timeout", "server", 5.0, "how long an idle keep-alive connection stays open",
          "engine"),
    _secs("write_timeout", "server", 30.0, "how long a write may wait for the client", "engine"),
    _int("max_connections", "server", 1024, "open connections per process; beyond it the "
         "process stops accepting and the kernel backlog holds newcomers", "engine", minimum=1),
    _int("ws_max_message_size", "server", 1048576, "largest WebSocket message received; a "
         "larger one closes the WebSocket with 1009 (0: no limit)", "engine", minimum=0,
         metavar="BYTES"),
    _int("ws_max_queue", "server", 32, "WebSocket messages received but not yet taken by "
         "receive() (or by a listen() callback); when that many wait, the server stops reading "
         "the socket (backpressure)",
         "engine", minimum=1, metavar="MESSAGES"),
    _secs("ws_ping_interval", "server", 20.0, "silence on a WebSocket after which a waiting "
          "receive(), or the server for a listening one, sends a keep-alive ping (0: no pings)",
          "engine", allow_zero=True),
    _secs("ws_ping_timeout", "server", 20.0, "time a WebSocket ping (or our close frame) waits "
          "for its answer; a client that does not answer is closed with 1011", "engine"),
    _enum("ws_compression", "server", "deflate", ("deflate", "deflate-no-context", "none"),
          "WebSocket permessage-deflate: accept the client's offer (windows of at most 4 KiB, "
          "see docs/websocket.md), accept it without context takeover either way (no zlib state "
          "kept between messages: ~1 KiB per idle WebSocket instead of ~50 KiB) or never "
          "compress", "engine", expected="deflate, deflate-no-context or none"),
    _secs("graceful_timeout", "server", 30.0, "time in-flight requests get to finish at shutdown",
          "server", allow_zero=True),
    _enum("log_level", "server", "info", LOG_LEVELS, "logging level", "server",
          expected="a log level"),
    _enum("interface", "server", "auto", INTERFACES,
          "what APP is: a Framework/handler, a WSGI app, or auto-detected", "server",
          expected="an interface"),
    _str("root_path", "server", "", "URL prefix the WSGI app is mounted under (SCRIPT_NAME)",
         "server", what="a URL path", expected="a URL path", metavar="PATH", check=_url_prefix),
    dataclasses.replace(
        _str("forwarded_allow_ips", "server", "127.0.0.1,::1", "peers trusted as proxies: "
             "comma-separated addresses, CIDR networks and '*'; UNIX-socket peers are always "
             "trusted (docs/deployment.md)", "engine", what="a list of addresses",
             expected="a list of addresses", metavar="LIST", check=_address_list),
        fallback_env="FORWARDED_ALLOW_IPS"),
    _flag("proxy_headers", "server", "believe X-Forwarded-For/-Proto/-Host/-Port and Forwarded "
          "from trusted peers (client, scheme, host of requests and the access log)", "engine",
          default=True),
    _flag("proxy_protocol", "server", "every connection starts with a PROXY protocol v1/v2 "
          "header (HAProxy send-proxy); connections from untrusted peers or without a valid "
          "header are closed", "engine"),
    # -- ProcessConfig: how processes are run -----------------------------------------------------
    dataclasses.replace(
        _int("workers", "process", 1, "worker processes; 1 serves in this process, 0 one per "
         "CPU (the smaller of the CPU affinity and the cgroup CPU quota, rounded up)",
         "processes", minimum=0), fallback_env="WEB_CONCURRENCY"),
    _enum("start_method", "process", "auto", START_METHODS,
          "how workers start; auto forks a single-threaded supervisor", "processes",
          expected="a start method"),
    _secs("startup_timeout", "process", 60.0, "time a worker gets to report ready",
          "processes"),
    _str("proc_name", "process", "theframework",
         "process titles '<NAME> master' / '<NAME> worker-<id>' (without setproctitle, "
         "15-byte forms: tf:master / tf:w<id>)", "worker",
         what="a non-empty string", expected="a name", metavar="NAME"),
    Option("env_files", "process", (), _parse_paths,
           f"a list of paths separated by {os.pathsep!r}", _paths,
           "load KEY=VALUE lines into each worker before the application is imported; "
           "repeatable, later files win, the environment wins over files", "worker",
           metavar="PATH", cli="append", flag="--env-file"),
    dataclasses.replace(
        _str("config_file", "process", None, "a Python file of options (module-level names, as "
             "the long options with underscores) and server hooks; the command line and "
             "THEFRAMEWORK_* win over it (README: Config file and hooks)", "server",
             what="a non-empty path", expected="a path", metavar="PATH"),
        flag="--config", variable=ENV_PREFIX + "CONFIG"),
    _str("chdir", "process", None, "change to this directory before loading the application",
         "server", what="a non-empty path", expected="a path", metavar="DIR"),
    _str("app_dir", "process", None, "look up APP in this directory first (put at the front "
         "of sys.path; default: the current directory)", "server", what="a non-empty path",
         expected="a path", metavar="DIR"),
    _str("pid_file", "process", None, "write the server's pid here once ready (refused when it "
         "names a live process; removed at exit if it still holds our pid)", "server",
         what="a non-empty path", expected="a path", metavar="PATH"),
    _flag("patch_all", "process", "call theframework.monkey.patch_all() in each worker before "
          "the application is imported", "worker"),
    _secs("worker_timeout", "process", 30.0, "kill and respawn a worker whose hub loop stalls "
          "this long, after logging its tracebacks (0: off)", "supervisor", allow_zero=True),
    _int("max_requests", "process", 0, "recycle a worker after N requests (0: never)",
         "supervisor", minimum=0),
    _int("max_requests_jitter", "process", 0, "add a random 0..N to --max-requests per worker",
         "supervisor", minimum=0),
    _secs("worker_lifetime", "process", 0.0, "recycle a worker after this long (0: never)",
          "supervisor", allow_zero=True),
    _secs("worker_lifetime_jitter", "process", 0.0,
          "add a random 0..SECONDS to --worker-lifetime", "supervisor", allow_zero=True),
    _int("worker_max_rss", "process", 0, "recycle a worker whose resident memory exceeds this "
         "MiB (0: never)", "supervisor", minimum=0, metavar="MIB",
         expected="an integer (MiB)"),
    _secs("rss_interval", "process", 5.0, "how often --worker-max-rss samples the memory",
          "supervisor"),
    _int("rss_samples", "process", 3, "consecutive samples above --worker-max-rss before "
         "recycling", "supervisor", minimum=1, metavar="K"),
    _str("metrics_address", "process", "127.0.0.1", "address of the Prometheus endpoint",
         "supervisor", what="a host", expected="a host", metavar="HOST"),
    _int("metrics_port", "process", None, "serve Prometheus metrics on this port (0: any free "
         "port)", "supervisor", minimum=0, maximum=65535, metavar="PORT", optional=True),
    _flag("access_log", "process", "log every request to the 'theframework.access' logger",
          "worker"),
    _str("access_log_format", "process", DEFAULT_ACCESS_LOG_FORMAT, "access log line, %-style "
         "over named fields and header atoms, or a preset: combined, common (nginx's formats; "
         "docs/operations.md)", "worker", what="a non-empty string",
         expected="a format", metavar="FORMAT"),
    _int("offload_threads", "process", None, "threads of offload(); unset: min(32, CPUs + 4)",
         "runtime", minimum=1, optional=True),
    _int("offload_processes", "process", None, "processes of offload(..., process=True); "
         "unset: one per CPU", "runtime", minimum=1, optional=True),
    Option("offload_start_method", "process", None, _parse_optional_lower, "a start method",
           _choice(("spawn", "forkserver", "fork"), optional=True), "how offload's processes "
           "start (unset: spawn)", "runtime", cli_type=str.lower,
           choices=("spawn", "forkserver", "fork")),
    _int("dns_threads", "process", 4, "threads resolving host names for patched sockets",
         "runtime", minimum=1),
    _str("log_config", "process", None, "a logging dictConfig JSON file applied after the "
         "default set-up", "worker", what="a non-empty path", expected="a path",
         metavar="PATH"),
    # -- development: --reload (theframework.process.reloader) -----------------------------------
    _flag("reload", "process", "development: watch the source files and, on a change, start a "
          "new worker with the new code and stop the old one once it is ready (one worker; "
          "needs theframework[reload])", "processes"),
    _globs("reload_dirs", "directories --reload watches; repeatable (default: --app-dir, else "
           "the current directory)", "DIR", "--reload-dir"),
    _globs("reload_includes", "file-name globs --reload watches, besides *.py; repeatable",
           "GLOB", "--reload-include"),
    _globs("reload_excludes", "globs --reload ignores (a file or any directory above it), "
           "besides .git, __pycache__, .venv, *.pyc; repeatable", "GLOB", "--reload-exclude"),
)  # fmt: skip

_BY_NAME = {entry.name: entry for entry in OPTIONS}


def option(name: str) -> Option:
    """The declaration of option ``name`` (KeyError for an unknown one)."""
    return _BY_NAME[name]


def _default(name: str) -> Any:
    return _BY_NAME[name].default


def _validate(config: object, section: str) -> None:
    for entry in OPTIONS:
        if entry.section == section:
            entry.check(entry.name, getattr(config, entry.name))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What every serving process uses, validated on construction (ValueError naming the
    option); defaults, checks and help are in ``OPTIONS``. Build variants with
    ``dataclasses.replace(config, port=9000)``."""

    app: str | None = _default("app")
    factory: bool = _default("factory")
    host: str = _default("host")
    port: int = _default("port")
    uds: str | None = _default("uds")
    uds_mode: int | None = _default("uds_mode")
    uds_group: str | None = _default("uds_group")
    fds: tuple[int, ...] = _default("fds")
    backlog: int = _default("backlog")
    backend: str = _default("backend")
    max_header_size: int = _default("max_header_size")
    max_body_size: int = _default("max_body_size")
    header_timeout: float = _default("header_timeout")
    body_timeout: float = _default("body_timeout")
    keepalive_timeout: float = _default("keepalive_timeout")
    write_timeout: float = _default("write_timeout")
    max_connections: int = _default("max_connections")
    ws_max_message_size: int = _default("ws_max_message_size")
    ws_max_queue: int = _default("ws_max_queue")
    ws_ping_interval: float = _default("ws_ping_interval")
    ws_ping_timeout: float = _default("ws_ping_timeout")
    ws_compression: str = _default("ws_compression")
    graceful_timeout: float = _default("graceful_timeout")
    log_level: str = _default("log_level")
    interface: str = _default("interface")
    root_path: str = _default("root_path")
    forwarded_allow_ips: str = _default("forwarded_allow_ips")
    proxy_headers: bool = _default("proxy_headers")
    proxy_protocol: bool = _default("proxy_protocol")

    def __post_init__(self) -> None:
        _validate(self, "server")

    @property
    def bind_description(self) -> str:
        """The listening address as written in logs: "fd:3,4" (inherited sockets),
        "unix:/path" or "host:port"."""
        if self.fds:
            return "fd:" + ",".join(str(fd) for fd in self.fds)
        if self.uds is not None:
            return f"unix:{self.uds}"
        host = self.host.strip("[]")
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def engine_limits(self) -> dict[str, Any]:
        """The options the native HttpServer takes as keyword arguments (reader "engine")."""
        return {
            entry.name: getattr(self, entry.name) for entry in OPTIONS if entry.reader == "engine"
        }


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """How many processes serve and how they are run, validated on construction (ValueError
    naming the option); defaults, checks and help are in ``OPTIONS``."""

    workers: int = _default("workers")
    start_method: str = _default("start_method")
    startup_timeout: float = _default("startup_timeout")
    proc_name: str = _default("proc_name")
    env_files: tuple[str, ...] = _default("env_files")
    config_file: str | None = _default("config_file")
    chdir: str | None = _default("chdir")
    app_dir: str | None = _default("app_dir")
    pid_file: str | None = _default("pid_file")
    patch_all: bool = _default("patch_all")
    worker_timeout: float = _default("worker_timeout")
    max_requests: int = _default("max_requests")
    max_requests_jitter: int = _default("max_requests_jitter")
    worker_lifetime: float = _default("worker_lifetime")
    worker_lifetime_jitter: float = _default("worker_lifetime_jitter")
    worker_max_rss: int = _default("worker_max_rss")
    rss_interval: float = _default("rss_interval")
    rss_samples: int = _default("rss_samples")
    metrics_address: str = _default("metrics_address")
    metrics_port: int | None = _default("metrics_port")
    access_log: bool = _default("access_log")
    access_log_format: str = _default("access_log_format")
    offload_threads: int | None = _default("offload_threads")
    offload_processes: int | None = _default("offload_processes")
    offload_start_method: str | None = _default("offload_start_method")
    dns_threads: int = _default("dns_threads")
    log_config: str | None = _default("log_config")
    reload: bool = _default("reload")
    reload_dirs: tuple[str, ...] = _default("reload_dirs")
    reload_includes: tuple[str, ...] = _default("reload_includes")
    reload_excludes: tuple[str, ...] = _default("reload_excludes")

    def __post_init__(self) -> None:
        _validate(self, "process")

    def supervisor_only_options_set(self) -> list[str]:
        """The options only a supervisor reads whose value is not the default: meaningless
        with ``workers`` 1."""
        return [
            entry.name
            for entry in OPTIONS
            if entry.reader == "supervisor" and getattr(self, entry.name) != entry.default
        ]

    @property
    def supervised(self) -> bool:
        """True when a supervisor runs worker processes (``workers`` is not 1, or ``reload``:
        the supervisor replaces its one worker on each change)."""
        return self.workers != 1 or self.reload


def _check_table() -> None:
    """The dataclasses and the table name the same options, with the same defaults."""
    for config_type, section in ((ServerConfig, "server"), (ProcessConfig, "process")):
        fields = {field.name: field.default for field in dataclasses.fields(config_type)}
        declared = {entry.name: entry.default for entry in OPTIONS if entry.section == section}
        if fields != declared:
            raise AssertionError(f"{config_type.__name__} and OPTIONS disagree")


_check_table()

_ConfigT = TypeVar("_ConfigT", ServerConfig, ProcessConfig)


def env_name(name: str) -> str:
    """The environment variable of an option: ``env_name("max_body_size")`` is
    "THEFRAMEWORK_MAX_BODY_SIZE"."""
    return ENV_PREFIX + name.upper()


def _variable_value(entry: Option, variable: str, text: str) -> Any:
    """``text`` (the value of ``variable``) converted for ``entry``; ValueError naming the
    variable."""
    try:
        return entry.parse(text)
    except ValueError:
        raise ValueError(f"{variable}={text!r} is not {entry.expected}") from None


def _replace(config: _ConfigT, name: str, value: Any, source: str) -> _ConfigT:
    """``config`` with ``name`` set to ``value``; ValueError prefixed with ``source``."""
    try:
        return dataclasses.replace(config, **{name: value})
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _apply_environment(
    config: _ConfigT,
    environ: Mapping[str, str],
    *,
    primary: bool = True,
    fallbacks: bool = True,
    skip: Iterable[str] = (),
) -> _ConfigT:
    """``config`` with its options' variables from ``environ`` applied: THEFRAMEWORK_<OPTION>
    (``primary``) and, where that is unset, the conventional one (``fallbacks``: PORT,
    WEB_CONCURRENCY). Options in ``skip`` are left alone."""
    skipped = set(skip)
    for field in dataclasses.fields(config):
        entry = _BY_NAME[field.name]
        if entry.name in skipped:
            continue
        variable = entry.env
        text = environ.get(variable)
        if text is None:
            if not fallbacks or entry.fallback_env is None:
                continue
            variable = entry.fallback_env
            text = environ.get(variable)
            if text is None:
                continue
        elif not primary:
            continue
        config = _replace(
            config, field.name, _variable_value(entry, variable, text), f"{variable}={text!r}"
        )
    return config


def config_from_env(base: _ConfigT, environ: Mapping[str, str]) -> _ConfigT:
    """``base`` (a ServerConfig or a ProcessConfig) with every option that has a
    THEFRAMEWORK_<OPTION> variable in ``environ`` replaced by its converted value (else its
    conventional variable, PORT or WEB_CONCURRENCY). Other THEFRAMEWORK_ variables are ignored
    (they belong to other parts). A bad value raises ValueError naming the variable."""
    return _apply_environment(base, environ)


def layered_config(
    config_type: type[_ConfigT],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    source: str = "config file",
) -> _ConfigT:
    """A ServerConfig or ProcessConfig built in the order of precedence, lowest first: defaults,
    the conventional variables (PORT, WEB_CONCURRENCY; not read for an option the file sets),
    ``file_values`` (the options of the config file over those of pyproject.toml, checked
    values), THEFRAMEWORK_<OPTION>,
    ``given`` (the command line). Names of the other section are ignored. ValueError naming the
    variable, or ``source`` and the option for a file value."""
    names = {field.name for field in dataclasses.fields(config_type)}
    from_file = {name: value for name, value in file_values.items() if name in names}
    config = _apply_environment(config_type(), environ, primary=False, skip=from_file)
    for name, value in from_file.items():
        config = _replace(config, name, value, source)
    config = _apply_environment(config, environ, fallbacks=False)
    chosen = {name: value for name, value in given.items() if name in names}
    return dataclasses.replace(config, **chosen) if chosen else config


def check_value(name: str, value: Any) -> Any:
    """A Python value for option ``name`` (from a config file) checked as the command line
    checks its value, and returned in the option's form: a list becomes a tuple for a
    repeatable option, a choice is lower-cased as on the command line. KeyError for an unknown
    option; ValueError naming the option."""
    entry = _BY_NAME[name]
    if entry.cli == "append" and isinstance(value, list):
        value = tuple(value)
    if entry.choices and isinstance(value, str):
        value = value.lower()
    entry.check(name, value)
    return value


def env_value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """Option ``name``'s value from its THEFRAMEWORK_ variable (``os.environ`` by default), or
    its default when the variable is unset or empty. ValueError naming the variable."""
    entry = _BY_NAME[name]
    text = (os.environ if environ is None else environ).get(entry.env, "")
    if not text.strip():
        return entry.default
    try:
        value = entry.parse(text)
    except ValueError:
        raise ValueError(f"{entry.env}={text!r} is not {entry.expected}") from None
    try:
        entry.check(name, value)
    except ValueError as error:
        raise ValueError(f"{entry.env}={text!r}: {error}") from None
    return value


def _markdown_default(entry: Option) -> str:
    if entry.default is None or entry.default == ():
        return "unset"
    if isinstance(entry.default, bool):
        return "on" if entry.default else "off"
    return f"`{entry.default}`"


# README.md holds options_markdown() between these two lines (scripts/readme_options.py writes it).
README_BEGIN = (
    "<!-- options table: made by scripts/readme_options.py from theframework/config.py -->"
)
README_END = "<!-- end of options table -->"


def options_markdown(entries: Iterable[Option] = OPTIONS) -> str:
    """The options table of README.md (Markdown), made from ``OPTIONS``."""
    lines = [
        "| option | environment | default | read by | what it does |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        text = entry.help.replace("|", "\\|")
        if entry.choices:
            text += f" ({', '.join(entry.choices)})"
        default = _markdown_default(entry).replace("|", "\\|")
        flag = entry.cli_flag
        if entry.cli in ("value", "append") and entry.metavar and not entry.choices:
            flag += f" {entry.metavar}"
        if entry.cli == "toggle":
            flag += f"` / `--no-{flag[2:]}"
        variables = f"`{entry.env}`"
        if entry.fallback_env is not None:
            variables += f", else `{entry.fallback_env}`"
        lines.append(f"| `{flag}` | {variables} | {default} | {entry.reader} | {text} |")
    return "\n".join(lines) + "\n"
