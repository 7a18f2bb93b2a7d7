"""A real Flask application for the WSGI tests: routing, JSON, forms, uploads, streaming,
send_file (wsgi.file_wrapper) and error handlers."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, send_file, stream_with_context, url_for

app = Flask(__name__)

# A file larger than the adapter's buffer limit, served with send_file.
DOWNLOAD_SIZE = 400_000
_download = tempfile.NamedTemporaryFile(prefix="tf-flask-", suffix=".bin", delete=False)  # noqa: SIM115
_download.write(os.urandom(DOWNLOAD_SIZE))
_download.close()
DOWNLOAD_PATH = _download.name


class TeapotError(Exception):
    """Raised by /teapot, answered by its error handler."""


@app.errorhandler(TeapotError)
def handle_teapot(error: TeapotError) -> tuple[Response, int]:
    return jsonify(error="teapot", detail=str(error)), 418


@app.errorhandler(404)
def handle_not_found(error: Exception) -> tuple[Response, int]:
    return jsonify(error="not found", path=request.path), 404


@app.get("/")
def index() -> str:
    return "hello from flask"


@app.get("/users/<int:user_id>")
def user(user_id: int) -> Response:
    return jsonify(id=user_id, url=url_for("user", user_id=user_id, _external=True))


@app.post("/json")
def echo_json() -> Response:
    payload = request.get_json()
    return jsonify(received=payload, method=request.method)


@app.post("/form")
def form() -> Response:
    return jsonify(name=request.form["name"], tags=request.form.getlist("tag"))


@app.post("/upload")
def upload() -> Response:
    uploaded = request.files["file"]
    data = uploaded.read()
    return jsonify(
        filename=uploaded.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/stream")
def stream() -> Response:
    count = int(request.args.get("count", "5"))

    def generate() -> Iterator[str]:
        for index in range(count):
            yield f"line {index} of {request.path}\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/download")
def download() -> Response:
    return send_file(DOWNLOAD_PATH, mimetype="application/octet-stream")


@app.get("/digest")
def digest() -> Response:
    with open(DOWNLOAD_PATH, "rb") as file:
        return jsonify(sha256=hashlib.sha256(file.read()).hexdigest())


@app.get("/teapot")
def teapot() -> str:
    raise TeapotError("short and stout")


@app.get("/crash")
def crash() -> str:
    raise RuntimeError("flask view failing on purpose")


@app.get("/environ")
def environ() -> Response:
    keys = ("SCRIPT_NAME", "PATH_INFO", "SERVER_NAME", "SERVER_PORT")
    view = {key: request.environ[key] for key in keys}
    view["multiprocess"] = request.environ["wsgi.multiprocess"]
    view["pid"] = os.getpid()
    return jsonify(view)
