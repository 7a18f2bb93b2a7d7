"""Applications served by the end-to-end HTTP tests (``python -m theframework tests.apps.X:app``)."""
