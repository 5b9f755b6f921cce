"""The `ifd` command's typed options: every usage mistake exits 2 (EXIT_USAGE) with the reason,
before any work; `--version`; shell completion; the Databento key's fallback and its absence."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_OK, EXIT_USAGE, app
from ifd_cli.common import clock_time, session_date
from ifd_cli.rollout import Stage
from ifd_core.settings import get_settings

runner = CliRunner()


def _usage_error(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == EXIT_USAGE, (res.exit_code, res.output, res.stderr)
    assert "Traceback" not in res.output + res.stderr
    return " ".join(res.stderr.replace("│", " ").split())  # typer boxes and wraps its message


# --------------------------------------------------------------------------- times and dates
@pytest.mark.parametrize("bad", ["25:00", "12:60", "9:5", "noon", "12", "-1:00", "12:00:00"])
def test_chain_at_outside_a_day_is_a_usage_error(bad):
    msg = _usage_error(["chain", "--date", "2026-03-30", "--at", bad])
    assert "Invalid value for '--at'" in msg and "HH:MM" in msg and "00:00-23:59" in msg


def test_clock_time_reads_hh_mm():
    assert clock_time("09:30") == dt.time(9, 30)
    assert clock_time("0:00") == dt.time(0, 0)
    assert clock_time("23:59") == dt.time(23, 59)


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "--date", "2026-3-30"],
        ["chain", "--date", "30/03/2026"],
        ["backtest", "--start", "2026-02-30", "--end", "2026-03-02"],
        ["ab", "--start", "2026-03-02", "--end", "tomorrow"],
        ["extended-test", "--start", "x"],
        ["cost", "report", "--day", "2026-13-01"],
        ["simulate", "--out", "sim", "--start", "March"],
        ["live", "--gateway", "127.0.0.1:1", "--date", "2026/03/30"],
    ],
)
def test_a_malformed_date_names_the_format(args):
    assert "is not a date (use YYYY-MM-DD)" in _usage_error(args)


@pytest.mark.parametrize(
    "args",
    [
        ["detect", "--date", "2026-03-29"],
        ["chain", "--date", "2026-03-29"],
        ["live", "--gateway", "127.0.0.1:1", "--date", "2026-03-29"],
        ["ib", "record-underlying", "--date", "2026-03-29"],
    ],
)
def test_a_trade_date_that_is_no_session_says_so(args):
    msg = _usage_error(args)
    assert "2026-03-29 is not a CME session (Sunday)" in msg
    assert "the sessions around it are 2026-03-27 and 2026-03-30" in msg
    assert "ingest it first" not in msg


def test_an_exchange_holiday_is_no_session():
    with pytest.raises(Exception, match="2026-04-03 is not a CME session"):  # Good Friday
        session_date("2026-04-03")
    assert session_date("2026-03-30") == dt.date(2026, 3, 30)


@pytest.mark.parametrize("command", ["backtest", "ab", "extended-test"])
def test_start_after_end_says_so(command):
    msg = _usage_error([command, "--start", "2026-03-10", "--end", "2026-03-02"])
    assert "--start 2026-03-10 is after --end 2026-03-02" in msg


# --------------------------------------------------------------------------- choices
@pytest.mark.parametrize(
    "args",
    [
        ["detect", "--date", "2026-03-30"],
        ["backtest", "--start", "2026-03-02", "--end", "2026-03-03"],
        ["evaluate", "--truth", "t.json"],
    ],
)
def test_algo_outside_its_choices_is_a_usage_error(args):
    msg = _usage_error([*args, "--algo", "v2"])
    assert "Invalid value for '--algo'" in msg and "'v3', 'v1', 'both'" in msg


@pytest.mark.parametrize(
    "args",
    [
        ["rollout", "promote", "--to", "NOPE"],
        ["detect", "--date", "2026-03-30", "--algo", "v2"],
        ["backtest", "--start", "2026-03-02", "--end", "2026-03-03", "--algo", "v2"],
    ],
)
def test_a_bad_choice_carries_no_validator_prefix(args):
    """Typer validates Enum options through pydantic, whose "Value error, " prefix leaked into
    the usage error; the CLI's own choice parser says only what is wrong."""
    msg = _usage_error(args)
    assert "is not one of" in msg and "Value error" not in msg


def test_algo_choices_are_in_help():
    res = runner.invoke(app, ["detect", "--help"])
    assert res.exit_code == EXIT_OK and "v3|v1|both" in res.output


def test_rollout_promote_to_an_unknown_stage_is_a_usage_error():
    msg = _usage_error(["rollout", "promote", "--to", "NOPE"])
    assert "Invalid value for '--to'" in msg
    assert "'SHADOW', 'PAPER', 'LIVE_CANARY', 'LIVE_LIMITED', 'LIVE_MAJORITY', 'LIVE_FULL'" in msg


def test_rollout_promote_lists_the_stages_in_help():
    res = runner.invoke(app, ["rollout", "promote", "--help"])
    assert "SHADOW|PAPER|LIVE_CANARY" in "".join(res.output.split())


def test_rollout_promote_to_a_stage(data_dir):
    res = runner.invoke(app, ["rollout", "promote", "--to", "PAPER"])
    assert res.exit_code == EXIT_OK, res.output + res.stderr
    assert "SHADOW -> PAPER" in res.output


def test_the_cli_stages_are_the_controllers():
    from ifd_core.trading.rollout import STAGES

    assert tuple(s.value for s in Stage) == STAGES


# --------------------------------------------------------------------------- version, completion
def test_version_prints_the_package_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == EXIT_OK
    assert res.output.strip() == f"ifd {version('ifd')}"


def test_shell_completion_is_offered():
    res = runner.invoke(app, ["--help"])
    assert "--install-completion" in res.output and "--show-completion" in res.output


# --------------------------------------------------------------------------- the Databento key
def test_the_sdk_key_is_the_fallback(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-sdk-key")
    assert get_settings().databento.api_key.get_secret_value() == "db-sdk-key"


def test_ifd_key_wins_over_the_sdk_key(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-sdk-key")
    monkeypatch.setenv("IFD_DATABENTO__API_KEY", "db-ifd-key")
    assert get_settings().databento.api_key.get_secret_value() == "db-ifd-key"


def test_ifd_key_in_dotenv_wins_over_the_sdk_key(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("IFD_DATABENTO__API_KEY=db-dotenv-key\n")
    monkeypatch.setenv("DATABENTO_API_KEY", "db-sdk-key")
    assert get_settings().databento.api_key.get_secret_value() == "db-dotenv-key"


def test_the_sdk_key_is_masked(monkeypatch):
    monkeypatch.setenv("DATABENTO_API_KEY", "db-sdk-key")
    res = runner.invoke(app, ["config", "show", "--json"])
    assert res.exit_code == EXIT_OK and "db-sdk-key" not in res.output


@pytest.mark.parametrize(
    "args",
    [
        [
            "fetch",
            "--start",
            "2026-03-02",
            "--end",
            "2026-03-03",
            "--schema",
            "mbo",
            "--symbols",
            "NQ.OPT",
        ],
        ["gateway", "--data", "."],
        ["live", "--gateway", "127.0.0.1:1"],
    ],
)
def test_a_missing_key_is_a_configuration_error(args):
    msg = _usage_error(args)
    assert "no Databento API key" in msg
    assert "IFD_DATABENTO__API_KEY or DATABENTO_API_KEY" in msg
