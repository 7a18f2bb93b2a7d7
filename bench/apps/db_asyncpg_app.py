"""The database benchmark on asyncio with asyncpg (bench/database.py): ``asgi`` for uvicorn (raw
ASGI 3) and ``rsgi`` for Granian (RSGI), answering from the same handlers. The pool is created
on the first request, inside the server's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import db_common

SELECT_WORLD = db_common.numbered(db_common.SELECT_WORLD)
_pool: Any = None
_pool_lock: asyncio.Lock | None = None


async def _get_pool() -> Any:
    global _pool, _pool_lock
    if _pool is None:
        if _pool_lock is None:
            _pool_lock = asyncio.Lock()
        async with _pool_lock:
            if _pool is None:
                _pool = await asyncpg.create_pool(
                    db_common.DATABASE_URL,
                    min_size=db_common.POOL_SIZE,
                    max_size=db_common.POOL_SIZE,
                )
    return _pool


async def single_query(query_string: str) -> tuple[bytes, bytes]:
    async with (await _get_pool()).acquire() as connection:
        row = await connection.fetchrow(SELECT_WORLD, db_common.random_id())
    return b"application/json", db_common.json_bytes(db_common.world(row))


async def queries(query_string: str) -> tuple[bytes, bytes]:
    count = db_common.query_count(query_string)
    worlds = []
    async with (await _get_pool()).acquire() as connection:
        statement = await connection.prepare(SELECT_WORLD)
        for _ in range(count):
            worlds.append(db_common.world(await statement.fetchrow(db_common.random_id())))
    return b"application/json", db_common.json_bytes(worlds)


async def fortunes(query_string: str) -> tuple[bytes, bytes]:
    async with (await _get_pool()).acquire() as connection:
        rows = await connection.fetch(db_common.SELECT_FORTUNES)
    body = db_common.fortunes_html(db_common.sorted_fortunes(rows))
    return b"text/html; charset=utf-8", body


async def updates(query_string: str) -> tuple[bytes, bytes]:
    count = db_common.query_count(query_string)
    worlds = []
    async with (await _get_pool()).acquire() as connection:
        statement = await connection.prepare(SELECT_WORLD)
        for _ in range(count):
            row = db_common.world(await statement.fetchrow(db_common.random_id()))
            row["randomNumber"] = db_common.random_id()
            worlds.append(row)
        update = db_common.numbered(db_common.update_sql(count))
        await connection.execute(update, *db_common.flat_pairs(worlds))
    return b"application/json", db_common.json_bytes(worlds)


async def plaintext(query_string: str) -> tuple[bytes, bytes]:
    return b"text/plain", db_common.PLAINTEXT


ROUTES: dict[str, Callable[[str], Awaitable[tuple[bytes, bytes]]]] = {
    "/plaintext": plaintext,
    "/db": single_query,
    "/queries": queries,
    "/fortunes": fortunes,
    "/updates": updates,
}

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: the pool is made on the first request
    route = ROUTES.get(scope["path"])
    if route is None:
        status, content_type, body = 404, b"text/plain", b""
    else:
        status = 200
        content_type, body = await route(scope["query_string"].decode("latin-1"))
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def rsgi(scope: Any, protocol: Any) -> None:
    route = ROUTES.get(scope.path)
    if route is None:
        status, content_type, body = 404, b"text/plain", b""
    else:
        status = 200
        content_type, body = await route(scope.query_string)
    headers = [("content-type", content_type.decode()), ("content-length", str(len(body)))]
    protocol.response_bytes(status, headers, body)
