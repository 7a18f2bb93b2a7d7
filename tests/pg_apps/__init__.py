"""Applications of the PostgreSQL tests (tests/test_monkey_postgres.py)."""
