"""``--env-file``: KEY=VALUE files loaded into the environment before the application is
imported.

One parser, whether or not python-dotenv is installed, that reads every file python-dotenv
(``dotenv_values``, compared with 1.2.4) reads and gives the same values (tests/test_envfile.py
compares them on a corpus of tricky files and 3,000 generated ones). Where python-dotenv would
log a warning and skip a statement it cannot parse, this parser refuses the file with
``EnvFileError`` naming the file and line.

The syntax, statement by statement (whitespace and blank lines between statements are skipped):

- ``# comment`` lines; ``KEY=value # comment`` (a ``#`` after whitespace ends an unquoted value;
  ``KEY=a#b`` keeps the ``#``);
- an optional ``export`` prefix; a key is ``'quoted'`` or runs up to ``=``, ``#`` or whitespace;
- ``KEY`` alone (no ``=``): declared without a value, so it is not set;
- ``'single quotes'``: ``\\'`` and ``\\\\`` are the only escapes; ``"double quotes"``:
  ``\\n \\t \\r \\" \\' \\\\ \\a \\b \\f \\v``; both may span lines;
- ``${NAME}`` and ``${NAME:-default}`` in any value (quoted or not, as python-dotenv does) are
  replaced by NAME from the values above it in the file, else from the environment, else by the
  default (else ""); ``$NAME`` without braces stays as written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "EnvFileError",
    "env_files_problem",
    "load_env_files",
    "parse_env_file",
    "parse_env_text",
]

# Whitespace that does not end a line.
_BLANK = r"[^\S\r\n]"

_SPACE_AND_NEWLINES = re.compile(r"\s*")
_EXPORT = re.compile(rf"export{_BLANK}+")
_QUOTED_KEY = re.compile(r"'([^']+)'")
_BARE_KEY = re.compile(r"[^=#\s]+")
_BLANKS = re.compile(f"{_BLANK}*")
_EQUALS = re.compile(f"={_BLANK}*")
_SINGLE_QUOTED = re.compile(r"'((?:\\.|[^'\\])*)'", re.DOTALL)
_DOUBLE_QUOTED = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_TO_LINE_END = re.compile(r"[^\r\n]*")
_COMMENT = re.compile(rf"{_BLANK}*#[^\r\n]*")
_LINE_END = re.compile(rf"{_BLANK}*(?:\r\n|\n|\r|$)")
_INLINE_COMMENT = re.compile(r"\s+#")
_NEWLINE = re.compile(r"\r\n|\n|\r")
_VARIABLE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")

_SINGLE_ESCAPE = re.compile(r"\\[\\']")
_DOUBLE_ESCAPE = re.compile(r"\\[\\'\"abfnrtv]")
_ESCAPED = {
    "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
    "t": "\t", "v": "\v",
}  # fmt: skip


class EnvFileError(ValueError):
    """A statement of an env file that cannot be parsed: ``source`` (the path), ``line`` (where
    the statement starts, from 1) and ``reason``; str() is "path:line: reason: 'the line'"."""

    def __init__(self, source: str, line: int, reason: str, text: str) -> None:
        super().__init__(f"{source}:{line}: {reason}: {text!r}")
        self.source = source
        self.line = line
        self.reason = reason


def _unescape(pattern: re.Pattern[str], text: str) -> str:
    return pattern.sub(lambda match: _ESCAPED[match.group(0)[1]], text)


class _Scanner:
    """Reads statements from ``text``; each ``statement()`` returns (key or None, value or
    None) and advances ``position``, or raises EnvFileError."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.position = 0
        self.start = 0

    def _fail(self, reason: str) -> EnvFileError:
        line = len(_NEWLINE.findall(self.text, 0, self.start)) + 1
        end = _TO_LINE_END.match(self.text, self.start)
        assert end is not None  # matches the empty string too
        return EnvFileError(self.source, line, reason, end.group(0))

    def _take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        match = pattern.match(self.text, self.position)
        if match is not None:
            self.position = match.end()
        return match

    def at_end(self) -> bool:
        """Skips whitespace and blank lines; True when nothing is left."""
        self._take(_SPACE_AND_NEWLINES)
        self.start = self.position
        return self.position >= len(self.text)

    def statement(self) -> tuple[str | None, str | None]:
        self._take(_EXPORT)
        key = self._key()
        self._take(_BLANKS)
        value: str | None = None
        equals = self._take(_EQUALS)
        if equals is not None:
            # "KEY= # comment": an empty value and a comment.
            spaced = len(equals.group(0)) > 1
            comment = spaced and self.text.startswith("#", self.position)
            value = "" if comment else self._value()
        self._take(_COMMENT)
        if self._take(_LINE_END) is None:
            raise self._fail("unexpected text after the value (quote it, or start a comment "
                             "with ' #')")  # fmt: skip
        return key, value

    def _key(self) -> str | None:
        first = self.text[self.position : self.position + 1]
        if first == "#":
            return None  # a comment line
        match = self._take(_QUOTED_KEY if first == "'" else _BARE_KEY)
        if match is None:
            raise self._fail("expected KEY=VALUE")
        return match.group(1) if first == "'" else match.group(0)

    def _value(self) -> str:
        first = self.text[self.position : self.position + 1]
        if first in ("'", '"'):
            match = self._take(_SINGLE_QUOTED if first == "'" else _DOUBLE_QUOTED)
            if match is None:
                kind = "single" if first == "'" else "double"
                raise self._fail(f"the {kind}-quoted value has no closing quote")
            escapes = _SINGLE_ESCAPE if first == "'" else _DOUBLE_ESCAPE
            return _unescape(escapes, match.group(1))
        if first in ("", "\n", "\r"):
            return ""
        match = self._take(_TO_LINE_END)
        assert match is not None  # matches the empty string too
        raw = match.group(0)
        comment = _INLINE_COMMENT.search(raw)
        return (raw if comment is None else raw[: comment.start()]).rstrip()


def _interpolate(value: str, known: Mapping[str, str | None], environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        found = known[name] if name in known else environ.get(name, match.group("default") or "")
        return found or ""

    return _VARIABLE.sub(replace, value)


def parse_env_text(
    text: str, source: str = "<env>", environ: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """Every KEY of ``text`` (a later one wins) with its value, None for a KEY without ``=``.
    ``${NAME}`` looks in the values above it, then ``environ`` (default os.environ).
    EnvFileError (a ValueError) names ``source`` and the line of a statement it cannot parse."""
    environment = os.environ if environ is None else environ
    scanner = _Scanner(text.removeprefix("\ufeff"), source)
    values: dict[str, str | None] = {}
    while not scanner.at_end():
        key, value = scanner.statement()
        if key is None:
            continue
        values[key] = None if value is None else _interpolate(value, values, environment)
    return values


def parse_env_file(path: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The KEY=VALUE pairs of the file ``path`` (UTF-8); a KEY without ``=`` is left out.
    OSError when the file cannot be read, EnvFileError (a ValueError) naming the line of a
    statement it cannot parse."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    values = parse_env_text(text, path, environ)
    return {key: value for key, value in values.items() if value is not None}


def load_env_files(paths: Iterable[str]) -> None:
    """Loads ``paths`` into os.environ: a later file wins over an earlier one (and sees its
    values in ``${NAME}``), and a variable already set in the environment wins over every file.
    OSError / EnvFileError as ``parse_env_file``; nothing is set when one fails."""
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(parse_env_file(path, {**os.environ, **merged}))
    for key, value in merged.items():
        os.environ.setdefault(key, value)


def env_files_problem(paths: Iterable[str]) -> str | None:
    """Why ``paths`` cannot be loaded ("cannot read the environment file 'x': No such file or
    directory", or the EnvFileError), or None: the supervisor checks once before its workers
    each load them."""
    for path in paths:
        try:
            parse_env_file(path, {})
        except OSError as error:
            return f"cannot read the environment file {path!r}: {error.strerror or error}"
        except EnvFileError as error:
            return f"cannot load the environment file: {error}"
    return None
