"""Logging for IFD's own loggers, driven by the ``log_level`` setting.

Only the ``ifd_core``, ``warehouse``, ``expectations``, ``jobs``, ``reports``, ``flows`` and
``ifd_cli`` loggers are configured, so a library's chatter (Prefect, GX, ib_async) keeps its own
level. Called once by the ``ifd`` command (``--verbose``/``--quiet`` override the setting) and by
the Prefect flows at start.
"""

from __future__ import annotations

import logging
import sys

IFD_LOGGERS = ("ifd_core", "warehouse", "expectations", "jobs", "reports", "flows", "ifd_cli")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HANDLER_NAME = "ifd-stderr"


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes, not as it was when the handler
    was made: a test runner or `CliRunner` that swaps stderr gets the records of its own run."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str) -> int:
    """Set IFD's loggers to ``level`` (a name from ``LEVELS``); returns the numeric level.

    One stderr handler on each IFD logger, added once (calling again only changes the level).
    """
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    numeric = logging.getLevelNamesMapping()[name]
    for logger_name in IFD_LOGGERS:
        logger = logging.getLogger(logger_name)
        logger.setLevel(numeric)
        if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
            handler = _StderrHandler()
            handler.set_name(_HANDLER_NAME)
            fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
            handler.setFormatter(logging.Formatter(fmt))
            logger.addHandler(handler)
    return numeric
