"""``--env-file``: our parser against python-dotenv's ``dotenv_values`` on the same files (equal
values where both read a file; a refusal naming the line exactly where python-dotenv warns and
skips), and a real server loading env files with python-dotenv hidden."""

from __future__ import annotations

import io
import logging
import random
import signal
from pathlib import Path

import pytest
from dotenv import dotenv_values
from prefork_apps.harness import ServerProcess, http_get

from theframework.server.envfile import (
    EnvFileError,
    load_env_files,
    parse_env_file,
    parse_env_text,
)

HIDE_DOTENV = str(Path(__file__).parent / "no_dotenv")

# Files both parsers read; each is compared value for value.
ACCEPTED = [
    "A=hello # comment\nB=hello#not-a-comment\nC= # only a comment\nD=#novalue\n",
    "# comment\n\n   # indented comment\nA=1\n\n\nB=2",
    "export A=1\nexport   B = 'two words'\nexport=3\nexportC=4\n",
    "A='single $x \\' \\\\ \\n \\t'\nB=\"double \\\" \\' \\\\ \\n \\t \\r \\a \\b \\f \\v \\x\"\n",
    'A="line1\nline2"\nB=\'line1\nline2\'\nC="line1\\nline2"\n',
    "A=1\nB=${A}\nC=\"${A}-${B}\"\nD='${A}'\nE=${MISSING}\nF=${MISSING:-fallback}\n",
    "A=${TF_DIFF_OUTER}\nB=${TF_DIFF_OUTER:-unused}\nTF_DIFF_OUTER=inner\nC=${TF_DIFF_OUTER}\n",
    "A=${A:-self}\nB=$A\nC=${}\nD=${A:-x:-y}\nE=${A\nF=$${A}}\n",
    "A\nB=1\nB\nC=${B}\nexport D\n",
    "'quoted key'=1\n'k#'=2\nA.B-C=3\n1X=4\n",
    "A =  spaced  \nB\t=\ttabs\t\nC=trailing   \n",
    "A=\"x\" # comment\nB='y'#comment\nC=\"\"\nD=''\nE=\n",
    "\ufeffA=bom\n",
    'A=a=b=c\nB="x=y"\nC=ünïcödé ☃\n',
    'A=1\r\nB=2\rC="x\r\ny"\r\n',
    "  \n\t\nA=1   \n  B=2\n",
    "A=x # c1 # c2\nB=x\t#tab comment\nC=x\\ #c\n",
]

# Statements python-dotenv warns about and skips: refused here, with the line.
REFUSED = [
    ("A=1\nB C=2\n", 2),
    ('A="unterminated\n', 1),
    ("A='unterminated\nB=1\n", 1),
    ("=value\n", 1),
    ('A="x" trailing\n', 1),
    ("A=1\n\n'open key=1\n", 3),
    ("export \n", 1),
    ("A='x'y\n", 1),
]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tricky.env"
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def _dotenv_warned(text: str, caplog: pytest.LogCaptureFixture) -> bool:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dotenv.main"):
        dotenv_values(stream=io.StringIO(text))
    return any("could not parse" in record.getMessage() for record in caplog.records)


@pytest.fixture(autouse=True)
def _outer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_DIFF_OUTER", "outer")
    monkeypatch.delenv("MISSING", raising=False)
    monkeypatch.delenv("A", raising=False)


@pytest.mark.parametrize("text", ACCEPTED)
def test_same_values_as_python_dotenv(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, text)
    theirs = dotenv_values(path)
    assert not _dotenv_warned(text, caplog)
    with open(path, encoding="utf-8") as stream:
        assert parse_env_text(stream.read(), path) == theirs
    assert parse_env_file(path) == {
        key: value for key, value in theirs.items() if value is not None
    }


def test_the_cases_the_old_fallback_got_wrong(tmp_path: Path) -> None:
    path = _write(tmp_path, 'A=hello # comment\nB=${A}\nC="line1\\nline2"\nD="x\ny"\n')
    assert parse_env_file(path) == {"A": "hello", "B": "hello", "C": "line1\nline2", "D": "x\ny"}


@pytest.mark.parametrize(("text", "line"), REFUSED)
def test_refuses_what_python_dotenv_skips(
    tmp_path: Path, text: str, line: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert _dotenv_warned(text, caplog)
    path = _write(tmp_path, text)
    with pytest.raises(EnvFileError) as refused:
        parse_env_file(path)
    assert refused.value.line == line
    assert str(refused.value).startswith(f"{path}:{line}: ")


def test_random_statements_agree_with_python_dotenv(caplog: pytest.LogCaptureFixture) -> None:
    """Files made of tricky pieces: where we parse, python-dotenv gives the same values without
    a warning; where we refuse, python-dotenv warns."""
    pieces = [
        "A", "B", "=", " ", "\t", "\n", "\r", "\r\n", "#", "'", '"', "\\", "n", "$", "{", "}",
        ":-", "export ", "x", "\x0b", "\xa0", "${A}", "${B:-d}",
    ]  # fmt: skip
    generator = random.Random(13)
    refused = accepted = 0
    for _ in range(3000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randrange(1, 14)))
        warned = _dotenv_warned(text, caplog)
        try:
            ours = parse_env_text(text)
        except EnvFileError:
            refused += 1
            assert warned, f"refused a file python-dotenv reads: {text!r}"
            continue
        accepted += 1
        assert not warned, f"read a file python-dotenv refuses: {text!r}"
        assert ours == dotenv_values(stream=io.StringIO(text)), text
    assert refused > 300 and accepted > 300  # both sides were exercised


def test_later_files_win_the_environment_wins_over_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first.env"
    first.write_text("TF_ENV_ONE=1\nTF_ENV_KEPT=file\nTF_ENV_TWICE=first\n")
    second = tmp_path / "second.env"
    second.write_text("TF_ENV_TWICE=second\nTF_ENV_FROM_FIRST=${TF_ENV_ONE}\n")
    monkeypatch.setenv("TF_ENV_KEPT", "environment")
    for name in ("TF_ENV_ONE", "TF_ENV_TWICE", "TF_ENV_FROM_FIRST"):
        monkeypatch.delenv(name, raising=False)
    load_env_files([str(first), str(second)])
    import os

    assert [os.environ[name] for name in ("TF_ENV_ONE", "TF_ENV_KEPT", "TF_ENV_TWICE")] == [
        "1",
        "environment",
        "second",
    ]
    assert os.environ["TF_ENV_FROM_FIRST"] == "1"


def test_a_bad_file_sets_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.env"
    good.write_text("TF_ENV_GOOD=1\n")
    bad = tmp_path / "bad.env"
    bad.write_text('TF_ENV_BAD="open\n')
    monkeypatch.delenv("TF_ENV_GOOD", raising=False)
    with pytest.raises(EnvFileError, match=r"bad\.env:1: the double-quoted value has no closing"):
        load_env_files([str(good), str(bad)])
    import os

    assert "TF_ENV_GOOD" not in os.environ


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_real_server_without_python_dotenv(tmp_path: Path, workers: str) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text('TF_ENV_A=hello # comment\nTF_ENV_B="${TF_ENV_A}\\nworld"\n')
    hidden = {"PYTHONPATH": HIDE_DOTENV}
    arguments = ("--workers", workers, "--port", "0", "--env-file", str(env_file))
    with ServerProcess("prefork_apps.pid_app:app", *arguments, environment=hidden) as server:
        if workers == "1":
            port = int(server.wait_for_line(r"listening on http://\S+:(\d+)").group(1))
        else:
            port = server.port()
        assert http_get(port, "/env?name=TF_ENV_A")[2] == "hello"
        assert http_get(port, "/env?name=TF_ENV_B")[2] == "hello\nworld"
        assert http_get(port, "/dotenv")[2] == "hidden"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unparsable_env_file_is_a_usage_error(tmp_path: Path, workers: str) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("TF_ENV_A=1\nTF_ENV_B C\n")
    hidden = {"PYTHONPATH": HIDE_DOTENV}
    arguments = ("--workers", workers, "--port", "0", "--env-file", str(env_file))
    with ServerProcess("prefork_apps.pid_app:app", *arguments, environment=hidden) as server:
        assert server.wait() == 2
        assert f"{env_file}:2: unexpected text after the value" in server.output
        assert server.output.count(f"{env_file}:2:") == 1
