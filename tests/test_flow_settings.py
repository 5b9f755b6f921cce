"""Flow runs set IFD's loggers from ``log_level`` (they run in their own process under serve)."""

from __future__ import annotations

import logging

import pytest

from flows.settings import flow_settings
from ifd_core.logs import IFD_LOGGERS


@pytest.fixture
def restore_levels():
    saved = {name: logging.getLogger(name).level for name in IFD_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["DEBUG", "WARNING", "ERROR"])
def test_a_flow_run_logs_at_the_configured_level(monkeypatch, restore_levels, level):
    monkeypatch.setenv("IFD_LOG_LEVEL", level)
    settings = flow_settings()
    assert settings.log_level == level
    for name in IFD_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == getattr(logging, level)
