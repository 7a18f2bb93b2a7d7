"""The PEP 3333 layer: serves an unmodified WSGI application on the native server. It knows
nothing of processes and does not import the app layer."""

from .adapter import (
    BUFFER_LIMIT,
    FileWrapper,
    StartResponse,
    WSGIAdapter,
    WSGIApplication,
    WSGIInput,
)

__all__ = [
    "BUFFER_LIMIT",
    "FileWrapper",
    "StartResponse",
    "WSGIAdapter",
    "WSGIApplication",
    "WSGIInput",
]
