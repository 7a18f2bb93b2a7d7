"""Runs wsgi_app on fastwsgi: ``python serve_fastwsgi.py HOST PORT``."""

from __future__ import annotations

import sys

import fastwsgi  # type: ignore[import-not-found]
from wsgi_app import app

if __name__ == "__main__":
    fastwsgi.run(wsgi_app=app, host=sys.argv[1], port=int(sys.argv[2]))
