"""``--env-file``: KEY=VALUE files loaded into the environment before the application is
imported."""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["load_env_files", "parse_env_file"]


def parse_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of ``path``: python-dotenv when installed; else blank lines and "#"
    comments are skipped, an "export " prefix is allowed, and a value in matching single or
    double quotes is unquoted (no interpolation). OSError when the file cannot be read,
    ValueError naming the line for a line that is not KEY=VALUE."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        pass
    else:
        with open(path, encoding="utf-8") as stream:  # raises OSError like the fallback
            values = dotenv_values(stream=stream)
        return {key: value for key, value in values.items() if value is not None}
    parsed: dict[str, str] = {}
    with open(path, encoding="utf-8") as stream:
        for number, raw in enumerate(stream, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            line = line.removeprefix("export ").lstrip()
            key, separator, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not separator or not key.isidentifier():
                raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {raw.rstrip()!r}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            parsed[key] = value
    return parsed


def load_env_files(paths: Iterable[str]) -> None:
    """Loads ``paths`` into os.environ: a later file wins over an earlier one, and a variable
    already set in the environment wins over every file."""
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(parse_env_file(path))
    for key, value in merged.items():
        os.environ.setdefault(key, value)
