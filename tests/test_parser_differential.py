"""Differential test of the request-head parser (src/core/http/http_parser) against httptools
(llhttp) and h11.

A deterministic corpus of a few hundred request heads, valid and invalid, goes through our parser
(``_core._parse_request``), httptools and h11. For every case and every other parser the accept /
reject decision must agree, and when both accept, the parsed fields must agree, except where the
case's rule is listed in ``DIFFERENCES`` with the reason we differ on purpose. The table is checked
both ways: a listed difference that stops happening fails too, so the table stays true.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import h11
import httptools
import pytest

from theframework import _core

# --------------------------------------------------------------------------------------------
# Deliberate differences: rule -> {parser: why we decide otherwise}

LLHTTP = "httptools"
H11 = "h11"

DIFFERENCES: dict[str, dict[str, str]] = {
    "bare_lf": {H11: "h11 accepts LF-only line endings; we refuse them everywhere, like llhttp"},
    "control_in_value": {
        H11: "h11 accepts control characters (e.g. 0x01, DEL) in field values; RFC 9110 §5.5 "
        "does not, and they are a header-injection risk"
    },
    "obs_fold": {H11: "h11 unfolds obs-fold; RFC 9112 §5.2 lets a server reject it, we do (400)"},
    "te_with_cl": {
        H11: "h11 lets Transfer-Encoding override Content-Length; RFC 9112 §6.3 says such a "
        "message may be a smuggling attempt, we answer 400 like llhttp"
    },
    "te_chunked_after_other": {
        LLHTTP: "llhttp accepts 'gzip, chunked' and leaves the gzip to the application; we "
        "decode only chunked, so we answer 501 (h11 refuses it too)"
    },
    "te_in_http10": {
        LLHTTP: "llhttp accepts Transfer-Encoding in HTTP/1.0; RFC 9112 §6.1 says the framing "
        "is then faulty, we answer 400",
        H11: "h11 accepts Transfer-Encoding in HTTP/1.0; we answer 400 (RFC 9112 §6.1)",
    },
    "cl_identical_duplicates": {
        LLHTTP: "llhttp refuses any repeated Content-Length; RFC 9110 §8.6 allows identical "
        "duplicates and lists, which we accept like h11",
    },
    "version_unsupported": {
        LLHTTP: "llhttp accepts HTTP/2.0 and HTTP/0.9 request lines; we answer 505",
        H11: "h11 accepts any D.D version; we answer 505 for anything but 1.0 and 1.1",
    },
    "version_minor_unsupported": {
        H11: "h11 accepts any D.D version; we answer 505 for HTTP/1.2 and up",
    },
    "missing_host": {
        LLHTTP: "llhttp does not require Host; RFC 9112 §3.2 makes it mandatory in HTTP/1.1",
    },
    "duplicate_host": {
        LLHTTP: "llhttp accepts two Host headers; RFC 9112 §3.2 says 400",
    },
    "leading_empty_lines": {
        H11: "h11 refuses empty lines before the request line; RFC 9112 §2.2 lets a server "
        "skip them, we do, like llhttp"
    },
    "http09": {
        LLHTTP: "llhttp accepts an HTTP/0.9 request line without version; we answer 400",
    },
    "extension_method": {
        LLHTTP: "llhttp knows a fixed list of methods; any token is a valid method (RFC 9110 §9)",
    },
    "double_space": {
        LLHTTP: "llhttp tolerates repeated spaces in the request line; RFC 9112 §3 has single SP",
    },
    "target_not_origin": {
        H11: "h11 accepts any visible-ASCII target; a GET target must be origin-form, "
        "absolute-form or '*' (RFC 9112 §3.2)",
    },
}

PARSERS = (LLHTTP, H11)

# --------------------------------------------------------------------------------------------
# Corpus


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # unique, used as the test id
    rule: str  # "valid" or the rule the case breaks (a key of DIFFERENCES when others differ)
    data: bytes  # one complete request head (ending with an empty line)
    status: int | None  # the status we must answer, None when we must accept


def _head(request_line: bytes, headers: list[bytes]) -> bytes:
    return request_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS")
TARGETS = (
    b"/",
    b"/a/b/c",
    b"/search?q=caf%C3%A9&x=1",
    b"/p%20q/?",
    b"/a#fragment",
    b"/a?b=c#fragment",
    b"/~user/file.tar.gz?dl=1&sig=abc-._~!$&'()*+,;=:@/",
    b"http://example.com/a/b?c=d",
    b"https://example.com:8443/",
)
HEADER_SETS: tuple[tuple[str, list[bytes]], ...] = (
    ("host", [b"Host: example.com"]),
    (
        "browser",
        [
            b"Host: www.example.com",
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            b"Accept-Language: en-US,en;q=0.5",
            b"Accept-Encoding: gzip, deflate, br",
            b"Cookie: session=" + b"a1b2c3" * 40 + b"; theme=dark",
        ],
    ),
    ("close", [b"Host: h", b"Connection: close"]),
    ("keep_alive", [b"host: h", b"connection: Keep-Alive"]),
    ("upgrade_close", [b"Host: h", b"Connection: Upgrade, close", b"Upgrade: websocket"]),
    ("content_length", [b"Host: h", b"Content-Type: text/plain", b"Content-Length: 5"]),
    ("content_length_zero", [b"Host: h", b"content-length: 0"]),
    ("chunked", [b"Host: h", b"Transfer-Encoding: chunked"]),
    ("chunked_upper", [b"Host: h", b"TRANSFER-ENCODING: Chunked"]),
    ("whitespace", [b"Host:h", b"X-Spaces:    a b   ", b"X-Tabs:\ta\tb\t", b"X-Empty:"]),
    ("obs_text", [b"Host: h", b"X-Latin: caf\xe9 \xff"]),
    ("expect", [b"Host: h", b"Content-Length: 3", b"Expect: 100-continue"]),
    ("many", [b"Host: h"] + [b"X-Header-%d: value-%d" % (i, i) for i in range(60)]),
)


def _valid_cases() -> list[Case]:
    """Every method with every target, each pair twice (HTTP/1.1 and HTTP/1.0) with header sets
    taken in rotation, so every header set meets many methods, targets and both versions."""
    cases: list[Case] = []
    pairs = [(method, target) for method in METHODS for target in enumerate(TARGETS)]
    for pair_index, (method, (target_index, target)) in enumerate(pairs):
        for version, set_index in ((b"1.1", pair_index), (b"1.0", pair_index * 5 + 3)):
            set_name, headers = HEADER_SETS[set_index % len(HEADER_SETS)]
            if version == b"1.0" and set_name in ("chunked", "chunked_upper"):
                # Transfer-Encoding in HTTP/1.0 is an error case of its own.
                set_name, headers = HEADER_SETS[0]
            line = method + b" " + target + b" HTTP/" + version
            name = f"valid-{method.decode()}-t{target_index}-{version.decode()}-{set_name}"
            cases.append(Case(name, "valid", _head(line, headers), None))
    cases.append(
        Case("valid-options-asterisk", "valid", _head(b"OPTIONS * HTTP/1.1", [b"Host: h"]), None)
    )
    cases.append(Case("valid-http10-no-host", "valid", _head(b"GET / HTTP/1.0", []), None))
    cases.append(
        Case(
            "leading-empty-lines",
            "leading_empty_lines",
            b"\r\n\r\n" + _head(b"GET / HTTP/1.1", [b"Host: h"]),
            None,
        )
    )
    return cases


# (rule, expected status, request line, headers) for invalid or deliberately different requests.
_BASE_HEADERS = [b"Host: h", b"Accept: */*"]
SPECIAL_CASES: tuple[tuple[str, int | None, bytes, list[bytes]], ...] = (
    ("extension_method", None, b"X-CUSTOM / HTTP/1.1", _BASE_HEADERS),
    ("extension_method", None, b"FOO! /x HTTP/1.1", _BASE_HEADERS),
    ("invalid_method", 400, b"G(T / HTTP/1.1", _BASE_HEADERS),
    ("invalid_method", 400, b"GE\x01T / HTTP/1.1", _BASE_HEADERS),
    ("invalid_method", 400, b"G\xc9T / HTTP/1.1", _BASE_HEADERS),
    ("double_space", 400, b"GET  / HTTP/1.1", _BASE_HEADERS),
    ("invalid_request_line", 400, b"GET / HTTP/1.1 ", _BASE_HEADERS),
    ("invalid_request_line", 400, b" GET / HTTP/1.1", _BASE_HEADERS),
    ("http09", 400, b"GET /", _BASE_HEADERS),
    ("invalid_target", 400, b"GET /a\x00b HTTP/1.1", _BASE_HEADERS),
    ("invalid_target", 400, b"GET /a\x7fb HTTP/1.1", _BASE_HEADERS),
    ("invalid_target", 400, b"GET /a\x01b HTTP/1.1", _BASE_HEADERS),
    ("invalid_target", 400, b"GET /a\tb HTTP/1.1", _BASE_HEADERS),
    ("invalid_target", 400, b"GET /caf\xc3\xa9 HTTP/1.1", _BASE_HEADERS),
    ("target_not_origin", 400, b"GET foo HTTP/1.1", _BASE_HEADERS),
    ("invalid_version", 400, b"GET / HTTP/1.x", _BASE_HEADERS),
    ("invalid_version", 400, b"GET / http/1.1", _BASE_HEADERS),
    ("invalid_version", 400, b"GET / HTTP/1.10", _BASE_HEADERS),
    ("invalid_version", 400, b"GET / HTTP/11", _BASE_HEADERS),
    ("invalid_version", 400, b"GET / HTP/1.1", _BASE_HEADERS),
    ("version_unsupported", 505, b"GET / HTTP/2.0", _BASE_HEADERS),
    ("version_unsupported", 505, b"GET / HTTP/0.9", _BASE_HEADERS),
    ("version_minor_unsupported", 505, b"GET / HTTP/1.2", _BASE_HEADERS),
    ("missing_host", 400, b"GET / HTTP/1.1", [b"Accept: */*"]),
    ("duplicate_host", 400, b"GET / HTTP/1.1", [b"Host: a", b"Host: b"]),
    ("obs_fold", 400, b"GET / HTTP/1.1", [b"Host: h", b"X-Folded: a", b" b"]),
    ("obs_fold", 400, b"GET / HTTP/1.1", [b"Host: h", b"X-Folded: a", b"\tb"]),
    ("space_before_colon", 400, b"GET / HTTP/1.1", [b"Host : h"]),
    ("space_before_colon", 400, b"GET / HTTP/1.1", [b"Host: h", b"X-A\t: b"]),
    ("invalid_header_name", 400, b"GET / HTTP/1.1", [b"Host: h", b"X(A): b"]),
    ("invalid_header_name", 400, b"GET / HTTP/1.1", [b"Host: h", b'X"A: b']),
    ("invalid_header_name", 400, b"GET / HTTP/1.1", [b"Host: h", b": empty"]),
    ("invalid_header_name", 400, b"GET / HTTP/1.1", [b"Host: h", b"NoColon"]),
    ("control_in_value", 400, b"GET / HTTP/1.1", [b"Host: h", b"X: a\x01b"]),
    ("control_in_value", 400, b"GET / HTTP/1.1", [b"Host: h", b"X: a\x7fb"]),
    ("control_in_value", 400, b"GET / HTTP/1.1", [b"Host: h", b"X: \x1b[31mred"]),
    ("nul_in_value", 400, b"GET / HTTP/1.1", [b"Host: h", b"X: a\x00b"]),
    ("bare_cr", 400, b"GET / HTTP/1.1", [b"Host: h\rX: y"]),
    ("bare_cr", 400, b"GET / HTTP/1.1", [b"Host: h", b"X: a\rb"]),
    (
        "te_with_cl",
        400,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Transfer-Encoding: chunked", b"Content-Length: 5"],
    ),
    (
        "te_with_cl",
        400,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Content-Length: 5", b"Transfer-Encoding: chunked"],
    ),
    (
        "cl_differing",
        400,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Content-Length: 5", b"Content-Length: 6"],
    ),
    ("cl_differing", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: 5, 6"]),
    (
        "cl_identical_duplicates",
        None,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Content-Length: 5", b"Content-Length: 5"],
    ),
    ("cl_identical_duplicates", None, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: 5, 5"]),
    ("cl_malformed", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: abc"]),
    ("cl_malformed", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: +5"]),
    ("cl_malformed", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: -5"]),
    ("cl_malformed", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length:"]),
    ("cl_malformed", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: 0x10"]),
    ("cl_malformed", 400, b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: 1 2"]),
    (
        "cl_overflow",
        400,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Content-Length: 99999999999999999999999"],
    ),
    ("te_unknown", 501, b"POST / HTTP/1.1", [b"Host: h", b"Transfer-Encoding: gzip"]),
    ("te_unknown", 501, b"POST / HTTP/1.1", [b"Host: h", b"Transfer-Encoding: identity"]),
    (
        "te_chunked_after_other",
        501,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Transfer-Encoding: gzip, chunked"],
    ),
    (
        "te_chunked_not_last",
        400,
        b"POST / HTTP/1.1",
        [b"Host: h", b"Transfer-Encoding: chunked, gzip"],
    ),
    ("te_in_http10", 400, b"POST / HTTP/1.0", [b"Transfer-Encoding: chunked"]),
)


def _special_cases() -> list[Case]:
    cases: list[Case] = []
    for index, (rule, status, line, headers) in enumerate(SPECIAL_CASES):
        cases.append(Case(f"{rule}-{index}", rule, _head(line, headers), status))
    return cases


def _bare_lf_cases() -> list[Case]:
    """Every CRLF of a few valid heads replaced by LF, one at a time and all at once."""
    cases: list[Case] = []
    bases = [
        _head(b"GET / HTTP/1.1", [b"Host: h"]),
        _head(b"POST /form HTTP/1.1", [b"Host: h", b"Content-Length: 3", b"X: y"]),
    ]
    for base_index, base in enumerate(bases):
        cases.append(
            Case(f"bare_lf-{base_index}-all", "bare_lf", base.replace(b"\r\n", b"\n"), 400)
        )
        offsets = [i for i in range(len(base)) if base.startswith(b"\r\n", i)]
        for offset in offsets:
            data = base[:offset] + base[offset + 1 :]
            cases.append(Case(f"bare_lf-{base_index}-at{offset}", "bare_lf", data, 400))
    return cases


def _random_control_cases() -> list[Case]:
    """Control characters (never CR, LF or HTAB) inserted into header values of valid heads."""
    generator = random.Random(9112)
    controls = [c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + [0x7F]
    cases: list[Case] = []
    for index in range(40):
        control = generator.choice(controls)
        value = b"value-%d" % index
        position = generator.randrange(1, len(value))  # inside the value, never at an edge
        bad_value = value[:position] + bytes([control]) + value[position:]
        # h11 refuses NUL, VT and FF but accepts the other controls (see DIFFERENCES).
        if control == 0:
            rule = "nul_in_value"
        elif control in (0x0B, 0x0C):
            rule = "vertical_whitespace_in_value"
        else:
            rule = "control_in_value"
        data = _head(b"GET /r HTTP/1.1", [b"Host: h", b"X-Bad: " + bad_value, b"Accept: */*"])
        cases.append(Case(f"{rule}-random{index}", rule, data, 400))
    return cases


def _bare_cr_cases() -> list[Case]:
    """The LF of every CRLF of a few valid heads replaced by a letter, leaving a bare CR."""
    cases: list[Case] = []
    bases = [
        _head(b"GET /a?b HTTP/1.1", [b"Host: h", b"Accept: */*"]),
        _head(b"PUT /x HTTP/1.0", [b"Content-Length: 0", b"X-Y: z"]),
    ]
    for base_index, base in enumerate(bases):
        offsets = [i for i in range(len(base)) if base.startswith(b"\r\n", i)]
        for offset in offsets:
            data = base[: offset + 1] + b"X" + base[offset + 2 :]
            cases.append(Case(f"bare_cr-{base_index}-at{offset}", "bare_cr", data, 400))
    return cases


def _random_separator_cases() -> list[Case]:
    """Delimiters that are not token characters inserted into methods and header names."""
    generator = random.Random(9110)
    separators = b'()<>@,;\\"/[]?={}'
    cases: list[Case] = []
    for index in range(60):
        separator = bytes([generator.choice(separators)])
        if index % 3 == 0:
            method = b"POST"
            position = generator.randrange(1, len(method))
            line = method[:position] + separator + method[position:] + b" / HTTP/1.1"
            data = _head(line, [b"Host: h"])
            cases.append(Case(f"invalid_method-random{index}", "invalid_method", data, 400))
        else:
            name = b"X-Custom-Name"
            position = generator.randrange(1, len(name))
            bad_name = name[:position] + separator + name[position:]
            data = _head(b"GET / HTTP/1.1", [b"Host: h", bad_name + b": value"])
            cases.append(
                Case(f"invalid_header_name-random{index}", "invalid_header_name", data, 400)
            )
    return cases


def build_corpus() -> list[Case]:
    return (
        _valid_cases()
        + _special_cases()
        + _bare_lf_cases()
        + _bare_cr_cases()
        + _random_control_cases()
        + _random_separator_cases()
    )


CORPUS = build_corpus()

# --------------------------------------------------------------------------------------------
# What each parser makes of one head


@dataclasses.dataclass(frozen=True)
class Outcome:
    accepted: bool
    detail: str = ""  # why not, when refused
    method: str = ""
    target: str = ""
    version: str = ""  # "1.0", "1.1"
    headers: tuple[tuple[str, str], ...] = ()  # names lower-cased, values as sent (trimmed)
    keep_alive: bool | None = None  # None: the parser does not tell


def ours(data: bytes) -> tuple[Outcome, Any]:
    """Our outcome, and the raw tuple _core._parse_request returned."""
    result = _core._parse_request(data)
    if result[0] == "error":
        return Outcome(False, f"{result[1]} {result[2]}"), result
    assert result[0] == "complete", result
    (_, method, target, _path, _query, minor, headers, _framing, _length, keep_alive, _) = result
    return (
        Outcome(
            True,
            method=method,
            target=target,
            version=f"1.{minor}",
            headers=tuple((name.lower(), value) for name, value in headers),
            keep_alive=keep_alive,
        ),
        result,
    )


class _HttptoolsRecorder:
    """The callbacks httptools calls while it parses a request."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_complete = False
        self.keep_alive: bool | None = None
        self.body = b""
        self.parser: Any = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body += body


def with_httptools(data: bytes) -> Outcome:
    recorder = _HttptoolsRecorder()
    parser = httptools.HttpRequestParser(recorder)
    recorder.parser = parser
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # CONNECT and Upgrade stop the parser after a complete head
    except httptools.HttpParserError as error:
        return Outcome(False, f"{type(error).__name__}: {error}")
    if not recorder.headers_complete:
        return Outcome(False, "httptools did not finish the head")
    return Outcome(
        True,
        method=parser.get_method().decode("latin-1"),
        target=recorder.url.decode("latin-1"),
        version=parser.get_http_version(),
        # llhttp keeps trailing whitespace in field values, which RFC 9110 §5.5 excludes from the
        # value (we and h11 drop it): compare without it.
        headers=tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1").rstrip(" \t"))
            for name, value in recorder.headers
        ),
        keep_alive=recorder.keep_alive,
    )


def with_h11(data: bytes) -> Outcome:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError as error:
        return Outcome(False, f"RemoteProtocolError: {error}")
    if not isinstance(event, h11.Request):
        return Outcome(False, f"h11 returned {event!r}")
    return Outcome(
        True,
        method=event.method.decode("latin-1"),
        target=event.target.decode("latin-1"),
        version=event.http_version.decode("latin-1"),
        headers=tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
        ),
    )


OTHERS: dict[str, Callable[[bytes], Outcome]] = {LLHTTP: with_httptools, H11: with_h11}

# --------------------------------------------------------------------------------------------
# Tests


def test_corpus_is_deterministic_and_large() -> None:
    assert build_corpus() == CORPUS
    assert len(CORPUS) >= 300
    assert len({case.name for case in CORPUS}) == len(CORPUS)
    assert sum(case.status is None for case in CORPUS) >= 100
    assert sum(case.status is not None for case in CORPUS) >= 100


def test_difference_table_names_known_rules_and_parsers() -> None:
    rules = {case.rule for case in CORPUS}
    for rule, parsers in DIFFERENCES.items():
        assert rule in rules, rule
        assert set(parsers) <= set(PARSERS), rule
        assert all(reason for reason in parsers.values()), rule


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_our_answer(case: Case) -> None:
    outcome, raw = ours(case.data)
    if case.status is None:
        assert outcome.accepted, raw
        assert raw[10] == len(case.data)  # head_length: the whole head, nothing more
    else:
        assert raw[0] == "error" and raw[1] == case.status, raw


def _comparable_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    # h11 merges repeated Content-Length fields into one and lower-cases Transfer-Encoding;
    # compare the rest as sent.
    return tuple(
        (name, value.lower() if name == "transfer-encoding" else value)
        for name, value in headers
        if name != "content-length"
    )


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_agrees_with_other_parsers(case: Case, parser: str) -> None:
    mine, raw = ours(case.data)
    theirs = OTHERS[parser](case.data)
    reason = DIFFERENCES.get(case.rule, {}).get(parser)
    if reason is not None:
        assert mine.accepted != theirs.accepted, (
            f"listed difference no longer happens ({reason}): ours={mine} {parser}={theirs}"
        )
        return
    assert mine.accepted == theirs.accepted, f"ours={raw} {parser}={theirs}"
    if not mine.accepted:
        return
    assert mine.method == theirs.method
    assert mine.target == theirs.target
    assert mine.version == theirs.version
    assert _comparable_headers(mine.headers) == _comparable_headers(theirs.headers)
    if theirs.keep_alive is not None:
        assert mine.keep_alive == theirs.keep_alive


@pytest.mark.parametrize(
    "case",
    [case for case in CORPUS if case.status is None and not case.data.startswith(b"\r\n")],
    ids=lambda case: case.name,
)
def test_path_and_query_agree_with_llhttp_url_parser(case: Case) -> None:
    _, raw = ours(case.data)
    target, path, query = raw[2], raw[3], raw[4]
    if target == "*":
        assert path == "*" and query == ""
        return
    url = httptools.parse_url(target.encode("latin-1"))
    expected_path = url.path.decode("latin-1") if url.path is not None else "/"
    expected_query = url.query.decode("latin-1") if url.query is not None else ""
    assert (path, query) == (expected_path, expected_query)


@pytest.mark.parametrize(
    "case", [case for case in CORPUS if case.status is None], ids=lambda case: case.name
)
def test_framing_matches_the_headers(case: Case) -> None:
    _, raw = ours(case.data)
    headers = {name.lower(): value for name, value in raw[6]}
    framing, content_length = raw[7], raw[8]
    if "transfer-encoding" in headers:
        assert framing == "chunked"
    elif "content-length" in headers:
        assert framing == "content_length"
        assert content_length == int(headers["content-length"].split(",")[0])
    else:
        assert (framing, content_length) == ("none", 0)


@pytest.mark.parametrize(
    "case", [case for case in CORPUS if case.rule == "valid"][::7], ids=lambda case: case.name
)
def test_every_prefix_is_incomplete(case: Case) -> None:
    for length in range(len(case.data)):
        assert _core._parse_request(case.data[:length]) == ("incomplete",), length


def test_chunked_body_agrees_with_httptools_and_h11() -> None:
    head = _head(b"POST /upload HTTP/1.1", [b"Host: h", b"Transfer-Encoding: chunked"])
    generator = random.Random(7230)
    for _ in range(50):
        chunks = [bytes(generator.randrange(256) for _ in range(generator.randrange(1, 300)))]
        chunks += [b"x" * generator.randrange(1, 40) for _ in range(generator.randrange(0, 4))]
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
        expected = b"".join(chunks)

        decoded = _core._decode_chunked(body)
        assert decoded == ("done", expected, len(body))

        recorder = _HttptoolsRecorder()
        parser = httptools.HttpRequestParser(recorder)
        recorder.parser = parser
        parser.feed_data(head + body)
        assert recorder.body == expected

        connection = h11.Connection(h11.SERVER)
        connection.receive_data(head + body)
        received = b""
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert received == expected


def test_bad_chunk_framing_is_refused_like_llhttp() -> None:
    head = _head(b"POST / HTTP/1.1", [b"Host: h", b"Transfer-Encoding: chunked"])
    for body in (b"zz\r\n", b"5\r\nhelloXX", b"5\nhello\r\n", b"5\r\nhello\r\n0\r\nX : y\r\n\r\n"):
        ours_result = _core._decode_chunked(body)
        assert ours_result[0] == "error" and ours_result[1] == 400, (body, ours_result)
        parser = httptools.HttpRequestParser(_HttptoolsRecorder())
        with pytest.raises(httptools.HttpParserError):
            parser.feed_data(head + body)


def test_limits_answer_their_status() -> None:
    head = _head(b"GET / HTTP/1.1", [b"Host: h"] + [b"X-%d: v" % i for i in range(10)])
    assert _core._parse_request(head, max_headers=5)[:2] == ("error", 431)
    assert _core._parse_request(head, max_header_size=40)[:2] == ("error", 431)
    assert _core._parse_request(head[:60], max_header_size=40)[:2] == ("error", 431)
    long_line = _head(b"GET /" + b"a" * 100 + b" HTTP/1.1", [b"Host: h"])
    assert _core._parse_request(long_line, max_request_line=64)[:2] == ("error", 414)
    post = _head(b"POST / HTTP/1.1", [b"Host: h", b"Content-Length: 2000"])
    assert _core._parse_request(post, max_body_size=1999)[:2] == ("error", 413)
    assert _core._parse_request(post, max_body_size=2000)[0] == "complete"
    assert _core._decode_chunked(b"7d1\r\n", max_body_size=2000)[:2] == ("error", 413)
    with pytest.raises(ValueError):
        _core._parse_request(head, max_headers=-1)
    with pytest.raises(TypeError):
        _core._parse_request("not bytes")  # type: ignore[arg-type]
