"""theframework: a Python HTTP framework and server on a C++20 io_uring engine with greenlets.

Handlers are plain functions ``handler(request, response)``; the native hub switches greenlets
whenever one would block.
"""

from . import _core
from ._core import Hub, Request, Response
from .app import Framework
from .config import ServerConfig
from .datastructures import Headers, QueryParams
from .errors import HTTPError
from .server import serve

__version__ = "0.1.0"

__all__ = [
    "Framework",
    "HTTPError",
    "Headers",
    "Hub",
    "QueryParams",
    "Request",
    "Response",
    "ServerConfig",
    "__version__",
    "serve",
]

# The native module builds request.headers / request.query_params with these types and raises
# HTTPError (e.g. 400 for invalid JSON in request.json()).
_core._configure(http_error=HTTPError, headers_factory=Headers, query_factory=QueryParams)
