"""Running a function on a module once it is imported: at once when it already is, otherwise
right after its first import finishes. Lets patch_all() adapt third-party libraries (database
drivers, Django) without importing them in workers that never use them."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

__all__ = ["when_imported"]

_callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
_lock = threading.RLock()

# Loaders made for one module each: wrapping their exec_module touches no other module.
_PER_MODULE_LOADERS = (
    importlib.machinery.SourceFileLoader,
    importlib.machinery.SourcelessFileLoader,
    importlib.machinery.ExtensionFileLoader,
)


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Calls ``callback(module)`` once module ``name`` is imported: now if it already is, or
    right after its first import (in the importing thread). Exceptions from ``callback``
    propagate to the import statement."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _callbacks.setdefault(name, []).append(callback)
            if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
                sys.meta_path.insert(0, _Finder())
            return
    callback(module)


def _imported(name: str, module: ModuleType) -> None:
    with _lock:
        callbacks = _callbacks.pop(name, [])
    for callback in callbacks:
        callback(module)


def _notify_after_exec(loader: importlib.abc.Loader, name: str) -> None:
    execute = loader.exec_module

    def exec_module(module: ModuleType) -> None:
        execute(module)
        _imported(name, module)

    loader.exec_module = exec_module  # type: ignore[method-assign]


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the modules someone waits for with the other finders and wraps their loader's
    exec_module so that the callbacks run once the module is executed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        with _lock:
            if fullname not in _callbacks:
                return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if isinstance(spec.loader, _PER_MODULE_LOADERS):
                _notify_after_exec(spec.loader, fullname)
            return spec
        return None
