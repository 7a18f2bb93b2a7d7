"""Loading the application: an import string or an object, and which interface it speaks (a
Framework / ``handler(request, response)``, or a PEP 3333 WSGI application)."""

from __future__ import annotations

import importlib
import inspect
import logging

from .._core import Request
from ..app import Framework, Handler
from ..config import ServerConfig
from ..wsgi import WSGIAdapter

__all__ = ["AppLoadError", "detect_interface", "import_from_string", "load_app"]

logger = logging.getLogger("theframework")


class AppLoadError(ValueError):
    """The application reference is unusable: not "module:attribute", the attribute is missing,
    or the object is not callable. (Errors raised while importing the module propagate as
    themselves.)"""


def import_from_string(reference: str) -> object:
    """Imports "module:attribute" (attribute may be dotted: "pkg.mod:factory.app")."""
    module_name, separator, attribute = reference.partition(":")
    if not separator or not module_name or not attribute:
        raise AppLoadError(f"application must be given as 'module:attribute', got {reference!r}")
    module = importlib.import_module(module_name)
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target


def load_app(
    app: object, config: ServerConfig | None = None, *, multiprocess: bool = False
) -> Handler:
    """The request handler for ``app``: a Framework, any ``handler(request, response)`` callable,
    a WSGI application (wrapped in a WSGIAdapter), or an import string naming one.
    ``config.interface`` says which ("auto": detected, see wsgi.detect_interface); without
    ``config`` the object is returned as it is. ``multiprocess``: wsgi.multiprocess (a worker
    of a supervisor)."""
    target = import_from_string(app) if isinstance(app, str) else app
    if not callable(target):
        raise AppLoadError(f"application {app!r} is not callable (got {type(target).__name__})")
    if isinstance(target, WSGIAdapter) or config is None:
        handler: Handler = target
        return handler
    interface = config.interface
    if interface == "auto":
        interface = detect_interface(target)
    if interface == "wsgi":
        if isinstance(target, Framework):
            name = config.app or app
            raise AppLoadError(f"application {name!r} is a Framework, not a WSGI application")
        return WSGIAdapter(target, root_path=config.root_path, multiprocess=multiprocess)
    handler = target
    return handler


_WSGI_FIRST_NAMES = frozenset({"environ", "env", "environment", "wsgi_environ"})

_HANDLER_FIRST_NAMES = frozenset({"request", "req"})


def detect_interface(target: object) -> str:
    """Tells "wsgi" from "framework" (a ``handler(request, response)``) for a callable by its
    signature: parameters named (environ|env, start_response) mean WSGI; a first parameter
    annotated as Request, or named request/req, means a handler. Undecidable signatures (such as
    ``*args``) count as handlers, with a log message pointing at ``--interface wsgi``."""
    if isinstance(target, (Framework, WSGIAdapter)):
        return "framework"
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "framework"
    positional = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind
        in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if positional:
        first = positional[0]
        annotation = first.annotation
        if annotation is Request or annotation == "Request" or first.name in _HANDLER_FIRST_NAMES:
            return "framework"
        if first.name in _WSGI_FIRST_NAMES:
            return "wsgi"
        if len(positional) > 1 and positional[1].name == "start_response":
            return "wsgi"
    logger.info(
        "treating %r as a handler(request, response); pass --interface wsgi if it is a WSGI "
        "application",
        target,
    )
    return "framework"
