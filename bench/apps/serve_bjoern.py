"""Runs wsgi_app on bjoern (which has no command line): ``python serve_bjoern.py HOST PORT``."""

from __future__ import annotations

import sys

import bjoern  # type: ignore[import-not-found]
from wsgi_app import app

if __name__ == "__main__":
    bjoern.run(app, sys.argv[1], int(sys.argv[2]))
