"""``python -m theframework APP [options]``."""

from .cli import main

raise SystemExit(main())
