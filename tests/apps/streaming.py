"""The streaming test application: chunked streams and Server-Sent Events that advance only when
the client opens a gate (POST /gate/NAME), and sendfile."""

from __future__ import annotations

from collections.abc import Iterator

from theframework import Framework, Request, Response

from . import gate

app = Framework()


@app.post("/gate/{name}")
def open_gate(request: Request, response: Response) -> None:
    response.json({"woken": gate.release(request.params["name"])})


@app.get("/chunks/{name}")
def chunks(request: Request, response: Response) -> None:
    """Streams ``count`` chunks; chunk i+1 is produced only after gate NAME-i opens."""
    name = request.params["name"]
    count = int(request.query_params.get("count", "3"))

    def produce() -> Iterator[str]:
        for index in range(count):
            yield f"chunk-{index};"
            if index + 1 < count and not gate.wait(f"{name}-{index}"):
                yield "gate-timeout;"
                return

    response.set_header("Content-Type", "text/plain")
    response.stream(produce())


@app.get("/sse/{name}")
def sse(request: Request, response: Response) -> None:
    """Events 0..count-1; event i+1 is sent only after gate NAME-i opens."""
    name = request.params["name"]
    count = int(request.query_params.get("count", "3"))
    response.set_header("Content-Type", "text/event-stream")
    response.set_header("Cache-Control", "no-cache")
    response.flush()
    for index in range(count):
        response.write(f"id: {index}\nevent: tick\ndata: event {index}\n\n")
        if index + 1 < count and not gate.wait(f"{name}-{index}"):
            response.write("event: error\ndata: gate timeout\n\n")
            return


@app.route("/file", methods=["GET", "HEAD"])
def file(request: Request, response: Response) -> None:
    response.sendfile(request.query_params["path"], content_type="application/octet-stream")


@app.route("/text-file", methods=["GET"])
def text_file(request: Request, response: Response) -> None:
    response.sendfile(request.query_params["path"])


@app.post("/gate-after-body/{name}")
def gate_after_body(request: Request, response: Response) -> None:
    """Reads the body (with Expect: 100-continue, the client sees 100 Continue once this
    handler runs), then opens gate NAME."""
    body = request.body
    response.json({"body": body.decode(), "woken": gate.release(request.params["name"])})
