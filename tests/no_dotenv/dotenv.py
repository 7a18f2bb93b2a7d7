"""Put first on PYTHONPATH by tests/test_envfile.py: makes ``import dotenv`` fail as if
python-dotenv were not installed."""

raise ImportError("python-dotenv hidden by the test")
