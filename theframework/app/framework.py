"""The application object: routing, middleware, lifecycle hooks.

Routing rules:
- A pattern is a path starting with "/", split on "/" into segments. A segment is literal text,
  ``{name}`` (one non-empty segment) or, as the last segment only, ``{name:path}`` (the rest of
  the path, slashes included, non-empty).
- Paths match exactly: "/users" and "/users/" are different routes and nothing redirects between
  them; "//" is not folded.
- An all-literal route beats every parametrised one. Among parametrised routes, at each segment a
  literal beats ``{name}``, which beats ``{name:path}``; a branch that fails further down falls
  back to the next alternative.
- No route matches the path: 404. Routes match the path but none allows the method: 405 with an
  ``Allow`` header (sorted, HEAD listed when GET is).
- A GET route also serves HEAD (the native Response drops the body) unless HEAD is registered
  explicitly for that path.
- Mounts (``mount(prefix, handler)``) take the paths no route matches: a path equal to a mount's
  prefix or below it ("/legacy" and "/legacy/...", not "/legacyx") goes to the longest such
  prefix's handler; prefix "/" takes every path. A path some route matches never reaches a mount,
  even when the method is not allowed there (405).

This module knows nothing about sockets or processes; ``Framework.run`` hands over to
``theframework.main.serve`` (the one upward call, named in the import contracts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .._core import Request, Response, WebSocket
from ..errors import HTTPError

__all__ = ["Framework", "Handler", "Hook", "Middleware", "Next", "WebSocketHandler"]

Handler = Callable[[Request, Response], object]
# A WebSocket route's handler: called with the accepted WebSocket and its request.
WebSocketHandler = Callable[[WebSocket, Request], object]
Next = Callable[[], None]
Middleware = Callable[[Request, Response, Next], object]
Hook = Callable[[], object]

_HandlerT = TypeVar("_HandlerT", bound=Handler)
_HookT = TypeVar("_HookT", bound=Hook)

_METHOD_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PARAMETER_RE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}$")


class _Route:
    """One registered (pattern, method) with its handler."""

    __slots__ = ("automatic", "handler", "parameter_names", "pattern")

    def __init__(
        self, pattern: str, handler: Handler, parameter_names: tuple[str, ...], automatic: bool
    ) -> None:
        self.pattern = pattern
        self.handler = handler
        self.parameter_names = parameter_names
        # True for the HEAD route derived from a GET route.
        self.automatic = automatic


# Method -> route, for one path pattern.
_Methods = dict[str, _Route]


class _Node:
    """A segment trie node for parametrised patterns."""

    __slots__ = ("catch_all", "literal", "methods", "parameter")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.parameter: _Node | None = None
        # Routes whose last segment is {name:path} below this node.
        self.catch_all: _Methods | None = None
        # Routes ending exactly at this node.
        self.methods: _Methods | None = None


def _parse_pattern(pattern: str) -> tuple[list[str], tuple[str, ...], bool]:
    """Splits a pattern into segments (parameters as "{}" / "{path}") and returns (segments,
    parameter names, ends with a catch-all). ValueError for a malformed pattern."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError(f"route pattern must start with '/', got {pattern!r}")
    segments: list[str] = []
    names: list[str] = []
    raw_segments = pattern[1:].split("/")
    catch_all = False
    for position, raw in enumerate(raw_segments):
        if "{" not in raw and "}" not in raw:
            segments.append(raw)
            continue
        match = _PARAMETER_RE.match(raw)
        if match is None:
            raise ValueError(
                f"bad segment {raw!r} in route {pattern!r}: a parameter is a whole segment, "
                "'{name}' or '{name:path}'"
            )
        name, is_path = match.group(1), match.group(2) is not None
        if name in names:
            raise ValueError(f"parameter {name!r} appears twice in route {pattern!r}")
        if is_path:
            if position != len(raw_segments) - 1:
                raise ValueError(f"'{{{name}:path}}' must be the last segment in {pattern!r}")
            catch_all = True
            segments.append("{path}")
        else:
            segments.append("{}")
        names.append(name)
    return segments, tuple(names), catch_all


def _allow_header(methods: Iterable[str]) -> str:
    return ", ".join(sorted(set(methods)))


class Framework:
    """A WSGI-less, async-less application: ``app(request, response)`` routes the request
    through the middleware to the handler registered for its path and method."""

    def __init__(self) -> None:
        self._static: dict[str, _Methods] = {}
        self._trie = _Node()
        self._middleware: list[Middleware] = []
        self._mounts: list[tuple[str, Handler]] = []  # longest prefix first
        self._startup_hooks: list[Hook] = []
        self._shutdown_hooks: list[Hook] = []

    # -- registration ---------------------------------------------------------------------------

    def add_route(self, pattern: str, handler: Handler, methods: Iterable[str] = ("GET",)) -> None:
        """Registers ``handler(request, response)`` for ``pattern`` and each method.
        ValueError for a malformed pattern or method, or a (pattern, method) already taken."""
        if isinstance(methods, str):
            raise ValueError(f"methods must be a list of method names, not the string {methods!r}")
        method_names = [method.upper() for method in methods]
        if not method_names:
            raise ValueError(f"route {pattern!r} needs at least one method")
        for method in method_names:
            if not _METHOD_RE.match(method):
                raise ValueError(f"invalid HTTP method {method!r} for route {pattern!r}")
        if not callable(handler):
            raise ValueError(f"handler for {pattern!r} is not callable: {handler!r}")
        segments, names, catch_all = _parse_pattern(pattern)
        table = self._methods_for(pattern, segments, names, catch_all)
        for method in method_names:
            existing = table.get(method)
            if existing is not None and not existing.automatic:
                raise ValueError(f"route {method} {pattern!r} is already registered")
        for method in dict.fromkeys(method_names):
            table[method] = _Route(pattern, handler, names, automatic=False)
            if method == "GET":
                head = table.get("HEAD")
                if head is None or head.automatic:
                    table["HEAD"] = _Route(pattern, handler, names, automatic=True)

    def _methods_for(
        self, pattern: str, segments: list[str], names: tuple[str, ...], catch_all: bool
    ) -> _Methods:
        if not names:
            return self._static.setdefault(pattern, {})
        node = self._trie
        for segment in segments[:-1] if catch_all else segments:
            if segment == "{}":
                if node.parameter is None:
                    node.parameter = _Node()
                node = node.parameter
            else:
                child = node.literal.get(segment)
                if child is None:
                    child = node.literal[segment] = _Node()
                node = child
        if catch_all:
            if node.catch_all is None:
                node.catch_all = {}
            return node.catch_all
        if node.methods is None:
            node.methods = {}
        return node.methods

    def route(
        self, pattern: str, methods: Iterable[str] = ("GET",)
    ) -> Callable[[_HandlerT], _HandlerT]:
        """Decorator form of ``add_route``; returns the handler unchanged."""

        def register(handler: _HandlerT) -> _HandlerT:
            self.add_route(pattern, handler, methods)
            return handler

        return register

    def get(self, pattern: str) -> Callable[[_HandlerT], _HandlerT]:
        return self.route(pattern, ("GET",))

    def websocket(
        self,
        pattern: str,
        subprotocols: Iterable[str] | None = None,
        *,
        origins: Iterable[str] | Callable[[str | None], object] | None = None,
    ) -> Callable[[WebSocketHandler], WebSocketHandler]:
        """Decorator: a GET route at ``pattern`` that accepts the WebSocket upgrade
        (``request.websocket(subprotocols, origins=origins)``: HTTPError 400/426 for a bad
        handshake, 403 for a refused Origin) and calls ``handler(websocket, request)``.
        Middleware runs before the upgrade. Returns the handler unchanged."""
        offered = None if subprotocols is None else list(subprotocols)
        allowed = origins if origins is None or callable(origins) else list(origins)

        def register(handler: WebSocketHandler) -> WebSocketHandler:
            def upgrade(request: Request, response: Response) -> None:
                handler(request.websocket(subprotocols=offered, origins=allowed), request)

            self.add_route(pattern, upgrade, ("GET",))
            return handler

        return register

    def mount(self, prefix: str, handler: Handler) -> None:
        """Sends every request whose path is ``prefix`` or lies below it, and that no route
        matches, to ``handler(request, response)``, whatever its method; "/" mounts at the root
        (every such path). The handler sees the request unchanged. A WSGI application (Flask,
        Django) is mounted through ``theframework.wsgi.WSGIAdapter(app, root_path=prefix)``,
        which gives it SCRIPT_NAME=prefix and the rest as PATH_INFO; beside it, this Framework's
        own routes (WebSocket routes among them) answer first. Middleware runs around mounted
        handlers as around routes. ValueError for a malformed prefix, a prefix already mounted,
        or a handler that is not callable."""
        if not prefix.startswith("/") or "//" in prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"mount prefix must be a literal path starting with '/': {prefix!r}")
        if not callable(handler):
            raise ValueError(f"handler mounted at {prefix!r} is not callable: {handler!r}")
        prefix = prefix.rstrip("/")  # "/" becomes "": every path lies below it
        if any(existing == prefix for existing, _ in self._mounts):
            raise ValueError(f"a handler is already mounted at {prefix or '/'!r}")
        self._mounts.append((prefix, handler))
        self._mounts.sort(key=lambda mount: len(mount[0]), reverse=True)

    @property
    def mounted(self) -> list[Handler]:
        """The mounted handlers, longest prefix first (the server configures mounted WSGI
        adapters: wsgi.multiprocess, SERVER_NAME/PORT)."""
        return [handler for _, handler in self._mounts]

    def post(self, pattern: str) -> Callable[[_HandlerT], _HandlerT]:
        return self.route(pattern, ("POST",))

    def put(self, pattern: str) -> Callable[[_HandlerT], _HandlerT]:
        return self.route(pattern, ("PUT",))

    def delete(self, pattern: str) -> Callable[[_HandlerT], _HandlerT]:
        return self.route(pattern, ("DELETE",))

    def patch(self, pattern: str) -> Callable[[_HandlerT], _HandlerT]:
        return self.route(pattern, ("PATCH",))

    def use(self, middleware: Middleware) -> Middleware:
        """Adds ``middleware(request, response, next_fn)``. Middleware run in registration order
        around the handler (the first added is the outermost); ``next_fn()`` runs the rest of the
        chain, and not calling it short-circuits. Middleware also run for 404 and 405, which
        ``next_fn()`` raises as HTTPError. Usable as a decorator."""
        if not callable(middleware):
            raise ValueError(f"middleware is not callable: {middleware!r}")
        self._middleware.append(middleware)
        return middleware

    def on_startup(self, hook: _HookT) -> _HookT:
        """Decorator: ``hook()`` runs in each serving process before it accepts connections."""
        self._startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: _HookT) -> _HookT:
        """Decorator: ``hook()`` runs in each serving process after the last connection closed."""
        self._shutdown_hooks.append(hook)
        return hook

    # -- lifecycle ------------------------------------------------------------------------------

    def startup(self) -> None:
        """Runs the startup hooks in registration order; the first exception propagates."""
        for hook in self._startup_hooks:
            hook()

    def shutdown(self) -> None:
        """Runs every shutdown hook in registration order, even when one fails; then re-raises
        the first exception, if any."""
        first_error: BaseException | None = None
        for hook in self._shutdown_hooks:
            try:
                hook()
            except Exception as error:
                if first_error is None:
                    first_error = error
        if first_error is not None:
            raise first_error

    def run(self, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
        """Serves this application until SIGINT or SIGTERM; ``options`` are ServerConfig or
        ProcessConfig fields (``uds=``, ``backend=``, ``max_body_size=``, ``workers=``, ...)."""
        # The one allowed upward import (main imports this layer); see docs/architecture.md.
        from ..main import run_app

        run_app(self, host=host, port=port, **options)

    # -- dispatch -------------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and captured parameters for ``method`` and ``path``: a route's, else a
        mount's (no parameters); HTTPError 404 when neither matches the path, 405 (with Allow)
        when routes match the path but none of them has ``method``."""
        table = self._static.get(path)
        if table is not None:
            route = table.get(method)
            if route is not None:
                return route.handler, {}
        segments = path[1:].split("/")
        # Fast path: follow literals, else parameters, without backtracking. When it ends on a
        # route with the method, that is the route the full search would find first.
        node = self._trie
        captured: list[str] = []
        for segment in segments:
            child = node.literal.get(segment)
            if child is None:
                child = node.parameter
                if child is None or not segment:
                    break
                captured.append(segment)
            node = child
        else:
            if node.methods is not None:
                route = node.methods.get(method)
                if route is not None:
                    names = route.parameter_names
                    return route.handler, dict(zip(names, captured, strict=True))
        allowed: set[str] = set() if table is None else set(table)
        captured = []
        found = _search(self._trie, segments, 0, method, captured, allowed)
        if found is not None:
            return found.handler, dict(zip(found.parameter_names, captured, strict=True))
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            raise HTTPError(405, headers=[("Allow", _allow_header(allowed))])
        mounted = self._mounted_handler(path)
        if mounted is not None:
            return mounted, {}
        raise HTTPError(404)

    def _mounted_handler(self, path: str) -> Handler | None:
        """The handler of the longest mount prefix that ``path`` equals or lies below."""
        for prefix, handler in self._mounts:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return handler
        return None

    def __call__(self, request: Request, response: Response) -> None:
        """Handles one request: routing, middleware, handler, HTTPError to response."""
        try:
            try:
                handler, params = self.match(request.method, request.path)
            except HTTPError as error:
                routing_error = error

                def handler(request: Request, response: Response) -> None:
                    raise routing_error

            else:
                if params:
                    request.params = params
            middleware = self._middleware
            if middleware:
                _Next(_Chain(middleware, handler, request, response), 0)()
            else:
                handler(request, response)
        except HTTPError as error:
            if response.headers_sent:
                raise
            response.set_status(error.status)
            for name, value in error.headers:
                response.add_header(name, value)
            response.set_header("Content-Type", "text/plain; charset=utf-8")
            response.write(error.message)


def _search(
    node: _Node,
    segments: list[str],
    index: int,
    method: str,
    captured: list[str],
    allowed: set[str],
) -> _Route | None:
    """Depth-first search of the trie in precedence order (literal, parameter, catch-all) for a
    route with ``method``; appends captured values to ``captured``. Methods of routes that match
    the path but not the method are added to ``allowed``."""
    if index == len(segments):
        table = node.methods
        if table is not None:
            route = table.get(method)
            if route is not None:
                return route
            allowed.update(table)
        return None
    segment = segments[index]
    child = node.literal.get(segment)
    if child is not None:
        found = _search(child, segments, index + 1, method, captured, allowed)
        if found is not None:
            return found
    if segment:
        parameter = node.parameter
        if parameter is not None:
            captured.append(segment)
            found = _search(parameter, segments, index + 1, method, captured, allowed)
            if found is not None:
                return found
            captured.pop()
        table = node.catch_all
        if table is not None:
            route = table.get(method)
            if route is not None:
                captured.append("/".join(segments[index:]))
                return route
            allowed.update(table)
    return None


class _Chain:
    """The middleware list, the handler, and the request being handled."""

    __slots__ = ("handler", "middleware", "request", "response")

    def __init__(
        self,
        middleware: list[Middleware],
        handler: Handler,
        request: Request,
        response: Response,
    ) -> None:
        self.middleware = middleware
        self.handler = handler
        self.request = request
        self.response = response


class _Next:
    """The ``next_fn`` given to middleware number ``index - 1``: runs middleware ``index`` (or
    the handler after the last one). Each may be called once."""

    __slots__ = ("_called", "_chain", "_index")

    def __init__(self, chain: _Chain, index: int) -> None:
        self._chain = chain
        self._index = index
        self._called = False

    def __call__(self) -> None:
        if self._called:
            raise RuntimeError("next_fn() called more than once by the same middleware")
        self._called = True
        chain = self._chain
        index = self._index
        if index < len(chain.middleware):
            chain.middleware[index](chain.request, chain.response, _Next(chain, index + 1))
        else:
            chain.handler(chain.request, chain.response)
