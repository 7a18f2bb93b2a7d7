"""Application factories, as Flask's ``create_app()``: each call builds a new application."""

from __future__ import annotations

import os

from theframework import Framework, Request, Response

calls = 0


def create_app(greeting: str = "made by a factory", punctuation: str = "") -> Framework:
    """A Framework answering ``GET /`` with the greeting and the pid that called the factory."""
    global calls
    calls += 1
    app = Framework()
    built_in = os.getpid()

    @app.get("/")
    def index(request: Request, response: Response) -> None:
        response.write(f"{greeting}{punctuation} in {built_in}")

    return app


def returns_nothing() -> None:
    """A factory that forgot its return statement."""
