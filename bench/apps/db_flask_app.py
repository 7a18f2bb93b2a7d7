"""The database benchmark as a Flask application (bench/database.py), served by theframework with
``--interface wsgi --patch-all``: psycopg 3 through a psycopg_pool ConnectionPool, as in
db_tf_app.py, and the fortunes page rendered by a Jinja template (autoescaped), as a Flask
application would."""

from __future__ import annotations

import db_common
import psycopg_pool
from flask import Flask, Response, jsonify, request

app = Flask(__name__)
pool = db_common.psycopg_pool_unopened()

# Compiled once, as render_template() would from a templates folder (render_template_string
# compiles on every call). Autoescaped: Flask turns autoescaping on for its templates.
FORTUNES_TEMPLATE = app.jinja_env.from_string(
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>{% endfor %}"
    "</table></body></html>"
)


def _connection() -> psycopg_pool.ConnectionPool:
    """The pool, opened on the worker's first request (a pool's threads do not survive a
    fork); without waiting: requests wait for their connection cooperatively meanwhile."""
    if pool.closed:
        pool.open(wait=False)
    return pool


@app.get("/plaintext")
def plaintext() -> Response:
    return Response(db_common.PLAINTEXT, content_type="text/plain")


@app.get("/db")
def single_query() -> Response:
    with _connection().connection() as connection:
        row = connection.execute(db_common.SELECT_WORLD, (db_common.random_id(),)).fetchone()
    return jsonify(db_common.world(row))


@app.get("/queries")
def queries() -> Response:
    count = db_common.query_count(request.query_string)
    with _connection().connection() as connection, connection.cursor() as cursor:
        worlds = db_common.read_worlds(cursor, count)
    return jsonify(worlds)


@app.get("/fortunes")
def fortunes() -> str:
    with _connection().connection() as connection:
        rows = connection.execute(db_common.SELECT_FORTUNES).fetchall()
    return FORTUNES_TEMPLATE.render(fortunes=db_common.sorted_fortunes(rows))


@app.get("/updates")
def updates() -> Response:
    count = db_common.query_count(request.query_string)
    with _connection().connection() as connection, connection.cursor() as cursor:
        worlds = db_common.update_worlds(cursor, count)
    return jsonify(worlds)
