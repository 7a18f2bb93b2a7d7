"""Routing, middleware, HTTPError conversion and hooks of theframework.Framework.

Pure-Python unit tests: requests and responses are small stand-ins defined here that record what
the application does to them (the native types are exercised end to end by the socket tests).
"""

from __future__ import annotations

from typing import Any

import pytest

from theframework import Framework, HTTPError


class RecordingRequest:
    """What the router reads from a request: method, path, and a writable params dict."""

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.params: dict[str, str] = {}


class RecordingResponse:
    """Records status, headers and body the way the native Response accumulates them."""

    def __init__(self, headers_sent: bool = False) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[str] = []
        self.headers_sent = headers_sent

    def set_status(self, status: int) -> None:
        self.status = status

    def set_header(self, name: str, value: str) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        self.headers.append((name, value))

    def add_header(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def write(self, data: str | bytes) -> None:
        self.chunks.append(data.decode() if isinstance(data, bytes) else data)

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def call(app: Framework, method: str, path: str) -> tuple[RecordingRequest, RecordingResponse]:
    request = RecordingRequest(method, path)
    response = RecordingResponse()
    app(request, response)  # type: ignore[arg-type]
    return request, response


def text_handler(body: str) -> Any:
    def handler(request: Any, response: Any) -> None:
        response.write(body)

    return handler


def params_handler(request: Any, response: Any) -> None:
    response.write(repr(sorted(request.params.items())))


# -- static and parametrised routes ------------------------------------------------------------


def test_static_route_and_root() -> None:
    app = Framework()
    app.add_route("/", text_handler("root"))
    app.add_route("/hello", text_handler("hello"))
    assert call(app, "GET", "/")[1].text == "root"
    _, response = call(app, "GET", "/hello")
    assert (response.status, response.text) == (200, "hello")


def test_parameters_are_captured_into_request_params() -> None:
    app = Framework()
    app.add_route("/users/{user_id}/posts/{post_id}", params_handler)
    request, response = call(app, "GET", "/users/42/posts/7")
    assert request.params == {"user_id": "42", "post_id": "7"}
    assert response.text == "[('post_id', '7'), ('user_id', '42')]"


def test_parameter_does_not_match_empty_segment_or_several_segments() -> None:
    app = Framework()
    app.add_route("/users/{user_id}", params_handler)
    assert call(app, "GET", "/users/")[1].status == 404
    assert call(app, "GET", "/users")[1].status == 404
    assert call(app, "GET", "/users/1/2")[1].status == 404


def test_path_parameter_catches_the_rest() -> None:
    app = Framework()
    app.add_route("/static/{file:path}", params_handler)
    request, _ = call(app, "GET", "/static/css/site/main.css")
    assert request.params == {"file": "css/site/main.css"}
    request, _ = call(app, "GET", "/static/a/")
    assert request.params == {"file": "a/"}
    assert call(app, "GET", "/static/")[1].status == 404
    assert call(app, "GET", "/static")[1].status == 404


def test_literal_beats_parameter_beats_catch_all_with_backtracking() -> None:
    app = Framework()
    app.add_route("/users/me", text_handler("me"))
    app.add_route("/users/{id}", text_handler("user"))
    app.add_route("/users/me/settings/{section}", text_handler("my settings"))
    app.add_route("/users/{id}/posts", text_handler("posts"))
    app.add_route("/users/{rest:path}", text_handler("catch-all"))
    assert call(app, "GET", "/users/me")[1].text == "me"
    assert call(app, "GET", "/users/5")[1].text == "user"
    assert call(app, "GET", "/users/me/settings/privacy")[1].text == "my settings"
    # "me" is a literal branch that fails below; the parameter branch is tried next.
    request, response = call(app, "GET", "/users/me/posts")
    assert (response.text, request.params) == ("posts", {"id": "me"})
    request, response = call(app, "GET", "/users/5/comments")
    assert (response.text, request.params) == ("catch-all", {"rest": "5/comments"})


def test_method_found_on_a_later_branch_when_the_first_branch_lacks_it() -> None:
    app = Framework()
    app.add_route("/items/new/{draft}", params_handler, methods=["GET"])
    app.add_route("/items/{id}/{action}", params_handler, methods=["POST"])
    assert call(app, "GET", "/items/new/3")[0].params == {"draft": "3"}
    assert call(app, "POST", "/items/new/3")[0].params == {"id": "new", "action": "3"}
    _, response = call(app, "PUT", "/items/new/3")
    assert (response.status, response.header("Allow")) == (405, "GET, HEAD, POST")


def test_trailing_slash_is_a_different_path() -> None:
    # Documented behaviour: exact matching, no redirect between "/a" and "/a/".
    app = Framework()
    app.add_route("/about", text_handler("about"))
    app.add_route("/docs/", text_handler("docs"))
    app.add_route("/items/{id}/", params_handler)
    assert call(app, "GET", "/about/")[1].status == 404
    assert call(app, "GET", "/docs")[1].status == 404
    assert call(app, "GET", "/docs/")[1].text == "docs"
    assert call(app, "GET", "/items/3")[1].status == 404
    assert call(app, "GET", "/items/3/")[0].params == {"id": "3"}


def test_no_route_is_404_with_plain_text_body() -> None:
    app = Framework()
    app.add_route("/hello", text_handler("hello"))
    _, response = call(app, "GET", "/nope")
    assert response.status == 404
    assert response.text == "Not Found"
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert call(app, "GET", "//hello")[1].status == 404


# -- methods -----------------------------------------------------------------------------------


def test_method_mismatch_is_405_with_sorted_allow() -> None:
    app = Framework()
    app.add_route("/items", text_handler("list"), methods=["GET"])
    app.add_route("/items", text_handler("create"), methods=["POST", "put"])
    _, response = call(app, "DELETE", "/items")
    assert response.status == 405
    assert response.header("Allow") == "GET, HEAD, POST, PUT"
    assert call(app, "PUT", "/items")[1].text == "create"


def test_405_for_parametrised_and_catch_all_routes() -> None:
    app = Framework()
    app.add_route("/items/{id}", params_handler, methods=["DELETE"])
    app.add_route("/files/{name:path}", params_handler, methods=["POST"])
    _, response = call(app, "GET", "/items/1")
    assert (response.status, response.header("Allow")) == (405, "DELETE")
    _, response = call(app, "GET", "/files/a/b")
    assert (response.status, response.header("Allow")) == (405, "POST")


def test_405_allow_merges_every_route_matching_the_path() -> None:
    app = Framework()
    app.add_route("/users/me", text_handler("me"), methods=["GET"])
    app.add_route("/users/{id}", params_handler, methods=["PATCH"])
    _, response = call(app, "DELETE", "/users/me")
    assert (response.status, response.header("Allow")) == (405, "GET, HEAD, PATCH")
    # A parametrised route with the method wins over a literal route without it.
    request, _ = call(app, "PATCH", "/users/me")
    assert request.params == {"id": "me"}


def test_head_is_served_by_get_unless_registered() -> None:
    app = Framework()
    app.add_route("/a", text_handler("get a"))
    app.add_route("/b", text_handler("get b"))
    app.add_route("/b", text_handler("head b"), methods=["HEAD"])
    app.add_route("/c", text_handler("head c"), methods=["HEAD"])
    app.add_route("/c", text_handler("get c"))
    app.add_route("/p/{x}", params_handler)
    assert call(app, "HEAD", "/a")[1].text == "get a"
    assert call(app, "HEAD", "/b")[1].text == "head b"
    assert call(app, "HEAD", "/c")[1].text == "head c"
    assert call(app, "HEAD", "/p/1")[0].params == {"x": "1"}
    app.add_route("/post-only", text_handler("post"), methods=["POST"])
    assert call(app, "HEAD", "/post-only")[1].status == 405


def test_shortcut_decorators_register_one_method_and_return_the_handler() -> None:
    app = Framework()
    for name in ("get", "post", "put", "delete", "patch"):
        handler = text_handler(name)
        assert getattr(app, name)("/thing")(handler) is handler
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        assert call(app, method, "/thing")[1].text == method.lower()
    _, response = call(app, "OPTIONS", "/thing")
    assert response.header("Allow") == "DELETE, GET, HEAD, PATCH, POST, PUT"


def test_route_decorator() -> None:
    app = Framework()

    @app.route("/both", methods=["GET", "POST"])
    def both(request: Any, response: Any) -> None:
        response.write(request.method)

    assert call(app, "POST", "/both")[1].text == "POST"
    assert callable(both)


@pytest.mark.parametrize(
    ("pattern", "methods", "message"),
    [
        ("no-slash", ["GET"], "must start with '/'"),
        ("/a/{b", ["GET"], "bad segment"),
        ("/a/x{b}", ["GET"], "bad segment"),
        ("/a/{1b}", ["GET"], "bad segment"),
        ("/a/{b:int}", ["GET"], "bad segment"),
        ("/{a}/{a}", ["GET"], "appears twice"),
        ("/{rest:path}/x", ["GET"], "must be the last segment"),
        ("/a", [], "at least one method"),
        ("/a", ["GE T"], "invalid HTTP method"),
        ("/a", "GET", "not the string"),
    ],
)
def test_bad_routes_are_refused(pattern: str, methods: Any, message: str) -> None:
    app = Framework()
    with pytest.raises(ValueError, match=message):
        app.add_route(pattern, text_handler("x"), methods=methods)


def test_duplicate_route_is_refused_but_explicit_head_after_get_is_allowed() -> None:
    app = Framework()
    app.add_route("/a/{id}", params_handler)
    with pytest.raises(ValueError, match="already registered"):
        app.add_route("/a/{other}", params_handler)
    app.add_route("/a/{id}", text_handler("head"), methods=["HEAD"])
    with pytest.raises(ValueError, match="already registered"):
        app.add_route("/a/{id}", text_handler("head"), methods=["HEAD"])
    with pytest.raises(ValueError, match="not callable"):
        app.add_route("/b", "handler")  # type: ignore[arg-type]


def test_same_trie_position_with_different_parameter_names() -> None:
    app = Framework()
    app.add_route("/org/{org}/repos", params_handler)
    app.add_route("/org/{name}", params_handler)
    assert call(app, "GET", "/org/x/repos")[0].params == {"org": "x"}
    assert call(app, "GET", "/org/y")[0].params == {"name": "y"}


def test_many_routes_each_resolve_to_their_own_handler() -> None:
    app = Framework()
    for number in range(250):
        app.add_route(f"/static/{number}/page", text_handler(f"static {number}"))
        app.add_route(f"/resource{number}/{{id}}/detail/{{part}}", params_handler)
    for number in (0, 1, 127, 249):
        assert call(app, "GET", f"/static/{number}/page")[1].text == f"static {number}"
        request, _ = call(app, "GET", f"/resource{number}/abc/detail/{number}")
        assert request.params == {"id": "abc", "part": str(number)}
    assert call(app, "GET", "/resource250/abc/detail/x")[1].status == 404
    assert call(app, "GET", "/static/250/page")[1].status == 404
    assert call(app, "POST", "/resource3/abc/detail/x")[1].status == 405


def test_static_route_leaves_params_untouched() -> None:
    app = Framework()
    app.add_route("/plain", params_handler)
    request, _ = call(app, "GET", "/plain")
    assert request.params == {}


# -- middleware ----------------------------------------------------------------------------------


def test_middleware_runs_in_registration_order_around_the_handler() -> None:
    app = Framework()
    order: list[str] = []

    def outer(request: Any, response: Any, next_fn: Any) -> None:
        order.append("outer in")
        next_fn()
        order.append("outer out")

    @app.get("/x/{id}")
    def handler(request: Any, response: Any) -> None:
        order.append(f"handler {request.params['id']}")

    app.use(outer)

    @app.use
    def inner(request: Any, response: Any, next_fn: Any) -> None:
        order.append(f"inner in {request.params['id']}")  # params are set before middleware
        next_fn()
        order.append("inner out")

    call(app, "GET", "/x/9")
    assert order == ["outer in", "inner in 9", "handler 9", "inner out", "outer out"]


def test_middleware_short_circuits_by_not_calling_next() -> None:
    app = Framework()
    reached: list[str] = []

    def deny(request: Any, response: Any, next_fn: Any) -> None:
        response.set_status(401)
        response.write("no")

    def later(request: Any, response: Any, next_fn: Any) -> None:
        reached.append("later")
        next_fn()

    app.use(deny)
    app.use(later)
    app.add_route("/secret", text_handler("secret"))
    _, response = call(app, "GET", "/secret")
    assert (response.status, response.text, reached) == (401, "no", [])


def test_middleware_sees_404_and_405_and_may_handle_them() -> None:
    app = Framework()
    seen: list[int] = []

    def observe(request: Any, response: Any, next_fn: Any) -> None:
        try:
            next_fn()
        except HTTPError as error:
            seen.append(error.status)
            raise

    def fallback(request: Any, response: Any, next_fn: Any) -> None:
        if request.path == "/spa/route":
            response.write("index.html")
            return
        next_fn()

    app.use(observe)
    app.use(fallback)
    app.add_route("/only-post", text_handler("x"), methods=["POST"])
    assert call(app, "GET", "/missing")[1].status == 404
    assert call(app, "GET", "/only-post")[1].status == 405
    assert call(app, "GET", "/spa/route")[1].text == "index.html"
    assert seen == [404, 405]


def test_next_fn_twice_is_an_error() -> None:
    app = Framework()
    calls: list[str] = []

    def twice(request: Any, response: Any, next_fn: Any) -> None:
        next_fn()
        next_fn()

    app.use(twice)
    app.add_route("/", lambda request, response: calls.append("handler"))
    with pytest.raises(RuntimeError, match="more than once"):
        call(app, "GET", "/")
    assert calls == ["handler"]


def test_use_refuses_non_callable() -> None:
    with pytest.raises(ValueError, match="not callable"):
        Framework().use(42)  # type: ignore[arg-type]


# -- HTTPError and other exceptions ----------------------------------------------------------------


def test_http_error_from_handler_becomes_the_response() -> None:
    app = Framework()

    @app.get("/teapot")
    def teapot(request: Any, response: Any) -> None:
        response.set_header("Content-Type", "application/json")
        raise HTTPError(418, "short and stout", headers=[("X-Kind", "teapot")])

    @app.get("/moved")
    def moved(request: Any, response: Any) -> None:
        raise HTTPError(301, headers=[("Location", "/new")])

    _, response = call(app, "GET", "/teapot")
    assert response.status == 418
    assert response.text == "short and stout"
    assert response.header("X-Kind") == "teapot"
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    _, response = call(app, "GET", "/moved")
    assert (response.status, response.header("Location")) == (301, "/new")
    assert response.text == "Moved Permanently"


def test_http_error_from_middleware_becomes_the_response() -> None:
    app = Framework()

    def authenticate(request: Any, response: Any, next_fn: Any) -> None:
        raise HTTPError(401, headers=[("WWW-Authenticate", "Bearer")])

    app.use(authenticate)
    app.add_route("/", text_handler("x"))
    _, response = call(app, "GET", "/")
    assert (response.status, response.text) == (401, "Unauthorized")
    assert response.header("WWW-Authenticate") == "Bearer"


def test_http_error_after_headers_were_sent_propagates() -> None:
    app = Framework()

    @app.get("/stream")
    def stream(request: Any, response: Any) -> None:
        response.headers_sent = True
        raise HTTPError(500)

    request = RecordingRequest("GET", "/stream")
    response = RecordingResponse()
    with pytest.raises(HTTPError):
        app(request, response)  # type: ignore[arg-type]
    assert response.status == 200
    assert response.text == ""


def test_other_exceptions_propagate_to_the_server() -> None:
    app = Framework()

    @app.get("/boom")
    def boom(request: Any, response: Any) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        call(app, "GET", "/boom")


def test_http_error_defaults_and_validation() -> None:
    error = HTTPError(404)
    assert (error.status, error.message, error.headers) == (404, "Not Found", [])
    assert str(error) == "404 Not Found"
    assert HTTPError(599).message == "Error"
    assert HTTPError(400, "bad", [("A", "b")]).headers == [("A", "b")]
    for status in (99, 600, "404", True):
        with pytest.raises(ValueError, match=r"100\.\.599"):
            HTTPError(status)  # type: ignore[arg-type]


# -- hooks ---------------------------------------------------------------------------------------


def test_startup_and_shutdown_hooks_run_in_registration_order() -> None:
    app = Framework()
    events: list[str] = []

    @app.on_startup
    def first() -> None:
        events.append("start 1")

    app.on_startup(lambda: events.append("start 2"))

    @app.on_shutdown
    def stop() -> None:
        events.append("stop 1")

    app.on_shutdown(lambda: events.append("stop 2"))
    assert callable(first) and callable(stop)
    app.startup()
    app.shutdown()
    assert events == ["start 1", "start 2", "stop 1", "stop 2"]


def test_failing_startup_hook_stops_the_rest() -> None:
    app = Framework()
    events: list[str] = []

    def fail() -> None:
        raise RuntimeError("no database")

    app.on_startup(fail)
    app.on_startup(lambda: events.append("never"))
    with pytest.raises(RuntimeError, match="no database"):
        app.startup()
    assert events == []


def test_failing_shutdown_hook_does_not_skip_the_others() -> None:
    app = Framework()
    events: list[str] = []

    def fail(name: str) -> Any:
        def hook() -> None:
            events.append(name)
            raise RuntimeError(name)

        return hook

    app.on_shutdown(fail("first"))
    app.on_shutdown(lambda: events.append("second"))
    app.on_shutdown(fail("third"))
    with pytest.raises(RuntimeError, match="first"):
        app.shutdown()
    assert events == ["first", "second", "third"]


# -- mounts ---------------------------------------------------------------------------------------


def _named(name: str) -> Any:
    def handler(request: Any, response: Any) -> None:
        response.chunks.append(name)

    return handler


def test_mounts_take_the_paths_no_route_matches_longest_prefix_first() -> None:
    app = Framework()
    app.add_route("/api/users", _named("route"))
    app.add_route("/api/items/{id}", _named("item"), ["POST"])
    app.mount("/", _named("root"))
    app.mount("/api/", _named("api"))
    app.mount("/api/v2", _named("v2"))
    cases = {
        ("GET", "/api/users"): "route",
        ("DELETE", "/api/users/x"): "api",
        ("PUT", "/api"): "api",
        ("GET", "/api/v2"): "v2",
        ("GET", "/api/v2/anything/deeper"): "v2",
        ("GET", "/api/v2x"): "api",  # a prefix ends on a segment boundary
        ("GET", "/apix"): "root",
        ("GET", "/"): "root",
    }
    for (method, path), expected in cases.items():
        handler, params = app.match(method, path)
        response = RecordingResponse()
        handler(RecordingRequest(method, path), response)
        assert (response.chunks, params) == ([expected], {}), (method, path)
    # A path that a route matches keeps its 405: the method is the client's error, not a miss.
    with pytest.raises(HTTPError) as error:
        app.match("GET", "/api/items/7")
    assert error.value.status == 405


def test_without_a_covering_mount_unknown_paths_are_404() -> None:
    app = Framework()
    app.mount("/static", _named("static"))
    with pytest.raises(HTTPError) as error:
        app.match("GET", "/other")
    assert error.value.status == 404
    with pytest.raises(HTTPError):
        app.match("GET", "/staticfile")
    assert app.match("GET", "/static")[1] == {}


def test_middleware_runs_around_mounted_handlers() -> None:
    app = Framework()
    events: list[str] = []

    def middleware(request: Any, response: Any, next_fn: Any) -> None:
        events.append(f"before {request.path}")
        next_fn()

    app.use(middleware)
    app.mount("/", _named("root"))
    response = RecordingResponse()
    app(RecordingRequest("POST", "/form"), response)  # type: ignore[arg-type]
    assert (events, response.chunks) == (["before /form"], ["root"])


@pytest.mark.parametrize("prefix", ["", "api", "/a//b", "/{name}", "/x}"])
def test_malformed_mount_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="mount prefix"):
        Framework().mount(prefix, _named("x"))


def test_a_prefix_mounted_twice_or_a_handler_that_is_not_callable_is_refused() -> None:
    app = Framework()
    app.mount("/a/", _named("a"))
    with pytest.raises(ValueError, match="already mounted at '/a'"):
        app.mount("/a", _named("again"))
    with pytest.raises(ValueError, match="not callable"):
        app.mount("/b", "handler")  # type: ignore[arg-type]
    assert [handler.__name__ for handler in app.mounted] == ["handler"]
