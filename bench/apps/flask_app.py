"""The same small Flask application for every WSGI server (scenario 9): a plaintext route and a
JSON route, through Flask's routing, request and response objects."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from payloads import PLAINTEXT, json_body

app = Flask(__name__)


@app.get("/flask/plaintext")
def plaintext() -> Response:
    return Response(PLAINTEXT, content_type="text/plain")


@app.get("/flask/json")
def json() -> Response:
    return jsonify(message="Hello, World!", size=len(json_body()))
