"""`ifd --verbose/--quiet` and the `log_level` setting decide what IFD's loggers emit, through
rich's log handler on stderr."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_USAGE, app
from ifd_core.logs import IFD_LOGGERS

runner = CliRunner()
SETTINGS_LINE = "DEBUG ifd_cli.common: settings: profile"  # as rich renders it, unwrapped


@pytest.fixture(autouse=True)
def _restore_ifd_loggers():
    """configure_logging changes process-wide loggers: put them back for the other tests."""
    saved = {
        n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in IFD_LOGGERS
    }
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers


def _stderr(res) -> str:
    """The invocation's stderr with rich's column padding and wrapping undone."""
    return " ".join(res.stderr.split())


def _emitted(caplog, level: int) -> bool:
    """Whether an IFD logger configured by the last invocation lets a record of ``level`` out."""
    caplog.clear()
    logging.getLogger("jobs.probe").log(level, "probe record")
    return any(r.name == "jobs.probe" and r.levelno == level for r in caplog.records)


def test_verbose_makes_the_command_log_debug():
    quiet_default = runner.invoke(app, ["config", "show", "--json"])
    verbose = runner.invoke(app, ["--verbose", "config", "show", "--json"])
    short = runner.invoke(app, ["-v", "config", "show", "--json"])
    assert quiet_default.exit_code == verbose.exit_code == short.exit_code == 0
    assert SETTINGS_LINE not in _stderr(quiet_default)  # log_level INFO by default
    assert SETTINGS_LINE in _stderr(verbose)
    assert SETTINGS_LINE in _stderr(short)
    assert "log level DEBUG" in _stderr(verbose)
    assert verbose.stdout == quiet_default.stdout  # logs go to stderr only: --json stays parseable


def test_quiet_suppresses_info_and_the_default_lets_it_through(caplog):
    assert runner.invoke(app, ["config", "show", "--json"]).exit_code == 0
    assert _emitted(caplog, logging.INFO)
    assert not _emitted(caplog, logging.DEBUG)
    assert runner.invoke(app, ["--quiet", "config", "show", "--json"]).exit_code == 0
    assert not _emitted(caplog, logging.INFO)
    assert _emitted(caplog, logging.WARNING)
    assert runner.invoke(app, ["-q", "config", "show", "--json"]).exit_code == 0
    assert not _emitted(caplog, logging.INFO)


def test_without_flags_the_log_level_setting_decides(monkeypatch, caplog):
    monkeypatch.setenv("IFD_LOG_LEVEL", "DEBUG")
    debug = runner.invoke(app, ["config", "show", "--json"])
    assert SETTINGS_LINE in _stderr(debug)
    monkeypatch.setenv("IFD_LOG_LEVEL", "ERROR")
    assert runner.invoke(app, ["config", "show", "--json"]).exit_code == 0
    assert not _emitted(caplog, logging.WARNING)
    assert _emitted(caplog, logging.ERROR)


def test_the_flags_override_the_setting(monkeypatch, caplog):
    monkeypatch.setenv("IFD_LOG_LEVEL", "DEBUG")
    quiet = runner.invoke(app, ["--quiet", "config", "show", "--json"])
    assert quiet.exit_code == 0
    assert SETTINGS_LINE not in _stderr(quiet)
    assert not _emitted(caplog, logging.INFO)
    monkeypatch.setenv("IFD_LOG_LEVEL", "ERROR")
    assert SETTINGS_LINE in _stderr(runner.invoke(app, ["--verbose", "config", "show"]))


def test_verbose_and_quiet_together_is_a_usage_error():
    r = runner.invoke(app, ["--verbose", "--quiet", "config", "show"])
    assert r.exit_code == EXIT_USAGE
    assert "choose one of --verbose and --quiet" in r.stderr


def test_an_unknown_log_level_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("IFD_LOG_LEVEL", "LOUD")
    r = runner.invoke(app, ["config", "show"])
    assert r.exit_code == EXIT_USAGE
    assert "log_level must be one of" in r.stderr  # refused by the settings schema


def test_the_command_logs_through_richs_handler_on_stderr():
    from rich.logging import RichHandler

    res = runner.invoke(app, ["--verbose", "config", "show", "--json"])
    assert res.exit_code == 0
    handlers = logging.getLogger("jobs").handlers
    assert [type(h) for h in handlers if h.get_name() == "ifd-stderr"] == [RichHandler]
    assert "DEBUG" in res.stderr and "ifd_cli.common: settings" in _stderr(res)


def test_the_flows_plain_handler_is_replaced_not_doubled():
    """A process that configured the plain handler first (a flow) and then runs the command
    ends with one IFD handler per logger, rich's."""
    from ifd_core.logs import configure_logging

    configure_logging("INFO")
    assert runner.invoke(app, ["-v", "config", "show", "--json"]).exit_code == 0
    ours = [h for h in logging.getLogger("warehouse").handlers if h.get_name() == "ifd-stderr"]
    assert len(ours) == 1 and type(ours[0]).__name__ == "RichHandler"
