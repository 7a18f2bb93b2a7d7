"""The native module as a module: its constants, _core._configure, and the defaults it sets
itself at import (HTTPError, Headers, QueryParams, the "theframework.error" logger)."""

from __future__ import annotations

import mmap
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import greenlet
import pytest

import theframework
from theframework import _core

pytestmark = pytest.mark.timeout(60)


def test_heartbeat_cell_size_is_exposed() -> None:
    assert _core.HEARTBEAT_CELL_SIZE == 16


def test_set_heartbeat_needs_one_cell() -> None:
    hub = _core.Hub()
    memory = mmap.mmap(-1, mmap.PAGESIZE)  # page-aligned, so 8-byte aligned
    try:
        with pytest.raises(ValueError, match="16 bytes or more"):
            hub.set_heartbeat(memoryview(memory)[: _core.HEARTBEAT_CELL_SIZE - 1])
        hub.set_heartbeat(memoryview(memory)[: _core.HEARTBEAT_CELL_SIZE])
        hub.set_heartbeat(None)
    finally:
        del hub
        memory.close()


def test_configure_without_arguments_changes_nothing() -> None:
    assert _core._configure() is None
    with pytest.raises(TypeError, match="unknown hook"):
        _core._configure(no_such_hook=1)


def _run(code: str, *path: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter. With `path`: without site processing (so no editable
    install redirects the package), `path` alone in front of the standard library."""
    script = f"import sys\nsys.path[:0] = {list(path)!r}\n" + textwrap.dedent(code)
    options = ["-S"] if path else []
    return subprocess.run(
        [sys.executable, *options, "-c", script], capture_output=True, text=True, timeout=30
    )


_FAILING_GREENLET = """
    def main():
        def boom():
            raise LookupError("escaped from a greenlet")

        _core.spawn(boom)
        _core.sleep(0.01)

    _core.Hub().run(main)
"""


def test_without_error_handler_greenlet_errors_go_to_the_logger() -> None:
    # _configure(error_handler=None) clears the package's handler: the native default logs.
    result = _run(
        "from theframework import _core\n_core._configure(error_handler=None)\n"
        + textwrap.dedent(_FAILING_GREENLET)
    )
    assert result.returncode == 0, result.stderr
    assert "Unhandled exception in a greenlet" in result.stderr
    assert "LookupError: escaped from a greenlet" in result.stderr


def test_core_configures_itself_at_import(tmp_path: Path) -> None:
    # A package whose __init__ never calls _configure: only the native defaults are in place.
    package = tmp_path / "theframework"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = Path(theframework.__file__).parent
    for name in ("errors.py", "datastructures.py"):
        shutil.copy(source / name, package / name)
    shutil.copy(_core.__file__, package / Path(_core.__file__).name)
    greenlet_root = str(Path(greenlet.__file__).parent.parent)
    checks = """
        from theframework import _core
        assert "theframework.errors" in sys.modules
        assert "theframework.datastructures" in sys.modules
    """
    result = _run(
        textwrap.dedent(checks) + textwrap.dedent(_FAILING_GREENLET),
        str(tmp_path),
        greenlet_root,
    )
    assert result.returncode == 0, result.stderr
    assert "Unhandled exception in a greenlet" in result.stderr
    assert "LookupError: escaped from a greenlet" in result.stderr
