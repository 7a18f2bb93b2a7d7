"""Logging set-up of a serving process: the default handler and level, and ``--log-config``."""

from __future__ import annotations

import logging

__all__ = ["apply_log_config", "configure_logging"]

logger = logging.getLogger("theframework")


def configure_logging(level: str, process_label: str | None = None) -> None:
    """Logging for command-line and ``app.run()`` use: a stderr handler on the root logger when
    none is configured yet (logging.basicConfig), and ``level`` on the "theframework" logger.

    With ``process_label`` ("master", "worker-2"), the root configuration is replaced (a forked
    worker inherits its parent's) and every line shows the label after the level."""
    if process_label is None:
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    else:
        logging.basicConfig(
            level=level.upper(),
            format=f"%(asctime)s %(levelname)s [{process_label}] %(name)s: %(message)s",
            force=True,
        )
    logger.setLevel(level.upper())


def apply_log_config(path: str) -> None:
    """Applies the ``logging.config.dictConfig`` JSON file at ``path`` (``--log-config``) over
    the default set-up. ValueError naming the file when it cannot be read or applied."""
    import json
    import logging.config

    try:
        with open(path, encoding="utf-8") as stream:
            configuration = json.load(stream)
        if not isinstance(configuration, dict):
            raise ValueError("expected a JSON object")
        configuration.setdefault("version", 1)
        # Keep the loggers created so far (the supervisor's, the server's) working.
        configuration.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(configuration)
    except (OSError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise ValueError(f"--log-config {path}: {error}") from None
