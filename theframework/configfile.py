"""The config file (``--config PATH``, ``THEFRAMEWORK_CONFIG``): a Python file whose module-level
names are options (the long options with underscores: ``workers = 4``) and server hooks
(``def worker_start(worker_id): ...``).

``load_config_file(path)`` runs the file once per process and checks every public name: an
option's value is checked as the command line checks it, a hook must be a function taking its
arguments, and any other name is refused (``ConfigFileError``, exit 2), so that a misspelt option
or hook cannot be silently ignored. Names starting with ``_``, modules, and names bound by the
file's import statements (``from os import environ``) are left alone.

Precedence (theframework.config.layered_config): command line > THEFRAMEWORK_* > config file >
``[tool.theframework]`` of ./pyproject.toml (``load_pyproject_options``: options only) >
PORT / WEB_CONCURRENCY > defaults. A worker started by fork reuses its supervisor's loaded file;
under spawn and forkserver it runs the file again by path (hooks are never pickled). SIGHUP runs
it again in the supervisor (``reload_config_file``): new hooks apply at once, new option values
at the next start.

``Hooks`` calls the hooks: a hook that raises is logged with its name and traceback on the
``theframework.hooks`` logger (``call``), or, for the two that can stop a start (``on_starting``,
``worker_start``), raises ``HookFailed`` (``call_or_raise``; exit 3). Where each hook runs:
README.md, "Config file and hooks".
"""

from __future__ import annotations

import ast
import difflib
import inspect
import logging
import os
import re
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import OPTIONS, ProcessConfig, ServerConfig, check_value

__all__ = [
    "HOOKS",
    "HOOK_ALIASES",
    "NO_HOOKS",
    "SINGLE_PROCESS_WORKER_ID",
    "ConfigFile",
    "ConfigFileError",
    "HookConfig",
    "HookFailed",
    "Hooks",
    "hooks_for",
    "load_config_file",
    "load_pyproject_options",
    "reload_config_file",
]

logger = logging.getLogger("theframework.hooks")

# Every hook: its parameters (the arguments it is called with).
HOOKS: Mapping[str, tuple[str, ...]] = {
    "on_starting": ("config",),
    "when_ready": ("config",),
    "worker_start": ("worker_id",),
    "worker_ready": ("worker_id",),
    "worker_shutdown": ("worker_id",),
    "worker_exit": ("worker_id", "exit_code"),
    "on_reload": ("config",),
    "on_exit": ("config",),
    "pre_request": ("request",),
    "post_request": ("request", "status", "seconds"),
}
# Other names of a hook (gunicorn's): the file may use one or the other, not both.
HOOK_ALIASES: Mapping[str, str] = {"post_fork": "worker_start"}
# The worker id the hooks of a single process (--workers 1, no supervisor) receive.
SINGLE_PROCESS_WORKER_ID = 1

# gunicorn settings a migrating user is likely to write, and what to write instead.
_GUNICORN_NAMES: Mapping[str, str] = {
    "bind": "host and port, or uds",
    "wsgi_app": "app",
    "loglevel": "log_level",
    "logconfig": "log_config (a dictConfig JSON file)",
    "logconfig_dict": "log_config (a dictConfig JSON file)",
    "accesslog": "access_log = True",
    "pidfile": "pid_file",
    "raw_env": "env_files",
    "pythonpath": "app_dir",
    "timeout": "worker_timeout",
    "keepalive": "keepalive_timeout",
    "worker_connections": "max_connections",
    "limit_request_line": "max_header_size",
    "limit_request_field_size": "max_header_size",
    "child_exit": "worker_exit",
    "proxy_allow_ips": "forwarded_allow_ips",
    "secure_scheme_headers": "proxy_headers (X-Forwarded-Proto from forwarded_allow_ips peers)",
    "post_worker_init": "worker_ready (in the supervisor) or the app's startup hooks",
    "preload_app": "not supported, workers import the application themselves",
}

# The name the file runs under (sys.modules holds it while it runs).
_MODULE_NAME = "__theframework_config__"


class ConfigFileError(ValueError):
    """The config file cannot be used: unreadable, raising, or naming something unknown or
    invalid. ``message`` is the one line to report (exit 2), ``traceback`` what the file raised
    ("" if nothing)."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback


class HookFailed(Exception):
    """A hook that stops a start (on_starting, worker_start) raised; ``traceback`` is its
    formatted traceback. The start ends with exit 3."""

    def __init__(self, name: str, error: BaseException, formatted: str) -> None:
        super().__init__(f"the {name} hook raised {error!r}")
        self.name = name
        self.traceback = formatted


class HookConfig:
    """What ``on_starting``, ``when_ready``, ``on_reload`` and ``on_exit`` receive: the server's
    effective configuration, every option as an attribute (``config.workers``, ``config.port``),
    and the two records as ``server`` and ``process``."""

    __slots__ = ("process", "server")

    def __init__(self, server: ServerConfig, process: ProcessConfig) -> None:
        self.server = server
        self.process = process

    def __getattr__(self, name: str) -> Any:
        for part in (self.server, self.process):
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(f"no option named {name!r}")

    def __repr__(self) -> str:
        return f"HookConfig(server={self.server!r}, process={self.process!r})"


class Hooks:
    """The hook functions of a config file, by their canonical names (see HOOKS)."""

    __slots__ = ("functions",)

    def __init__(self, functions: Mapping[str, Callable[..., object]]) -> None:
        self.functions = dict(functions)

    def get(self, name: str) -> Callable[..., object] | None:
        """The hook ``name``, or None when the file does not define it."""
        return self.functions.get(name)

    def call(self, name: str, *arguments: object) -> bool:
        """Calls hook ``name`` if defined; an exception it raises is logged with the hook's name
        and traceback. False when it raised."""
        function = self.functions.get(name)
        if function is None:
            return True
        try:
            function(*arguments)
        except Exception:
            logger.exception("the %s hook raised", name)
            return False
        return True

    def call_or_raise(self, name: str, *arguments: object) -> None:
        """Calls hook ``name`` if defined; HookFailed when it raises (the caller stops the
        start and reports it)."""
        function = self.functions.get(name)
        if function is None:
            return
        try:
            function(*arguments)
        except Exception as error:
            raise HookFailed(name, error, traceback.format_exc()) from error


NO_HOOKS = Hooks({})


@dataclass(frozen=True)
class ConfigFile:
    """A loaded config file: its absolute ``path``, its ``options`` (checked values by option
    name) and its ``hooks``."""

    path: str
    options: Mapping[str, Any] = field(default_factory=dict)
    hooks: Hooks = NO_HOOKS


_OPTION_NAMES = frozenset(entry.name for entry in OPTIONS)
# Loaded files by absolute path: once per process (a forked worker inherits them).
_LOADED: dict[str, ConfigFile] = {}


def load_config_file(path: str) -> ConfigFile:
    """Runs the config file at ``path`` (once per process; later calls return the same result)
    and checks its names. ConfigFileError naming the file and the problem."""
    absolute = os.path.abspath(path)
    loaded = _LOADED.get(absolute)
    if loaded is None:
        loaded = _read(absolute, _run(path, absolute))
        _LOADED[absolute] = loaded
    return loaded


def reload_config_file(path: str) -> tuple[ConfigFile | None, ConfigFile]:
    """Runs the config file at ``path`` again (SIGHUP): (what was loaded before, or None; what
    is loaded now). ConfigFileError leaves the file loaded before in place."""
    absolute = os.path.abspath(path)
    before = _LOADED.get(absolute)
    after = _read(absolute, _run(path, absolute))
    _LOADED[absolute] = after
    return before, after


def hooks_for(process: ProcessConfig) -> Hooks:
    """The hooks of ``process.config_file`` (NO_HOOKS without one). ConfigFileError."""
    if process.config_file is None:
        return NO_HOOKS
    return load_config_file(process.config_file).hooks


PYPROJECT_TABLE = "[tool.theframework]"
# The table as a header ("[tool.theframework]") or in dotted keys ("tool.theframework.workers").
_MENTIONS_TABLE = re.compile(rb"tool\s*\.\s*theframework\b")


def load_pyproject_options(directory: str) -> dict[str, Any]:
    """The options of the ``[tool.theframework]`` table of ``directory``'s pyproject.toml
    (none without the file or the table), keys spelt with underscores or dashes, values checked
    as the command line checks them. Options only: no hooks, no ``config_file``. On Python 3.10
    without the tomli package the table is skipped with one line on stderr. ConfigFileError
    naming the file and the key."""
    path = os.path.join(directory, "pyproject.toml")
    table = _pyproject_table(path)
    where = f"{path} {PYPROJECT_TABLE}"
    options: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in HOOKS or name in HOOK_ALIASES:
            raise ConfigFileError(f"{where}: {key}: hooks go in a --config file, not in TOML")
        if name not in _OPTION_NAMES:
            raise ConfigFileError(f"{where}: {_unknown(name)}")
        options[name] = _checked_option(where, name, value)
    return options


def _pyproject_table(path: str) -> dict[str, Any]:
    """The ``[tool.theframework]`` table of the pyproject.toml at ``path`` ({} without one).
    A file that does not parse is refused only when it mentions the table."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigFileError(f"{path}: {error.strerror or error}") from None
    parse = _toml_parser()
    if parse is None:
        if _MENTIONS_TABLE.search(data):
            print(
                f"theframework: {path}: {PYPROJECT_TABLE} ignored: reading TOML needs Python "
                "3.11+ or the tomli package",
                file=sys.stderr,
            )
        return {}
    try:
        document = parse(data.decode("utf-8"))
    except ValueError as error:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        if _MENTIONS_TABLE.search(data):
            raise ConfigFileError(f"{path}: {error}") from None
        return {}  # another tool's broken file: not ours to refuse
    tools = document.get("tool")
    table = tools.get("theframework", {}) if isinstance(tools, dict) else {}
    if not isinstance(table, dict):
        raise ConfigFileError(f"{path}: {PYPROJECT_TABLE} must be a table")
    return table


def _toml_parser() -> Callable[[str], dict[str, Any]] | None:
    """tomllib.loads (Python 3.11+), else tomli's (Python 3.10 with tomli), else None."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads
    try:  # pragma: no cover - Python 3.10
        import tomli  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover
        return None
    loads: Callable[[str], dict[str, Any]] = tomli.loads  # pragma: no cover
    return loads  # pragma: no cover


def _run(path: str, absolute: str) -> tuple[types.ModuleType, set[str]]:
    """Runs the file as a module of its own, compiled from its source each time (no bytecode
    cache is read or written: an edit is always seen, and the file's directory stays as it
    is); the module and the names its imports bound."""
    if not os.path.isfile(absolute):
        reason = "no such file" if not os.path.exists(absolute) else "not a file"
        raise ConfigFileError(f"config file {path}: {reason}")
    try:
        with open(absolute, "rb") as stream:
            source = stream.read()
    except OSError as error:
        raise ConfigFileError(f"config file {path}: {error.strerror or error}") from None
    module = types.ModuleType(_MODULE_NAME)
    module.__file__ = absolute
    sys.modules[_MODULE_NAME] = module
    try:
        tree = ast.parse(source, absolute)
        exec(compile(tree, absolute, "exec", dont_inherit=True), module.__dict__)
    except Exception as error:
        raise ConfigFileError(
            f"config file {path} raised {error!r}", traceback.format_exc()
        ) from None
    finally:
        sys.modules.pop(_MODULE_NAME, None)
    return module, _imported_names(tree)


def _read(path: str, ran: tuple[types.ModuleType, set[str]]) -> ConfigFile:
    """The options and hooks of a module that ran (and the names its imports bound: left
    alone, like modules); ConfigFileError for the first bad name."""
    module, imported = ran
    options: dict[str, Any] = {}
    hooks: dict[str, Callable[..., object]] = {}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if name in HOOKS or name in HOOK_ALIASES:
            canonical = HOOK_ALIASES.get(name, name)
            if canonical in hooks:
                names = [alias for alias, target in HOOK_ALIASES.items() if target == canonical]
                raise ConfigFileError(
                    f"config file {path}: {' and '.join([*names, canonical])} are the same "
                    "hook; define one"
                )
            hooks[canonical] = _checked_hook(path, name, canonical, value)
        elif name in _OPTION_NAMES:
            options[name] = _checked_option(f"config file {path}", name, value)
        elif name not in imported and not isinstance(value, types.ModuleType):
            raise ConfigFileError(f"config file {path}: {_unknown(name)}")
    return ConfigFile(path, options, Hooks(hooks))


def _checked_option(where: str, name: str, value: Any) -> Any:
    """``value`` checked for option ``name``; ConfigFileError prefixed with ``where``."""
    if name == "config_file":
        raise ConfigFileError(f"{where}: config_file cannot be set here (use --config)")
    try:
        return check_value(name, value)
    except ValueError as error:
        raise ConfigFileError(f"{where}: {error}") from None


def _checked_hook(path: str, name: str, canonical: str, value: Any) -> Callable[..., object]:
    """``value`` if it is callable with the hook's arguments; else ConfigFileError."""
    parameters = HOOKS[canonical]
    expected = f"{name}({', '.join(parameters)})"
    if not callable(value):
        raise ConfigFileError(
            f"config file {path}: {name} must be a function {expected}, got {type(value).__name__}"
        )
    try:
        inspect.signature(value).bind(*parameters)
    except TypeError:
        raise ConfigFileError(
            f"config file {path}: the {name} hook must take {len(parameters)} argument(s): "
            f"{expected}"
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): taken as it is
    return value  # type: ignore[no-any-return]


def _imported_names(tree: ast.Module) -> set[str]:
    """The names the file's module-level import statements bind (also inside top-level if /
    try / with blocks): ``import os``, ``from os import environ as env``, ``from __future__ import
    annotations``."""
    names: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        statement = pending.pop()
        if isinstance(statement, ast.Import):
            names.update(
                (alias.asname or alias.name).partition(".")[0] for alias in statement.names
            )
        elif isinstance(statement, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in statement.names)
        elif isinstance(statement, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody"):
                pending.extend(getattr(statement, field, ()))
            for handler in getattr(statement, "handlers", ()):
                pending.extend(handler.body)
    return names


def _unknown(name: str) -> str:
    """The error for a name that is neither an option nor a hook."""
    message = f"unknown name {name!r}: not an option or a hook"
    hint = _GUNICORN_NAMES.get(name)
    if hint is not None:
        return f"{message} (gunicorn's {name}; here: {hint}; see docs/gunicorn-migration.md)"
    close = difflib.get_close_matches(name, [*_OPTION_NAMES, *HOOKS, *HOOK_ALIASES], n=1)
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return f"{message} (helpers and other values must start with '_')"
