"""Fails while being imported."""

raise RuntimeError("broken at import in a worker")
