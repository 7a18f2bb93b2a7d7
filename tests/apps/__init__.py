"""Applications served by the end-to-end HTTP tests
(``python -m theframework tests.apps.NAME:app``)."""
