"""theframework: a Python HTTP framework and server on a C++20 io_uring engine with greenlets.

Handlers are plain functions ``handler(request, response)``; the native hub switches greenlets
whenever one would block.
"""

import logging

from . import _core
from ._core import Hub, Request, Response
from .app import Framework
from .config import ProcessConfig, ServerConfig
from .datastructures import Headers, QueryParams
from .errors import HTTPError
from .offload import offload
from .server import serve
from .wsgi import serve_wsgi

__version__ = "0.1.0"

__all__ = [
    "Framework",
    "HTTPError",
    "Headers",
    "Hub",
    "ProcessConfig",
    "QueryParams",
    "Request",
    "Response",
    "ServerConfig",
    "__version__",
    "offload",
    "serve",
    "serve_wsgi",
]

# The native module builds request.headers / request.query_params with these types and raises
# HTTPError (e.g. 400 for invalid JSON in request.json()); tracebacks of failing handlers go to the
# "theframework.error" logger, and errors escaping plain greenlets to the same logger.
_error_logger = logging.getLogger("theframework.error")


def _log_greenlet_error(error: BaseException) -> None:
    _error_logger.error("Unhandled exception in a greenlet", exc_info=error)


_core._configure(
    http_error=HTTPError,
    headers_factory=Headers,
    query_factory=QueryParams,
    logger=_error_logger,
    error_handler=_log_greenlet_error,
)
