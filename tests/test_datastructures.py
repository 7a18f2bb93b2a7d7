"""Headers and QueryParams: the multi-dicts the native Request builds on demand."""

from __future__ import annotations

import pytest

from theframework import Headers, QueryParams

RAW_HEADERS = [
    ("Host", "example.com"),
    ("Accept", "text/html"),
    ("X-Tag", "one"),
    ("accept", "application/json"),
    ("x-tag", "two"),
]


def test_headers_lookup_is_case_insensitive_and_returns_the_first_value() -> None:
    headers = Headers(list(RAW_HEADERS))
    assert headers["accept"] == "text/html"
    assert headers["ACCEPT"] == "text/html"
    assert headers.get("HOST") == "example.com"
    assert headers.getall("x-TAG") == ["one", "two"]
    assert "x-tag" in headers
    assert "Content-Type" not in headers
    assert 42 not in headers


def test_headers_missing_name() -> None:
    headers = Headers(list(RAW_HEADERS))
    with pytest.raises(KeyError):
        headers["Content-Type"]
    assert headers.get("Content-Type") is None
    assert headers.get("Content-Type", "text/plain") == "text/plain"
    assert headers.getall("Content-Type") == []


def test_headers_iteration_keeps_names_and_order_as_received() -> None:
    headers = Headers(list(RAW_HEADERS))
    assert list(headers) == ["Host", "Accept", "X-Tag", "accept", "x-tag"]
    assert headers.keys() == list(headers)
    assert headers.values() == [value for _, value in RAW_HEADERS]
    assert headers.items() == RAW_HEADERS
    assert len(headers) == 5


def test_headers_are_immutable_from_outside() -> None:
    headers = Headers(list(RAW_HEADERS))
    headers.items().append(("Injected", "yes"))
    headers.getall("accept").append("changed")
    assert "Injected" not in headers
    assert headers.getall("accept") == ["text/html", "application/json"]
    with pytest.raises(TypeError):
        headers["Host"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        headers.extra = 1  # type: ignore[attr-defined]


def test_headers_repr_equality_and_empty() -> None:
    headers = Headers([("A", "1")])
    assert repr(headers) == "Headers([('A', '1')])"
    assert headers == Headers([("A", "1")])
    assert headers != Headers([("a", "1")])
    assert headers != QueryParams("A=1")
    empty = Headers()
    assert len(empty) == 0 and list(empty) == [] and empty.get("a") is None
    with pytest.raises(TypeError):
        hash(headers)


def test_query_params_decoding() -> None:
    params = QueryParams("q=hello+world&name=J%C3%BCrgen&path=%2Fa%2Bb&plus=1%2B1")
    assert params["q"] == "hello world"
    assert params["name"] == "Jürgen"
    assert params["path"] == "/a+b"
    assert params["plus"] == "1+1"


def test_query_params_keys_are_decoded_and_case_sensitive() -> None:
    params = QueryParams("a+b=1&A%20B=2&a=3")
    assert params["a b"] == "1"
    assert params["A B"] == "2"
    assert "A" not in params
    assert params.get("a") == "3"


def test_query_params_multiple_and_blank_values() -> None:
    params = QueryParams("tag=a&tag=b&empty=&flag&tag=c&&x=1=2")
    assert params.get("tag") == "a"
    assert params.getall("tag") == ["a", "b", "c"]
    assert params["empty"] == ""
    assert params["flag"] == ""
    assert params["x"] == "1=2"
    assert params.items() == [
        ("tag", "a"),
        ("tag", "b"),
        ("empty", ""),
        ("flag", ""),
        ("tag", "c"),
        ("x", "1=2"),
    ]
    assert len(params) == 6
    assert list(params) == ["tag", "tag", "empty", "flag", "tag", "x"]


def test_query_params_malformed_escapes_are_kept_and_bad_utf8_replaced() -> None:
    params = QueryParams("a=%zz&b=%&c=%ff")
    assert params["a"] == "%zz"
    assert params["b"] == "%"
    assert params["c"] == "\ufffd"


def test_query_params_empty() -> None:
    for text in ("", "&", "&&"):
        params = QueryParams(text)
        assert len(params) == 0
        assert params.get("a", "default") == "default"
        with pytest.raises(KeyError):
            params["a"]
    assert repr(QueryParams("a=1")) == "QueryParams([('a', '1')])"
    assert QueryParams() == QueryParams("")
