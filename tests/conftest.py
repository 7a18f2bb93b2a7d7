"""Fixtures and options shared by the whole pytest suite.

Engine fixtures:
- ``backend``: "io_uring" or "epoll"; every test asking for it runs once per backend selected with
  ``--backend=both|io_uring|epoll`` (default both).
- ``hub``: a fresh ``_core.Hub(backend)``. After a test that used it (and passed), the hub must have
  nothing pending, and the process must hold no more file descriptors than before the test.
- ``check_fds`` marker: the same fd-leak check for a test that does not use ``hub``.
- ``postgres``: a PostgreSQL server for the session (tests/postgres_server.py).

HTTP server fixtures live in their own section at the end of this file.
"""

from __future__ import annotations

import gc
import resource
import tempfile
from collections.abc import Generator, Iterator

import pytest
from helpers import open_fds
from postgres_server import PostgresServer

from theframework import _core

BACKENDS = ("io_uring", "epoll")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("both", *BACKENDS),
        default="both",
        help="hub backend(s) the engine tests run on (default: both)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "check_fds: fail the test if it leaves more open file descriptors than before"
    )
    # The stress tests hold a few thousand sockets at once; the default soft limit may be 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend")
        backends = list(BACKENDS) if chosen == "both" else [chosen]
        metafunc.parametrize("backend", backends, ids=backends, indirect=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keeps each phase's report on the item, so teardown checks can stay quiet after a failure
    # (the failure's traceback keeps the hub and its sockets alive; reporting them as leaks
    # would only hide the real error).
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_passed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is not None and report.passed


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The hub backend under test (parametrised by pytest_generate_tests)."""
    name: str = request.param
    return name


@pytest.fixture(autouse=True)
def _fd_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """For tests using ``hub`` or marked ``check_fds``: the open fds after the test (once every
    other fixture is torn down and garbage collected) must be those before it. Autouse so that
    it is set up first and torn down last."""
    enabled = "hub" in request.fixturenames or request.node.get_closest_marker("check_fds")
    if not enabled:
        yield
        return
    gc.collect()
    before = open_fds()
    yield
    if not _test_passed(request):
        return
    # pytest keeps fixture values in item.funcargs until the whole teardown is over; a hub kept
    # there would still hold its ring (or epoll) fd and its wake-up fds.
    funcargs: dict[str, object] = getattr(request.node, "funcargs", {})
    for name in [name for name, value in funcargs.items() if isinstance(value, _core.Hub)]:
        del funcargs[name]
    gc.collect()
    after = open_fds()
    leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
    assert not leaked, f"file descriptors leaked by the test: {leaked}"


@pytest.fixture
def hub(backend: str, request: pytest.FixtureRequest) -> Iterator[_core.Hub]:
    """A fresh hub on ``backend``; nothing may be pending in it once the test is done."""
    instance = _core.Hub(backend)
    assert instance.backend == backend
    yield instance
    if _test_passed(request):
        assert not instance.running, "the hub is still running after the test"
        assert instance.pending == 0, f"{instance.pending} operations still pending in the hub"
    del instance


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server (Debian's packages, a fresh cluster in a temporary directory, a free
    port on 127.0.0.1) for the whole session; stopped and deleted at the end."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unix_socket_path() -> Iterator[str]:
    """A path for a UNIX socket in a fresh directory, short enough for sun_path (108 bytes),
    which pytest's tmp_path may not be."""
    with tempfile.TemporaryDirectory(prefix="tf-") as directory:
        yield f"{directory}/socket"


# --------------------------------------------------------------------------------------------
# HTTP server fixtures (``python -m theframework APP --port 0 ...`` in a subprocess, waiting for
# its readiness signal) go below this line.
