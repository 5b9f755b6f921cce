"""The settings a flow run uses, with IFD's loggers set to their ``log_level``.

Each flow run is its own process under ``ifd serve``, so the CLI's logging setup does not reach
it; every flow takes its settings from here instead of ``get_settings`` directly. Here too a
remote worker's missing Databento key or IB connection is read from Prefect Secret blocks
(flows/secrets.py), and the alert rows the run stores become Prefect events that the
notification automations watch (flows/notifications.py; docs/operations.md §Notifications).
"""

from __future__ import annotations

import logging

from flows.notifications import install_alert_events
from flows.secrets import apply_secret_blocks
from ifd_core.logs import configure_logging, plain_handler
from ifd_core.settings import Settings, get_settings


def prefect_console_on_root() -> bool:
    """True in a process where Prefect set up logging (a flow run): its console handler on the
    root logger already prints IFD's records, and ``prefect.toml``'s ``extra_loggers`` send them
    to the run's logs in the UI (docs/operations.md, "Logs")."""
    from prefect.logging.handlers import PrefectConsoleHandler

    return any(isinstance(h, PrefectConsoleHandler) for h in logging.getLogger().handlers)


def attach_extra_loggers() -> None:
    """Prefect gives the loggers of its ``logging.extra_loggers`` setting its API handler once,
    when it sets up logging; whatever replaced a logger's handlers since (a test, a tool) would
    cut IFD's records off the run's logs, so each flow run makes sure they are there."""
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

    # Only the API handler: other handlers on ``prefect.extra`` (a test runner's capture) are
    # not what the setting is about, and the console is the root logger's.
    extra = [h for h in logging.getLogger("prefect.extra").handlers if isinstance(h, APILogHandler)]
    for name in PREFECT_LOGGING_EXTRA_LOGGERS.value():
        logger = logging.getLogger(name)
        for handler in extra:
            if handler not in logger.handlers:
                logger.addHandler(handler)


def flow_settings() -> Settings:
    settings = get_settings()
    configure_logging(
        settings.log_level, make_handler=None if prefect_console_on_root() else plain_handler
    )
    attach_extra_loggers()
    apply_secret_blocks(settings)
    install_alert_events()
    return settings
