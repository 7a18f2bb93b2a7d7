"""PostgreSQL drivers under --patch-all, against a real PostgreSQL (the session's ``postgres``
fixture) and real server processes: psycopg 3 (C and pure-Python implementations), psycopg_pool
and psycopg2 wait on the hub (200 concurrent pg_sleep(0.5) finish together while /hello keeps
answering), COPY, server-side cursors and notifications work, interrupted queries are cancelled
on the server, statement and connect timeouts hold, Django gets one connection per greenlet;
outside a hub the drivers behave unchanged (a script in a plain interpreter)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import requests
from monkey_scripts.runner import run_script
from postgres_server import PostgresServer
from prefork_apps.harness import ServerProcess

from theframework.monkey._imports import when_imported

pytestmark = pytest.mark.timeout(180)

CONCURRENT = 200
SLEEP = 0.5


@contextmanager
def serve(
    app: str, backend: str, environment: dict[str, str]
) -> Iterator[tuple[ServerProcess, int]]:
    """One worker serving ``app`` under --patch-all on ``backend``; yields (server, port)."""
    with ServerProcess(
        app, "--port", "0", "--patch-all", "--backend", backend, environment=environment
    ) as server:
        line = server.wait_for_line(r"listening on http://127.0.0.1:(\d+) .*backend (\S+)\)")
        assert line.group(2) == backend
        yield server, int(line.group(1))


def get(port: int, path: str, timeout: float = 60.0) -> tuple[int, str]:
    answer = requests.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    return answer.status_code, answer.text


def get_json(port: int, path: str) -> Any:
    status, body = get(port, path)
    assert status == 200, body
    return json.loads(body)


def concurrently(
    port: int, paths: list[str], hello: str = "/hello"
) -> tuple[list[tuple[int, str]], list[dict[str, int]], float]:
    """GETs every path at once (a thread each) and asks ``hello`` in a loop until all have
    answered; returns (answers in order, the /hello answers, seconds from first send to last
    answer)."""
    hellos: list[dict[str, int]] = []
    started = time.monotonic()
    with ThreadPoolExecutor(len(paths)) as pool:
        futures = [pool.submit(get, port, path) for path in paths]
        while not all(future.done() for future in futures):
            hellos.append(get_json(port, hello))
        answers = [future.result() for future in futures]
    return answers, hellos, time.monotonic() - started


def app_backends(
    postgres: PostgresServer, like: str = "%", application: str = "%"
) -> list[tuple[int, str, str]]:
    """(pid, state, query) of the other client connections whose query matches ``like`` and
    whose application_name matches ``application``."""
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE backend_type = 'client "
            "backend' AND pid <> pg_backend_pid() AND query LIKE %s AND application_name LIKE %s",
            (like, application),
        ).fetchall()
    return [(int(pid), str(state), str(query)) for pid, state, query in rows]


def views_environment(postgres: PostgresServer, **extra: str) -> dict[str, str]:
    return {"PG_TEST_DSN": postgres.dsn, **extra}


@pytest.mark.parametrize("driver", ["psycopg", "psycopg-python", "psycopg2", "pool"])
def test_concurrent_queries_and_hello(postgres: PostgresServer, backend: str, driver: str) -> None:
    environment = views_environment(postgres)
    if driver == "psycopg-python":
        environment["PSYCOPG_IMPL"] = "python"
    with serve("pg_apps.views:app", backend, environment) as (_server, port):
        patched = get_json(port, "/patched")
        assert patched["psycopg"] is True
        assert patched["implementation"] == ("python" if driver == "psycopg-python" else "binary")
        name = {"psycopg-python": "psycopg"}.get(driver, driver)
        paths = [f"/sleep?driver={name}&seconds={SLEEP}"] * CONCURRENT
        answers, hellos, elapsed = concurrently(port, paths)
        patched = get_json(port, "/patched")
    assert {status for status, _ in answers} == {200}, answers[:3]
    # 200 sleeps of 0.5 s one after the other would take 100 s; concurrent, about 0.5 s (the
    # pool's 40 connections: about 2.5 s). The bound proves concurrency, it is no speed target.
    assert elapsed < 10, elapsed
    # /hello answered while queries were running in the same worker.
    assert max(hello["in_flight"] for hello in hellos) > 1, hellos
    pids = {body for _, body in answers}
    if driver == "pool":
        assert len(pids) <= 40  # the pool's max_size: clients waited for pooled connections
        assert "psycopg_pool" in patched["drivers"]
    else:
        assert len(pids) == CONCURRENT  # one connection per request
    assert ("psycopg2" if driver == "psycopg2" else "psycopg") in patched["drivers"]


def test_copy_server_cursors_and_notifies(postgres: PostgresServer, backend: str) -> None:
    channels = [f"channel_{uuid.uuid4().hex[:12]}" for _ in range(20)]
    with serve("pg_apps.views:app", backend, views_environment(postgres)) as (_server, port):
        paths = (
            ["/copy?rows=2000"] * 10
            + ["/server_cursor?driver=psycopg&rows=5000"] * 10
            + ["/server_cursor?driver=psycopg2&rows=5000"] * 10
        )
        answers, hellos, _elapsed = concurrently(port, paths)
        assert [status for status, _ in answers] == [200] * len(paths), answers
        assert [json.loads(body) for _, body in answers[:10]] == [
            {"count": 2000, "total": 2000 * 1999 // 2}
        ] * 10
        assert [json.loads(body) for _, body in answers[10:]] == [{"total": 5000 * 5001 // 2}] * 20
        assert all(hello["in_flight"] >= 0 for hello in hellos)

        with ThreadPoolExecutor(len(channels)) as pool:
            futures = [pool.submit(get, port, f"/listen?channel={name}") for name in channels]
            # Readiness signal: the worker counts the handlers waiting for a notification.
            deadline = time.monotonic() + 30
            while get_json(port, "/hello")["listening"] < len(channels):
                assert time.monotonic() < deadline, "the listeners did not all start"
                assert not any(future.done() for future in futures), futures[0].result()
            with psycopg.connect(postgres.dsn, autocommit=True) as connection:
                for name in channels:
                    connection.execute("SELECT pg_notify(%s, %s)", (name, f"payload {name}"))
            answers = [future.result() for future in futures]
    assert answers == [(200, f"payload {name}") for name in channels]


@pytest.mark.parametrize("mode", ["timeout", "kill"])
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_interrupted_query_is_cancelled(
    postgres: PostgresServer, backend: str, driver: str, mode: str
) -> None:
    tag = f"tag_{uuid.uuid4().hex}"
    with serve("pg_apps.views:app", backend, views_environment(postgres)) as (server, port):
        outcome = get_json(port, f"/cancel?driver={driver}&tag={tag}&mode={mode}")
        # Without the cancel the backend would still run pg_sleep(60) (psycopg2 closes the
        # connection, and postgres does not notice a closed client while it sleeps).
        running = [row for row in app_backends(postgres, f"%{tag}%") if row[1] == "active"]
        assert running == []
        assert "Exception in handler" not in server.output
    expected = "TimeoutError: request timed out" if mode == "timeout" else "killed"
    assert outcome["outcome"] == expected
    assert outcome["elapsed"] < 10
    # psycopg 3 keeps the connection (the query ended with QueryCanceled); psycopg2 closes a
    # connection whose wait callback raised, by its own rule.
    assert outcome["usable"] is (driver == "psycopg")


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_statement_timeout(postgres: PostgresServer, backend: str, driver: str) -> None:
    with serve("pg_apps.views:app", backend, views_environment(postgres)) as (_server, port):
        outcome = get_json(port, f"/statement_timeout?driver={driver}")
    assert outcome["error"] == "QueryCanceled"
    assert outcome["elapsed"] < 10
    assert outcome["usable"] is True


def test_connect_timeout_is_honoured(postgres: PostgresServer, backend: str) -> None:
    # A listener that never accepts: the kernel completes the handshake, nobody answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host, silent_port = silent.getsockname()
        with serve("pg_apps.views:app", backend, views_environment(postgres)) as (_, port):
            result: dict[str, Any] = {}
            waiter = threading.Thread(
                target=lambda: result.update(
                    get_json(port, f"/connect_timeout?host={host}&port={silent_port}")
                )
            )
            waiter.start()
            connecting_seen = 0
            while waiter.is_alive():
                connecting_seen = max(connecting_seen, get_json(port, "/hello")["in_flight"])
            waiter.join()
    assert result["error"].startswith("ConnectionTimeout"), result
    assert 0.9 < result["elapsed"] < 10, result
    assert connecting_seen == 1  # the worker answered while the connection attempt waited


def test_django_connections_are_per_greenlet(postgres: PostgresServer, backend: str) -> None:
    application = f"django_{uuid.uuid4().hex[:12]}"
    environment = {"PG_TEST_PORT": str(postgres.port), "PG_TEST_APPLICATION": application}
    with serve("pg_apps.django_views:application", backend, environment) as (_, port):
        assert get(port, "/driver") == (200, "psycopg")
        batches: list[list[tuple[int, float, float]]] = []
        for _ in range(2):
            answers, hellos, elapsed = concurrently(port, [f"/backend?seconds={SLEEP}"] * 50)
            assert {status for status, _ in answers} == {200}, answers[:3]
            assert elapsed < 10, elapsed
            assert max(hello["queries"] for hello in hellos) > 1, hellos
            batches.append([_query_span(body) for _, body in answers])
        open_connections = app_backends(postgres, application=application)
    # Queries that ran at the same time each had their own connection (one per greenlet, not
    # per thread). On a loaded machine the client may start a request only after another one
    # ended, and then a parked greenlet may serve it with its connection: that is no overlap.
    for batch in batches:
        _assert_overlapping_queries_use_different_backends(batch)
    first, second = ({pid for pid, _, _ in batch} for batch in batches)
    assert len(first) >= 10, batches[0]  # most ran at once (0.5 s each, all within 10 s)
    # ...and CONN_MAX_AGE kept them with their (parked, reused) greenlets: the second batch
    # reused the first batch's connections instead of opening 50 more. A parked greenlet may
    # have served /hello or /driver meanwhile (one at a time), so a few may be new.
    assert len(second - first) <= 5, (first, second)
    assert {pid for pid, _, _ in open_connections} <= first | second, open_connections


def _query_span(body: str) -> tuple[int, float, float]:
    """The (backend pid, start, end) a /backend answer names."""
    pid, started, ended = body.split()
    return int(pid), float(started), float(ended)


def _assert_overlapping_queries_use_different_backends(
    spans: list[tuple[int, float, float]],
) -> None:
    overlapping = 0
    for index, (pid, started, ended) in enumerate(spans):
        for other_pid, other_started, other_ended in spans[index + 1 :]:
            if started < other_ended and other_started < ended:
                overlapping += 1
                assert pid != other_pid, spans
    assert overlapping > 0, spans


def test_outside_a_hub_and_explicit_patch(postgres: PostgresServer, backend: str) -> None:
    report = run_script("postgres_explicit.py", backend, postgres.dsn)
    assert report["imported_by_patch"] == []
    assert report["outside"] == {
        "psycopg": [1],
        "copy": 300,
        "notify": "outside payload",
        "wait_timeout": "ok",
        "psycopg2": [2],
        "psycopg2_copy": "copy_expert cannot be used with an asynchronous callback.",
        "pool": [3],
    }
    inside = report["inside"]
    assert inside["results"] == [[7]] * 40
    assert inside["elapsed"] < 10  # 40 x 0.5 s one after the other would take 20 s
    assert inside["most_running"] > 1
    assert inside["notifies_timeout"] == "ok"
    assert report["pool"] == {
        "after_kill": True,
        "timeout": "PoolTimeout",
        "timeout_elapsed_ok": True,
        "ticked_meanwhile": True,
    }
    assert report["interrupted_connects"] == {
        "psycopg": ["request timed out", True],
        "psycopg2": ["request timed out", True],
    }
    assert report["patched"] == ["psycopg", "psycopg2", "psycopg_pool"]


def test_when_imported_runs_once_the_module_is_executed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"probe_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("FIRST = 1\nLAST = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[tuple[str, int]] = []
    when_imported(name, lambda module: seen.append((module.__name__, module.LAST)))
    assert seen == []  # not imported yet
    try:
        module = __import__(name)
        assert seen == [(name, 2)]  # after the whole module ran
        when_imported(name, lambda module: seen.append(("again", module.FIRST)))
        assert seen == [(name, 2), ("again", 1)]  # already imported: at once
        assert module.LAST == 2
    finally:
        sys.modules.pop(name, None)
