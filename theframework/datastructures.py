"""Multi-valued mappings built per request: ``Headers`` and ``QueryParams``.

Both keep every (name, value) pair in the order received; lookups go through an index built on
the first lookup only, so a handler that never asks pays only for the list of pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar, overload
from urllib.parse import unquote_plus

__all__ = ["Headers", "QueryParams"]

_Default = TypeVar("_Default")


class _MultiDict:
    """Read-only multi-dict over a list of (name, value) pairs. Subclasses choose ``_fold``, the
    key normalisation (``str.lower`` for headers, identity for query parameters), and build the
    first-value index accordingly."""

    __slots__ = ("_index", "_pairs")

    _pairs: list[tuple[str, str]]
    # Folded name -> first value; built on the first lookup.
    _index: dict[str, str] | None

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        # Owned from now on: callers hand over a list they no longer change.
        self._pairs = pairs
        self._index = None

    @staticmethod
    def _fold(name: str) -> str:
        return name

    def _make_index(self) -> dict[str, str]:
        # Reversed so that the first value of a repeated name is the one kept.
        return dict(reversed(self._pairs))

    def _lookup(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = self._index = self._make_index()
        return index

    def __getitem__(self, name: str) -> str:
        """The first value of ``name``; KeyError when absent."""
        value = self._lookup().get(self._fold(name))
        if value is None:
            raise KeyError(name)
        return value

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _Default) -> str | _Default: ...
    def get(self, name: str, default: object = None) -> object:
        """The first value of ``name``, or ``default`` when absent."""
        value = self._lookup().get(self._fold(name))
        return default if value is None else value

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in the order received; [] when absent."""
        key = self._fold(name)
        fold = self._fold
        return [value for pair_name, value in self._pairs if fold(pair_name) == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._fold(name) in self._lookup()

    def __iter__(self) -> Iterator[str]:
        """Every name as received, once per pair (a repeated name comes back repeatedly)."""
        return (name for name, _ in self._pairs)

    def keys(self) -> list[str]:
        """Every name as received, once per pair."""
        return [name for name, _ in self._pairs]

    def values(self) -> list[str]:
        """Every value, in the order received."""
        return [value for _, value in self._pairs]

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair in the order received."""
        return list(self._pairs)

    def __len__(self) -> int:
        """The number of pairs (not of distinct names)."""
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _MultiDict)
        return self._pairs == other._pairs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._pairs!r})"


class Headers(_MultiDict):
    """Request headers: case-insensitive names, several values per name, immutable.

    ``Headers([("Content-Type", "text/plain")])["content-type"] == "text/plain"``.
    """

    __slots__ = ()

    def __init__(self, pairs: list[tuple[str, str]] | None = None) -> None:
        super().__init__([] if pairs is None else pairs)

    @staticmethod
    def _fold(name: str) -> str:
        return name.lower()

    def _make_index(self) -> dict[str, str]:
        return {name.lower(): value for name, value in reversed(self._pairs)}


def _parse_query(query_string: str) -> list[tuple[str, str]]:
    """Splits on "&", then on the first "="; "+" and %-escapes are decoded (UTF-8, undecodable
    bytes replaced, malformed escapes kept); blank values are kept ("a=" and "a" both give
    ("a", "")); empty fields such as "a=1&&b=2" are skipped."""
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for field in query_string.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name = unquote_plus(name)
            value = unquote_plus(value)
        append((name, value))
    return pairs


class QueryParams(_MultiDict):
    """Query-string parameters: decoded, case-sensitive names, several values per name.

    ``QueryParams("tag=a&tag=b&q=hello+world")``: ``get("tag") == "a"``,
    ``getall("tag") == ["a", "b"]``, ``["q"] == "hello world"``.
    """

    __slots__ = ()

    def __init__(self, query_string: str = "") -> None:
        super().__init__(_parse_query(query_string) if query_string else [])
