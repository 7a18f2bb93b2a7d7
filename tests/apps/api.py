"""The API test application: routing, middleware, every Request and Response member, errors.

Two middleware wrap every request and record their order in ``X-Trace`` headers (outer-in,
inner-in, handler, inner-out, outer-out); the inner one short-circuits paths under /blocked.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from theframework import Framework, HTTPError, Request, Response

from . import gate

app = Framework()


# -- middleware --------------------------------------------------------------------------------


@app.use
def outer(request: Request, response: Response, next_fn: Any) -> None:
    response.add_header("X-Trace", "outer-in")
    next_fn()
    if not response.headers_sent:
        response.add_header("X-Trace", "outer-out")


@app.use
def inner(request: Request, response: Response, next_fn: Any) -> None:
    response.add_header("X-Trace", "inner-in")
    if request.path.startswith("/blocked"):
        response.set_status(403)
        response.write("blocked by middleware")
        return
    next_fn()
    if not response.headers_sent:
        response.add_header("X-Trace", "inner-out")


# -- routing -----------------------------------------------------------------------------------


@app.get("/")
def index(request: Request, response: Response) -> None:
    response.add_header("X-Trace", "handler")
    response.write("index")


@app.get("/users/{user_id}")
def user(request: Request, response: Response) -> None:
    response.json({"route": "user", "params": request.params})


@app.get("/users/{user_id}/posts/{post_id}")
def user_post(request: Request, response: Response) -> None:
    response.json({"route": "user_post", "params": request.params})


@app.get("/users/me")
def user_me(request: Request, response: Response) -> None:
    response.json({"route": "me", "params": request.params})


@app.get("/files/{rest:path}")
def files(request: Request, response: Response) -> None:
    response.json({"route": "files", "params": request.params})


@app.route("/items", methods=["GET", "POST"])
def items(request: Request, response: Response) -> None:
    response.json({"method": request.method})


@app.get("/blocked/secret")
def blocked(request: Request, response: Response) -> None:
    response.write("must not be reached")


# -- Request members ---------------------------------------------------------------------------


def describe(request: Request) -> dict[str, Any]:
    body = request.body
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "query_params": {name: request.query_params.getall(name) for name in request.query_params},
        "headers": request.headers.items(),
        "x_multi": request.headers.getall("X-MULTI"),
        "x_case": request.headers.get("x-CaSe-TeSt"),
        "version": request.version,
        "params": request.params,
        "client": list(request.client) if isinstance(request.client, tuple) else request.client,
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body": body.decode("latin-1") if len(body) <= 4096 else None,
    }


@app.route("/request", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def request_info(request: Request, response: Response) -> None:
    response.json(describe(request))


@app.route("/request/{name}/{tail:path}", methods=["GET", "POST"])
def request_info_params(request: Request, response: Response) -> None:
    response.json(describe(request))


@app.post("/read")
def read_chunks(request: Request, response: Response) -> None:
    """Reads the body with read(size) until b"": reports each piece's length and the digest."""
    size = int(request.query_params.get("size", "1000"))
    lengths = []
    digest = hashlib.sha256()
    while True:
        piece = request.read(size)
        if not piece:
            break
        lengths.append(len(piece))
        digest.update(piece)
    after_end = request.read(size)
    response.json(
        {
            "lengths": lengths,
            "total": sum(lengths),
            "sha256": digest.hexdigest(),
            "after_end": after_end.decode("latin-1"),
        }
    )


@app.post("/upload")
def upload(request: Request, response: Response) -> None:
    body = request.body
    response.json({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


@app.post("/json")
def json_echo(request: Request, response: Response) -> None:
    response.json({"received": request.json()})


@app.post("/ignore-body")
def ignore_body(request: Request, response: Response) -> None:
    """Answers without reading the body."""
    response.set_status(201)
    response.write("not read")


# -- Response members --------------------------------------------------------------------------


@app.get("/status/{code}")
def status(request: Request, response: Response) -> None:
    initial = response.status
    response.set_status(int(request.params["code"]))
    response.set_header("X-Status", f"{initial}->{response.status}")
    if request.query_params.get("body") == "1":
        response.write("this body must not be sent")


@app.get("/headers")
def headers(request: Request, response: Response) -> None:
    response.set_header("X-Replaced", "first")
    response.set_header("x-replaced", "second")
    response.add_header("Set-Cookie", "a=1; Path=/")
    response.add_header("Set-Cookie", "b=2; HttpOnly")
    response.set_header("Content-Type", "text/x-test")
    response.write("headers")


@app.get("/write")
def write_types(request: Request, response: Response) -> None:
    response.write(b"bytes|")
    response.write("str-\u00e9|")
    response.write(bytearray(b"bytearray|"))
    response.write(memoryview(b"memoryview"))


@app.get("/json-response")
def json_response(request: Request, response: Response) -> None:
    response.json({"numbers": [1, 2, 3], "text": "caf\u00e9", "nested": {"none": None}})


@app.get("/flush")
def flush(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "text/plain")
    response.write("first|")
    before = response.headers_sent
    response.flush()
    after = response.headers_sent
    response.write(f"sent-before-flush={before}|sent-after-flush={after}")


@app.get("/stream")
def stream(request: Request, response: Response) -> None:
    response.stream(f"part{number}|" for number in range(5))


@app.get("/bad-header")
def bad_header(request: Request, response: Response) -> None:
    """Every forbidden header name/value: each call must raise ValueError before anything is
    sent. Reports what happened; the response itself stays untouched by the failed calls."""
    cases = {
        "name-cr": ("X-Bad\r", "v"),
        "name-lf": ("X-Bad\n", "v"),
        "name-nul": ("X-Bad\x00", "v"),
        "name-space": ("X Bad", "v"),
        "name-colon": ("X-Bad:", "v"),
        "name-empty": ("", "v"),
        "value-cr": ("X-Bad", "a\rb"),
        "value-lf": ("X-Bad", "a\nInjected: yes"),
        "value-crlf": ("X-Bad", "a\r\nInjected: yes"),
        "value-nul": ("X-Bad", "a\x00b"),
    }
    outcome: dict[str, str] = {}
    for case, (name, value) in cases.items():
        for method in (response.set_header, response.add_header):
            key = f"{case}/{method.__name__}"
            try:
                method(name, value)
            except ValueError:
                outcome[key] = "ValueError"
            else:
                outcome[key] = "accepted"
    for code in (99, 600, -1):
        try:
            response.set_status(code)
        except ValueError:
            outcome[f"status-{code}"] = "ValueError"
        else:
            outcome[f"status-{code}"] = "accepted"
    outcome["headers_sent"] = str(response.headers_sent)
    response.json(outcome)


@app.get("/sendfile")
def sendfile(request: Request, response: Response) -> None:
    path = request.query_params["path"]
    content_type = request.query_params.get("type")
    response.sendfile(path, content_type=content_type)


# -- errors ------------------------------------------------------------------------------------


@app.get("/error")
def error(request: Request, response: Response) -> None:
    response.write("partial body that must be discarded")
    raise RuntimeError("handler-failure-marker-1234")


@app.get("/http-error")
def http_error(request: Request, response: Response) -> None:
    raise HTTPError(418, "short and stout", headers=[("X-Reason", "teapot")])


@app.get("/error-after-flush")
def error_after_flush(request: Request, response: Response) -> None:
    response.write("started|")
    response.flush()
    raise RuntimeError("failure-after-flush-marker-5678")


# -- coordination ------------------------------------------------------------------------------


@app.post("/gate/{name}")
def open_gate(request: Request, response: Response) -> None:
    response.json({"woken": gate.release(request.params["name"])})


@app.get("/wait/{name}")
def wait_gate(request: Request, response: Response) -> None:
    response.json({"opened": gate.wait(request.params["name"])})


@app.get("/dump")
def dump(request: Request, response: Response) -> None:
    response.write(json.dumps({"ok": True}))


@app.get("/barrier/{name}")
def barrier(request: Request, response: Response) -> None:
    """Answers once ``n`` requests are waiting here at the same time."""
    parties = int(request.query_params["n"])
    response.json({"released": gate.barrier(request.params["name"], parties)})


@app.get("/big")
def big(request: Request, response: Response) -> None:
    """``size`` bytes in ``pieces`` writes (streamed when ``stream=1``): byte i is i % 251."""
    size = int(request.query_params["size"])
    pieces = int(request.query_params.get("pieces", "1"))
    pattern = bytes(index % 251 for index in range(251)) * (size // 251 + 1)
    step = -(-size // pieces)
    if request.query_params.get("stream") == "1":
        response.flush()
    for start in range(0, size, step):
        response.write(pattern[start : min(size, start + step)])


@app.get("/stream-error")
def stream_error(request: Request, response: Response) -> None:
    def produce() -> Any:
        yield "one|"
        yield "two|"
        raise RuntimeError("generator-failure-marker-9012")

    response.stream(produce())
