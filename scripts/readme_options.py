"""Writes README.md's options table from the option table (theframework.config.OPTIONS):
``python scripts/readme_options.py`` (``--check``: exit 1 when README.md is out of date)."""

from __future__ import annotations

import pathlib
import sys

from theframework.config import README_BEGIN, README_END, options_markdown

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def with_table(text: str) -> str:
    """README text with the table between the markers (the markers are added in place of a
    lone "<!-- options table -->" line the first time)."""
    block = f"{README_BEGIN}\n{options_markdown()}{README_END}"
    if README_BEGIN in text:
        start = text.index(README_BEGIN)
        end = text.index(README_END, start) + len(README_END)
        return text[:start] + block + text[end:]
    return text.replace("<!-- options table -->", block, 1)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    updated = with_table(text)
    if "--check" in sys.argv[1:]:
        if updated != text:
            print("README.md's options table is out of date: run scripts/readme_options.py")
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
