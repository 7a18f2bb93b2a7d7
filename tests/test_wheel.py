"""The wheel as a user gets it.

scripts/build_wheels.sh (what ``make wheel`` runs for every CPython) builds the running
interpreter's wheel and repairs it with auditwheel; the wheel is then installed with
``pip install --only-binary :all:`` into a fresh virtual environment where nothing can be compiled:
PATH holds only the environment's own scripts and a directory of tripwire compilers and build tools
(cc, gcc, g++, c++, clang, clang++, cmake, ninja, make) that record being run and fail, and CC/CXX
name the tripwires too. The installed ``theframework`` script then serves examples/hello.py (copied
out of the repository, so that nothing of the source tree is importable) and answers
``hello world``; the installed engine needs no liburing at run time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get

from theframework import __version__

REPOSITORY = Path(__file__).resolve().parent.parent
TRIPWIRE_TOOLS = ("cc", "gcc", "g++", "c++", "clang", "clang++", "cmake", "ninja", "make")
PYTHON_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"

pytestmark = [
    # A cold Release build of the engine takes minutes on a loaded machine.
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        bool(os.environ.get("THEFRAMEWORK_SANITIZED")),
        reason="the release wheel is built and tested by the uninstrumented run (make test); "
        "under make asan libasan is preloaded into every process, compilers and pip included",
    ),
]


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    build_output: str  # build_wheels.sh's output, `auditwheel show` included


@dataclass(frozen=True)
class Installation:
    """A fresh virtual environment with the wheel installed into it."""

    root: Path
    environment: dict[str, str]  # no compiler reachable: see the module's docstring
    tripwire_log: Path  # a line per tripwire tool run (none expected)
    pip_output: str


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """The running interpreter's wheel, built and repaired by scripts/build_wheels.sh."""
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run(
        [str(REPOSITORY / "scripts" / "build_wheels.sh"), str(wheelhouse), sys.executable],
        cwd=REPOSITORY,
        env={**os.environ, "TOOLS_PYTHON": sys.executable},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    wheels = list(wheelhouse.glob("*.whl"))
    assert len(wheels) == 1, (wheels, output)
    return BuiltWheel(wheels[0], output)


def _write_tripwires(directory: Path, log: Path) -> None:
    directory.mkdir()
    for tool in TRIPWIRE_TOOLS:
        script = directory / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 1\n')
        script.chmod(0o755)


@pytest.fixture(scope="module")
def installation(built_wheel: BuiltWheel, tmp_path_factory: pytest.TempPathFactory) -> Installation:
    base = tmp_path_factory.mktemp("installed")
    root = base / "venv"
    tripwires = base / "tripwires"
    tripwire_log = base / "tripwires.log"
    _write_tripwires(tripwires, tripwire_log)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    hidden = {"CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "LIBRARY_PATH", "PYTHONPATH"}
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in hidden and not name.startswith(("THEFRAMEWORK", "CMAKE", "SKBUILD"))
    }
    environment.update(
        PATH=f"{root / 'bin'}{os.pathsep}{tripwires}",
        VIRTUAL_ENV=str(root),
        CC=str(tripwires / "cc"),
        CXX=str(tripwires / "c++"),
        PIP_ONLY_BINARY=":all:",
    )
    pip = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-v", "--only-binary", ":all:",
         str(built_wheel.path)],
        cwd=base, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    pip_output = pip.stdout + pip.stderr
    assert pip.returncode == 0, pip_output
    return Installation(root, environment, tripwire_log, pip_output)


def test_the_wheel_is_manylinux_and_carries_the_package_only(built_wheel: BuiltWheel) -> None:
    name = built_wheel.path.name
    match = re.fullmatch(
        rf"theframework-(?P<version>[^-]+)-{PYTHON_TAG}-{PYTHON_TAG}-"
        r"(?P<platform>manylinux_\d+_\d+_x86_64)\.whl",
        name,
    )
    assert match, name
    assert match["version"] == __version__
    # The tag is the one auditwheel computed from the symbols the module uses, and it is no newer
    # than README promises (glibc 2.34: a symbol of a later glibc or libstdc++ raises it).
    assert f'consistent with the following platform tag: "{match["platform"]}"' in " ".join(
        built_wheel.build_output.split()
    ), built_wheel.build_output
    glibc = tuple(int(part) for part in match["platform"].split("_")[1:3])
    assert glibc <= (2, 34), built_wheel.build_output

    with zipfile.ZipFile(built_wheel.path) as archive:
        names = archive.namelist()
        metadata = archive.read(f"theframework-{__version__}.dist-info/METADATA").decode()
    packages = {entry.split("/", 1)[0] for entry in names}
    assert packages == {"theframework", f"theframework-{__version__}.dist-info"}, packages
    for required in ("theframework/_core.pyi", "theframework/py.typed",
                     "theframework/__main__.py", "theframework/server/boot.py",
                     f"theframework-{__version__}.dist-info/licenses/LICENSE"):  # fmt: skip
        assert required in names
    modules = [entry for entry in names if entry.startswith("theframework/_core.")]
    assert len(modules) == 2 and any(re.search(r"\.cpython-\d+-x86_64-linux-gnu\.so$", m)
                                     for m in modules), modules  # fmt: skip
    assert not [e for e in names if "__pycache__" in e or e.endswith((".pyc", ".cpp", ".hpp"))]
    assert "License-Expression: MIT" in metadata
    assert f"Version: {__version__}" in metadata
    assert "Classifier: Operating System :: POSIX :: Linux" in metadata


def test_installing_compiles_nothing(installation: Installation) -> None:
    assert not installation.tripwire_log.exists(), installation.tripwire_log.read_text()
    # pip -v names every build it runs (a wheel built from an sdist, metadata prepared by a
    # build backend); an install from wheels only has none.
    assert "Building wheel" not in installation.pip_output
    assert "Preparing metadata" not in installation.pip_output
    assert "Successfully installed" in installation.pip_output


def test_the_installed_engine_needs_no_liburing(installation: Installation, tmp_path: Path) -> None:
    python = str(installation.root / "bin" / "python")
    found = subprocess.run(
        [python, "-c", "import theframework._core as core; print(core.__file__)"],
        cwd=tmp_path, env=installation.environment, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    module = Path(found.stdout.strip())
    assert module.is_relative_to(installation.root), module
    ldd = shutil.which("ldd")
    assert ldd is not None, "ldd (glibc's libc-bin) is needed to read the module's dependencies"
    dependencies = subprocess.run(
        [ldd, str(module)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "liburing" not in dependencies, dependencies
    assert "not found" not in dependencies, dependencies
    assert "libstdc++.so.6" in dependencies, dependencies  # ldd did read the module


def test_the_installed_command_serves_hello_world(
    installation: Installation, tmp_path: Path
) -> None:
    application = tmp_path / "app"
    (application / "examples").mkdir(parents=True)
    shutil.copy(REPOSITORY / "examples" / "hello.py", application / "examples" / "hello.py")
    command = str(installation.root / "bin" / "theframework")

    version = subprocess.run(
        [command, "--version"], cwd=application, env=installation.environment,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert version.stdout.split() == ["theframework", __version__]

    with ServerProcess(
        "examples.hello:app", "--port", "0", "--workers", "2",
        environment=installation.environment, program=[command], cwd=application,
    ) as server:  # fmt: skip
        port = server.port()
        status, _, body = http_get(port, "/hello")
        assert (status, body) == (200, "hello world")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0, server.output
    assert not installation.tripwire_log.exists(), installation.tripwire_log.read_text()
