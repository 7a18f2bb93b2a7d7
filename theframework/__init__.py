"""theframework: a Python HTTP framework and server on a C++20 io_uring engine with greenlets.

Handlers are plain functions ``handler(request, response)``; the native hub switches greenlets
whenever one would block.

The names below are loaded on first use (PEP 562), so that importing a part of the package (the
supervisor, ``theframework.monkey``) loads only what that part needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written: the build reads it from here (pyproject.toml,
# [tool.scikit-build.metadata.version]); `theframework --version` prints it.
__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "BootError": "theframework.server.boot",
    "SupervisorError": "theframework.process.supervisor",
    "Framework": "theframework.app",
    "HTTPError": "theframework.errors",
    "Headers": "theframework.datastructures",
    "Hub": "theframework._core",
    "ProcessConfig": "theframework.config",
    "QueryParams": "theframework.datastructures",
    "Request": "theframework._core",
    "Response": "theframework._core",
    "ServerConfig": "theframework.config",
    "WebSocket": "theframework._core",
    "WebSocketClosed": "theframework.errors",
    "offload": "theframework.runtime.offload",
    "serve": "theframework.main",
    "serve_wsgi": "theframework.main",
}

__all__ = [
    "BootError",
    "Framework",
    "HTTPError",
    "Headers",
    "Hub",
    "ProcessConfig",
    "QueryParams",
    "Request",
    "Response",
    "ServerConfig",
    "SupervisorError",
    "WebSocket",
    "WebSocketClosed",
    "__version__",
    "offload",
    "serve",
    "serve_wsgi",
]

if TYPE_CHECKING:
    from ._core import Hub, Request, Response, WebSocket
    from .app import Framework
    from .config import ProcessConfig, ServerConfig
    from .datastructures import Headers, QueryParams
    from .errors import HTTPError, WebSocketClosed
    from .main import serve, serve_wsgi
    from .process.supervisor import SupervisorError
    from .runtime.offload import offload
    from .server.boot import BootError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'theframework' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
