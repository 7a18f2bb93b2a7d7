"""TechEmpower's database tests on PostgreSQL: theframework (Framework API, and Flask under
``--interface wsgi``; psycopg 3 under ``--patch-all``) against Granian RSGI and uvicorn (asyncpg)
and gunicorn + gevent (psycopg2 + psycogreen).

    bench/setup.sh                                  # once: PostgreSQL, wrk, the peers' venv
    .venv/bin/python bench/database.py [--quick] [--rounds 2] [--servers theframework,uvicorn]

Starts a PostgreSQL of its own (tests/postgres_server.py: Debian's binaries, a fresh cluster in a
temporary directory), or uses ``--dsn``'s server; creates the ``hello_world`` database with
TechEmpower's ``World`` (10,000 rows, randomNumber 1..10000) and ``Fortune`` (the 12 standard
fortunes) tables. Then, per round and per server (one worker, a pool of ``POOL_SIZE`` database
connections; bench/apps/db_*.py), a fresh server is started, each endpoint's answer is checked
against the database (``verify``: a server that answers wrongly is not measured), and the four
tests run: 1 s warm-up, then the measured wrk run (64 connections, 1 thread).

As in run.py, the server runs on CPU 0; wrk, this script and PostgreSQL on CPU 1 (PostgreSQL
stands for the database machine of a real deployment). Server CPU per request is the user +
system time of the server's processes (/proc) over the measured run divided by the requests.

Writes bench/results/database.md and database.json (``--results DIR`` elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import html
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import run

sys.path.insert(0, str(run.ROOT / "tests"))
from postgres_server import PostgresServer  # tests/ is not a package: on the path

sys.path.insert(0, str(run.APPS))
import db_common

DATABASE = "hello_world"
CONNECTIONS = 64
QUERIES = 20

# TechEmpower's fortunes (id, message): data of the public test definition.
FORTUNES = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. — Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "フレームワークのベンチマーク"),
]


@dataclasses.dataclass(frozen=True)
class Test:
    key: str
    name: str
    path: str


TESTS = [
    Test("db", "single query", "/db"),
    Test("queries", f"{QUERIES} queries", f"/queries?queries={QUERIES}"),
    Test("fortunes", "fortunes", "/fortunes"),
    Test("updates", f"{QUERIES} updates", f"/updates?queries={QUERIES}"),
]

_OURS = f"{run.OURS_PYTHON} -m theframework"
_PEERS = run.PEERS
SERVERS = [
    run.Server(
        "theframework",
        "theframework, Framework API, psycopg 3 + psycopg_pool, --patch-all",
        f"{_OURS} db_tf_app:app --patch-all {run._OURS_OPTIONS}",
        needs=(run.OURS_PYTHON,),
    ),
    run.Server(
        "theframework-flask",
        "theframework --interface wsgi --patch-all, Flask, psycopg 3 + psycopg_pool",
        f"{_OURS} db_flask_app:app --interface wsgi --patch-all {run._OURS_OPTIONS}",
        needs=(run.OURS_PYTHON,),
    ),
    run.Server(
        "granian-rsgi",
        "Granian RSGI, 1 worker, asyncpg",
        f"{_PEERS / 'granian'} --interface rsgi --workers 1 --host {{host}} --port {{port}} "
        "--log-level warning db_asyncpg_app:rsgi",
        module="granian, asyncpg",
    ),
    run.Server(
        "uvicorn",
        "uvicorn --http httptools, raw ASGI, asyncpg",
        f"{_PEERS / 'uvicorn'} db_asyncpg_app:asgi --http httptools --host {{host}} "
        "--port {port} --no-access-log --log-level warning --backlog 4096 "
        "--timeout-graceful-shutdown 2",
        module="uvicorn, asyncpg",
    ),
    run.Server(
        "gunicorn-gevent",
        "gunicorn -k gevent, 1 worker, psycopg2 + psycogreen",
        f"{_PEERS / 'gunicorn'} -k gevent -w 1 -b {{host}}:{{port}} --backlog 4096 "
        "--graceful-timeout 2 --log-level warning db_gevent_app:app",
        module="gevent, psycogreen, psycopg2",
    ),
]


# ---------------------------------------------------------------------------------------------
# The database


def create_database(admin_dsn: str) -> str:
    """(Re)creates ``hello_world`` with its two tables filled; returns its connection URL."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
        parameters = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    url = f"postgresql://{parameters.get('user', 'postgres')}@{parameters['host']}:"
    url += f"{parameters['port']}/{DATABASE}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL)"
        )
        connection.execute("CREATE TABLE fortune (id integer PRIMARY KEY, message text NOT NULL)")
        with connection.cursor().copy("COPY world (id, randomnumber) FROM STDIN") as copy:
            for identifier in range(1, db_common.ROWS + 1):
                copy.write_row((identifier, random.randint(1, db_common.ROWS)))
        connection.cursor().executemany(
            "INSERT INTO fortune (id, message) VALUES (%s, %s)", FORTUNES
        )
        connection.execute("VACUUM ANALYZE")
    return url


# ---------------------------------------------------------------------------------------------
# Checking the answers (TechEmpower's verifier, in short)


class WrongAnswer(Exception):
    pass


def fetch(port: int, path: str) -> tuple[str, bytes]:
    """Content-Type and body of GET ``path``; WrongAnswer unless it is a 200."""
    url = f"http://{run.HOST}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.headers.get("Content-Type", ""), bytes(answer.read())
    except OSError as error:
        raise WrongAnswer(f"GET {path}: {error}") from error


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise WrongAnswer(message)


def worlds_of(port: int, path: str, expected_count: int | None) -> list[dict[str, Any]]:
    content_type, body = fetch(port, path)
    expect(content_type.startswith("application/json"), f"{path}: Content-Type {content_type}")
    value = json.loads(body)
    worlds = [value] if expected_count is None else value
    expect(isinstance(worlds, list), f"{path}: not a JSON list: {body[:80]!r}")
    if expected_count is not None:
        expect(len(worlds) == expected_count, f"{path}: {len(worlds)} rows, not {expected_count}")
    for world in worlds:
        expect(
            isinstance(world, dict) and set(world) == {"id", "randomNumber"},
            f"{path}: not a World object: {world!r}",
        )
        expect(1 <= world["id"] <= db_common.ROWS, f"{path}: id out of range: {world!r}")
    return worlds


def expect_stored(url: str, path: str, worlds: Sequence[dict[str, Any]]) -> None:
    """Each answered World holds the randomNumber the database has for its id. An id drawn twice
    by one /updates request is answered twice with two numbers, and its row takes one of them
    (the batched UPDATE sets it once): any of them will do."""
    answered: dict[int, set[int]] = {}
    for world in worlds:
        answered.setdefault(world["id"], set()).add(world["randomNumber"])
    with psycopg.connect(url) as connection:
        for identifier, numbers in answered.items():
            stored = connection.execute(
                "SELECT randomnumber FROM world WHERE id = %s", (identifier,)
            ).fetchone()
            expect(
                stored is not None and stored[0] in numbers,
                f"{path}: id {identifier} answered with {sorted(numbers)} but the database "
                f"holds {stored!r}",
            )


FORTUNE_ROW = re.compile(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>")


def expect_fortunes(port: int) -> None:
    """The page lists every fortune plus the added one, sorted by message, escaped."""
    content_type, body = fetch(port, "/fortunes")
    expect(content_type.startswith("text/html"), f"/fortunes: Content-Type {content_type}")
    page = re.sub(r">\s+<", "><", body.decode())
    expect(page.startswith("<!DOCTYPE html>"), f"/fortunes: not an HTML page: {page[:60]!r}")
    rows = [
        (int(identifier), html.unescape(text)) for identifier, text in FORTUNE_ROW.findall(page)
    ]
    expected = sorted([*FORTUNES, (0, db_common.ADDITIONAL_FORTUNE)], key=lambda row: row[1])
    expect(rows == expected, f"/fortunes: rows {rows!r}, expected {expected!r}")
    expect("<script>" not in page, "/fortunes: the <script> fortune is not escaped")
    expect("&lt;script&gt;" in page, "/fortunes: the <script> fortune is missing")


def verify(port: int, url: str) -> None:
    """WrongAnswer unless every endpoint answers as TechEmpower's rules say."""
    expect_stored(url, "/db", worlds_of(port, "/db", None))
    expect_stored(url, "/queries", worlds_of(port, f"/queries?queries={QUERIES}", QUERIES))
    for query, count in (("", 1), ("queries=0", 1), ("queries=foo", 1), ("queries=501", 500)):
        worlds_of(port, f"/queries?{query}", count)
    expect_fortunes(port)
    updated = worlds_of(port, f"/updates?queries={QUERIES}", QUERIES)
    expect_stored(url, "/updates", updated)  # what the answer says is what was written
    worlds_of(port, "/updates?queries=501", 500)


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclasses.dataclass
class Results:
    # by_test[test key][server name] -> one LoadResult per round
    by_test: dict[str, dict[str, list[run.LoadResult]]] = dataclasses.field(default_factory=dict)
    # ratios[test key][server name] -> req/s over theframework's, per round
    ratios: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # not installed here
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # did not start, or wrong
    load_average: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)


def measure_server(
    server: run.Server,
    url: str,
    timing: run.Timing,
    round_number: int,
    results: Results,
    work_dir: Path,
) -> dict[str, float]:
    """One fresh server: verified, then every test; returns req/s by test."""
    rates: dict[str, float] = {}
    with run.running(server, work_dir, f"database-round{round_number}") as process:
        verify(process.port, url)
        run.log(f"  round {round_number + 1} {server.name:18} answers verified")
        for test in TESTS:
            scenario = run.Scenario(0, test.name, test.path, CONNECTIONS)
            run.run_wrk(process.port, scenario, timing.warmup, work_dir)
            cpu_before = process.cpu_seconds()
            result = run.run_wrk(process.port, scenario, timing.duration, work_dir)
            result.server_cpu = (process.cpu_seconds() - cpu_before) / max(
                1.0, round(timing.duration)
            )
            results.by_test.setdefault(test.key, {}).setdefault(server.name, []).append(result)
            rates[test.key] = result.requests_per_second
            cost = run.cpu_per_request(result)
            flags = f"  p99 {result.p99_ms:.1f} ms"
            flags += f"  CPU {cost:.0f} µs/request" if cost is not None else ""
            if result.errors or result.non_2xx:
                flags += f"  errors {result.errors}, non-2xx {result.non_2xx}"
            run.log(
                f"  round {round_number + 1} {server.name:18} {test.name:14} "
                f"{result.requests_per_second:>8.0f} req/s{flags}"
            )
    return rates


def run_round(
    round_number: int,
    servers: Sequence[run.Server],
    url: str,
    timing: run.Timing,
    results: Results,
    work_dir: Path,
) -> None:
    order = list(servers)
    shift = round_number % len(order)
    order = order[shift:] + order[:shift]  # alternate who goes first, as run.py does
    if round_number % 2 == 1:
        order.reverse()
    in_round: dict[str, dict[str, float]] = {}
    for server in order:
        if server.name in results.skipped or server.name in results.failed:
            continue
        try:
            rates = measure_server(server, url, timing, round_number, results, work_dir)
        except (run.ServerFailed, WrongAnswer) as failure:
            results.failed[server.name] = f"{type(failure).__name__}: {failure}"
            run.log(f"  FAILED {server.name}: {failure}")
            continue
        for key, rate in rates.items():
            in_round.setdefault(key, {})[server.name] = rate
    for key, by_server in in_round.items():
        reference = by_server.get(run.REFERENCE)
        if not reference:
            continue
        for name, rate in by_server.items():
            results.ratios.setdefault(key, {}).setdefault(name, []).append(rate / reference)


# ---------------------------------------------------------------------------------------------
# Reporting


def table(
    servers: Sequence[run.Server], results: Results, cell: Any, with_ratio: bool = False
) -> list[str]:
    lines = [
        "| server | " + " | ".join(test.name for test in TESTS) + " |",
        "|---" * (len(TESTS) + 1) + "|",
    ]
    for server in servers:
        cells = []
        for test in TESTS:
            measured = results.by_test.get(test.key, {}).get(server.name, [])
            text = cell(measured) if measured else "-"
            ratio = run.median_or_none(results.ratios.get(test.key, {}).get(server.name, []))
            if with_ratio and measured and ratio is not None and server.name != run.REFERENCE:
                text += f" ({ratio:.2f}x)"
            errors = sum(result.errors + result.non_2xx for result in measured)
            if errors:
                text += f" ⚠{errors} errors"
            cells.append(text)
        if any(text != "-" for text in cells):
            lines.append(f"| {server.name} | " + " | ".join(cells) + " |")
    return lines


def requests_cell(measured: Sequence[run.LoadResult]) -> str:
    return run.format_rate(run.median_or_none([r.requests_per_second for r in measured]))


def p99_cell(measured: Sequence[run.LoadResult]) -> str:
    value = run.median_or_none([r.p99_ms for r in measured])
    return "-" if value is None else f"{value:.1f}"


def cpu_cell(measured: Sequence[run.LoadResult]) -> str:
    value = run.median_cpu_per_request(measured)
    cpu = run.median_or_none([r.server_cpu for r in measured])
    return "-" if value is None or cpu is None else f"{value:.0f} µs ({cpu:.0%})"


def driver_versions() -> str:
    """The database drivers' versions: ours (.venv), the peers' (bench/.venv-peers)."""
    versions = [f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})"]
    if (run.PEERS / "python").exists():
        listing = subprocess.run(
            [str(run.PEERS / "python"), "-m", "pip", "list", "--format=json"],
            capture_output=True,
            text=True,
        ).stdout
        with contextlib.suppress(json.JSONDecodeError):
            wanted = {"asyncpg", "psycopg2-binary", "psycopg2", "psycogreen"}
            versions += [
                f"{package['name']} {package['version']}"
                for package in json.loads(listing)
                if package["name"].lower() in wanted
            ]
    return "drivers " + ", ".join(versions)


def write_results(
    directory: Path,
    command: str,
    servers: Sequence[run.Server],
    timing: run.Timing,
    results: Results,
    final: bool,
) -> None:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not final:
        when += " (partial)"
    loads = [load[0] for load in results.load_average]
    lines = [
        "# Database benchmark (TechEmpower's tests on PostgreSQL)",
        "",
        f"{when}; `{command}`.",
        "",
        f"{timing.rounds} round(s) alternating the server order; per test {timing.warmup:.0f} s "
        f"warm-up then {timing.duration:.0f} s measured with wrk (1 thread, {CONNECTIONS} "
        "connections); medians over rounds; ratios to theframework within each round, then "
        f"their median. One worker per server, {db_common.POOL_SIZE} database connections each; "
        "server on CPU 0, wrk and PostgreSQL on CPU 1. Every server's answers were checked "
        "against the database before it was measured.",
        "",
        f"Machine: {run.environment_line()}; {driver_versions()}.",
        "",
        f"1-minute load average during the run: {min(loads, default=0):.2f}-"
        f"{max(loads, default=0):.2f} (2 CPUs; the benchmark itself keeps ~2 busy).",
        "",
        "Servers:",
        "",
        *[f"- `{server.name}`: {server.description}" for server in servers],
        "",
        "Requests/s (ratio to theframework in the same round):",
        "",
        *table(servers, results, requests_cell, with_ratio=True),
        "",
        "Latency p99 (ms, wrk):",
        "",
        *table(servers, results, p99_cell),
        "",
        "Server CPU per request (µs; the server's CPU use during the run in brackets: under "
        "100% the server waited for the database or the client):",
        "",
        *table(servers, results, cpu_cell),
        "",
    ]
    if results.skipped or results.failed:
        lines += ["Not measured:", ""]
        lines += [f"- {name}: {why}" for name, why in results.skipped.items()]
        lines += [f"- {name}: FAILED: {why}" for name, why in results.failed.items()]
        lines.append("")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "database.md").write_text("\n".join(lines))
    raw = {
        "command": command,
        "when": when,
        "timing": dataclasses.asdict(timing),
        "by_test": {
            key: {name: [dataclasses.asdict(r) for r in measured] for name, measured in by.items()}
            for key, by in results.by_test.items()
        },
        "ratios": results.ratios,
        "skipped": results.skipped,
        "failed": results.failed,
        "load_average": results.load_average,
    }
    (directory / "database.json").write_text(json.dumps(raw, indent=1, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one round of 1 s per test")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds measured per test")
    parser.add_argument(
        "--servers",
        default="",
        help="comma-separated (default all): " + ", ".join(server.name for server in SERVERS),
    )
    parser.add_argument(
        "--dsn",
        help="a PostgreSQL server to use (libpq conninfo of a superuser), instead of starting one",
    )
    parser.add_argument(
        "--results", type=Path, default=run.RESULTS, help="where database.md/.json go"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    timing = dataclasses.replace(run.FULL, rounds=args.rounds, duration=args.seconds)
    if args.quick:
        timing = dataclasses.replace(run.QUICK, rounds=1)
    servers = run.choose_servers("database.py", args.servers, SERVERS)
    if servers is None:
        return 2
    if not run.load_tools_present("database.py"):
        return 1
    # This process and its children (wrk, and PostgreSQL when started here) stay off the
    # server's CPU.
    os.sched_setaffinity(0, {run.CLIENT_CPU})
    results = Results()
    for server in servers:
        if (why := run.available(server)) is not None:
            results.skipped[server.name] = why
            run.log(f"skipping {server.name}: {why}")
    command = "bench/database.py " + " ".join(sys.argv[1:] if argv is None else argv)
    postgres = None if args.dsn else PostgresServer()
    try:
        url = create_database(args.dsn if postgres is None else postgres.dsn)
        os.environ["DATABASE_URL"] = url  # read by the apps (db_common.DATABASE_URL)
        run.log(f"PostgreSQL: {url}, {db_common.ROWS} World rows, {len(FORTUNES)} fortunes")
        with tempfile.TemporaryDirectory(prefix="tf-bench-db-") as temporary:
            for round_number in range(timing.rounds):
                results.load_average.append(os.getloadavg())
                run.log(f"round {round_number + 1}/{timing.rounds}")
                run_round(round_number, servers, url, timing, results, Path(temporary))
                write_results(args.results, command.strip(), servers, timing, results, False)
            results.load_average.append(os.getloadavg())
    finally:
        if postgres is not None:
            postgres.stop()
    write_results(args.results, command.strip(), servers, timing, results, final=True)
    run.log(f"wrote {args.results / 'database.md'}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    run.log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(code)
