"""Logging for IFD's own loggers, driven by the ``log_level`` setting.

Only the ``ifd_core``, ``warehouse``, ``expectations``, ``jobs``, ``reports``, ``flows`` and
``ifd_cli`` loggers are configured, so a library's chatter (Prefect, GX, ib_async) keeps its own
level. Called once by the ``ifd`` command (``--verbose``/``--quiet`` override the setting) and by
the Prefect flows at start.

The handler is injected: the command passes rich's ``RichHandler`` (ifd_cli/common.py), the flows
take the plain stderr handler below — no layer under ifd_cli imports rich for its logs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

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


def plain_handler() -> logging.Handler:
    """The default: one line per record on stderr, with time, level and logger."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def configure_logging(
    level: str, make_handler: Callable[[], logging.Handler] | None = plain_handler
) -> int:
    """Set IFD's loggers to ``level`` (a name from ``LEVELS``); returns the numeric level.

    One handler from ``make_handler`` on each IFD logger, added once: calling again with the
    same factory only changes the level, with another one replaces the handler. ``None``: no
    handler of IFD's own, records go to the root logger's (a Prefect flow run's console handler
    prints them once, in Prefect's format, instead of twice).
    """
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    numeric = logging.getLevelNamesMapping()[name]
    for logger_name in IFD_LOGGERS:
        logger = logging.getLogger(logger_name)
        logger.setLevel(numeric)
        ours = [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]
        if ours and all(getattr(h, "ifd_factory", None) is make_handler for h in ours):
            continue
        if not ours and make_handler is None:
            continue
        for old in ours:
            logger.removeHandler(old)
        if make_handler is None:
            continue
        handler = make_handler()
        handler.set_name(_HANDLER_NAME)
        handler.ifd_factory = make_handler  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return numeric
