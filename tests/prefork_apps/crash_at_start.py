"""Exits (code 9, no Python cleanup) every time a worker imports it: a crash loop."""

import os

os._exit(9)
