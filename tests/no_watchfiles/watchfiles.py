"""Put first on PYTHONPATH by tests/test_reload.py: makes ``import watchfiles`` fail as if the
reload extra were not installed."""

raise ImportError("watchfiles hidden by the test")
