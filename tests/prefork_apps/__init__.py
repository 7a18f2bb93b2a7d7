"""Applications the prefork tests serve (imported by the worker processes)."""
