"""Loading the application: an import string or an object, and which interface it speaks (a
Framework / ``handler(request, response)``, or a PEP 3333 WSGI application)."""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
from typing import Any

from .._core import Request
from ..app import Framework, Handler
from ..config import ServerConfig
from ..wsgi import WSGIAdapter

__all__ = [
    "AppLoadError",
    "call_factory",
    "detect_interface",
    "import_from_string",
    "load_app",
    "looks_like_a_factory",
    "wsgi_adapters",
]

logger = logging.getLogger("theframework")


class AppLoadError(ValueError):
    """The application reference is unusable: not "module:attribute", the attribute is missing,
    or the object is not callable. (Errors raised while importing the module propagate as
    themselves.)"""


def import_from_string(reference: str, *, factory: bool = False) -> object:
    """Imports "module:attribute" (attribute may be dotted: "pkg.mod:factory.app").

    Call syntax names a factory to call at start, as in gunicorn: "module:create_app()", with
    literal arguments allowed ("module:create_app('production', debug=False)"). With
    ``factory`` the named object is called with no arguments (``--factory``, as in uvicorn).
    AppLoadError for a malformed reference or a missing attribute; what the module or the
    factory raises propagates."""
    module_name, separator, expression = reference.partition(":")
    if not separator or not module_name or not expression:
        raise AppLoadError(f"application must be given as 'module:attribute', got {reference!r}")
    attribute, arguments = _parse_expression(expression, reference)
    module = importlib.import_module(module_name)
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if arguments is None and factory:
        arguments = ((), {})
    if arguments is not None:
        target = call_factory(target, reference, *arguments)
    return target


_Arguments = tuple[tuple[Any, ...], dict[str, Any]]


def _parse_expression(expression: str, reference: str) -> tuple[str, _Arguments | None]:
    """("dotted.attribute", None), or for call syntax the attribute and its literal arguments."""
    if not expression.rstrip().endswith(")"):
        return expression, None
    try:
        call = ast.parse(expression.strip(), mode="eval").body
        if not isinstance(call, ast.Call):
            raise ValueError("not a call")
        attribute = ast.unparse(call.func)
        if not all(part.isidentifier() for part in attribute.split(".")):
            raise ValueError("the called name must be a dotted attribute")
        positional = tuple(ast.literal_eval(argument) for argument in call.args)
        named = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ValueError("** is not allowed")
            named[keyword.arg] = ast.literal_eval(keyword.value)
    except (SyntaxError, ValueError) as error:
        raise AppLoadError(
            f"cannot read the factory call in {reference!r}: {error} (arguments must be "
            "literals, e.g. 'module:create_app(\"production\", debug=False)')"
        ) from None
    return attribute, (positional, named)


def call_factory(
    factory: object,
    name: object,
    positional: tuple[Any, ...] = (),
    named: dict[str, Any] | None = None,
) -> object:
    """The application a factory returns. AppLoadError when ``factory`` is not callable or
    returns None; what the factory raises propagates."""
    if not callable(factory):
        raise AppLoadError(f"factory {name!r} is not callable (got {type(factory).__name__})")
    application: object = factory(*positional, **(named or {}))
    if application is None:
        raise AppLoadError(f"factory {name!r} returned None instead of an application")
    return application


def looks_like_a_factory(target: object) -> bool:
    """True for a callable whose parameters are all optional (and not ``*args``): a
    ``handler(request, response)`` and a WSGI ``app(environ, start_response)`` require theirs, so
    it is most likely an application factory (``create_app(config=None)``) given without
    ``--factory``."""
    if isinstance(target, (type, Framework, WSGIAdapter)):
        return False
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    if any(
        parameter.kind is parameter.VAR_POSITIONAL for parameter in signature.parameters.values()
    ):
        return False  # undecidable (``*args``): taken for a handler, as detect_interface does
    try:
        signature.bind()
    except TypeError:
        return False
    return True


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
    for adapter in wsgi_adapters(target):
        adapter.set_multiprocess(multiprocess)
    if isinstance(target, WSGIAdapter) or config is None:
        handler: Handler = target
        return handler
    if looks_like_a_factory(target):
        name = config.app or app
        call = f"{name}()" if isinstance(name, str) else "module:create_app()"
        raise AppLoadError(
            f"application {name!r} takes no arguments: it looks like an application factory; "
            f"pass --factory (or name it as {call!r}) to call it at start"
        )
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


def wsgi_adapters(handler: object) -> list[WSGIAdapter]:
    """The WSGI adapters that requests reach through ``handler``: the handler itself, or the
    adapters mounted on a Framework (``Framework.mount``)."""
    if isinstance(handler, WSGIAdapter):
        return [handler]
    if isinstance(handler, Framework):
        return [mounted for mounted in handler.mounted if isinstance(mounted, WSGIAdapter)]
    return []


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
