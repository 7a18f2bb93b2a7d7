"""Imports fine; its startup hook raises."""

from __future__ import annotations

from theframework import Framework

app = Framework()


@app.on_startup
def connect_database() -> None:
    raise ConnectionError("database unreachable in startup hook")
