"""A source build on a machine that lacks something fails at once with one readable message.

cmake/requirements.cmake checks, before any target is defined: Linux, a C++ compiler, C++20
support, liburing >= 2.3. Each test runs a real CMake configure of this source tree (the venv's
cmake and ninja, as scripts/bootstrap.sh installs them) on a machine made to lack one thing: a
CMAKE_FIND_ROOT_PATH with no liburing or an old one, CXX naming no compiler or one held to C++17,
a target system that is not Linux. One test goes through pip, as a user's `pip install` from
source would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent
PREFIX = "theframework cannot be built here:"
PACKAGES = "Debian/Ubuntu: apt-get install liburing-dev; Fedora: dnf install liburing-devel"

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("THEFRAMEWORK_SANITIZED")),
    reason="configure runs are the same with or without the sanitizers; make test runs them",
)


def _environment(**overrides: str) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"CC", "CXX", "CXXFLAGS", "CPATH", "CPLUS_INCLUDE_PATH", "LIBRARY_PATH"}
        and not name.startswith(("CMAKE", "SKBUILD"))
    }
    environment.update(overrides)
    return environment


def configure(build: Path, *definitions: str, **environment: str) -> tuple[int, str]:
    """cmake's exit status and output (stderr and stdout, flattened to single spaces)."""
    result = subprocess.run(
        [str(TOOLS / "cmake"), "-S", str(REPOSITORY), "-B", str(build), "-G", "Ninja",
         f"-DCMAKE_MAKE_PROGRAM={TOOLS / 'ninja'}", *definitions],
        env=_environment(**environment), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    return result.returncode, " ".join((result.stderr + result.stdout).split())


def hide_liburing_but(root: Path) -> tuple[str, ...]:
    """CMake definitions under which headers and libraries are found under ``root`` only."""
    return (
        f"-DCMAKE_FIND_ROOT_PATH={root}",
        "-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY",
        "-DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY",
    )


def assert_one_error(output: str, message: str) -> None:
    assert message in output, output
    assert output.count("CMake Error") == 1, output
    assert output.count(PREFIX) == 1, output


def test_this_machine_configures(tmp_path: Path) -> None:
    """The control: with nothing hidden, the same configure succeeds and names what it found."""
    status, output = configure(tmp_path / "build")
    assert status == 0, output
    assert "theframework: liburing " in output
    assert PREFIX not in output


def test_missing_liburing_is_named_with_its_packages(tmp_path: Path) -> None:
    empty = tmp_path / "root"
    empty.mkdir()
    status, output = configure(tmp_path / "build", *hide_liburing_but(empty))
    assert status != 0
    assert_one_error(
        output,
        f"{PREFIX} it needs liburing >= 2.3, and neither its header liburing.h nor its library "
        f"was found. {PACKAGES}",
    )


def test_a_liburing_older_than_2_3_is_refused(tmp_path: Path) -> None:
    """liburing 2.2's API: no io_uring_submit_and_get_events (a header and an empty archive)."""
    root = tmp_path / "root"
    (root / "usr" / "include").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "include" / "liburing.h").write_text(
        "struct io_uring { unsigned flags; };\nint io_uring_submit(struct io_uring *ring);\n"
    )
    (root / "usr" / "lib" / "liburing.a").write_bytes(b"!<arch>\n")
    status, output = configure(tmp_path / "build", *hide_liburing_but(root))
    assert status != 0
    assert_one_error(
        output,
        f"{PREFIX} the liburing found ({root}/usr/include/liburing.h, {root}/usr/lib/liburing.a) "
        "is older than 2.3, the first release with io_uring_submit_and_get_events() and "
        f"io_uring_get_events(). {PACKAGES}",
    )


def test_no_cxx_compiler_is_named(tmp_path: Path) -> None:
    status, output = configure(tmp_path / "build", CXX="/bin/false")
    assert status != 0
    assert_one_error(
        output, f"{PREFIX} no C++ compiler was found; it needs one that supports C++20"
    )


def test_a_compiler_without_cxx20_is_named(tmp_path: Path) -> None:
    """g++ held to C++17 (a later -std wins), as an old compiler would be."""
    compiler = tmp_path / "g++-cxx17"
    compiler.write_text('#!/bin/sh\nexec g++ "$@" -std=c++17\n')
    compiler.chmod(0o755)
    status, output = configure(tmp_path / "build", CXX=str(compiler))
    assert status != 0
    assert_one_error(output, f"{PREFIX} the C++ compiler {compiler} (GNU ")
    assert "cannot compile C++20" in output


def test_other_systems_are_refused_before_looking_for_a_compiler(tmp_path: Path) -> None:
    status, output = configure(tmp_path / "build", "-DCMAKE_SYSTEM_NAME=Darwin")
    assert status != 0
    assert_one_error(output, f"{PREFIX} it runs on Linux only")
    assert "this build targets Darwin" in output
    assert "Looking for a CXX compiler" not in output


def test_pip_shows_the_message(tmp_path: Path) -> None:
    """A user's source install: pip runs scikit-build-core, which runs the same configure."""
    empty = tmp_path / "root"
    empty.mkdir()
    definitions = [f"--config-settings=cmake.define.{d[2:]}" for d in hide_liburing_but(empty)]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
         "--wheel-dir", str(tmp_path / "wheels"), f"--config-settings=build-dir={tmp_path}/build",
         *definitions, str(REPOSITORY)],
        env=_environment(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"{PREFIX} it needs liburing >= 2.3" in output, output
    assert not list(tmp_path.glob("wheels/*.whl"))
