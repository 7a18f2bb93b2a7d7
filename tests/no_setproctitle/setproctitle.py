"""Put first on PYTHONPATH by tests/test_proctitle.py: makes ``import setproctitle`` fail as if
the optional extra were not installed."""

raise ImportError("setproctitle hidden by the test")
