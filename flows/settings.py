"""The settings a flow run uses, with IFD's loggers set to their ``log_level``.

Each flow run is its own process under ``ifd serve``, so the CLI's logging setup does not reach
it; every flow takes its settings from here instead of ``get_settings`` directly.
"""

from __future__ import annotations

from ifd_core.logs import configure_logging
from ifd_core.settings import Settings, get_settings


def flow_settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level)
    return settings
