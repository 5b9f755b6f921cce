"""Settings: layering, profiles, unknown keys, secrets and the config hash."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_USAGE, app
from ifd_core import settings as st


def test_profiles_change_the_thresholds_they_name():
    base = st.get_settings()
    strict = st.get_settings("conservative_testing")
    assert base.analysis.v3.min_pressure_ratio == 2.0
    assert strict.analysis.v3.min_pressure_ratio == 3.0
    assert strict.analysis.v3.lookback_days == 30
    assert strict.risk.min_signal_confidence == 0.85
    assert st.get_settings("paper_trading_validation").analysis.v1.min_dollar_size == 75_000
    assert st.get_settings("v1_production").risk.max_daily_trades == 20
    assert set(st.available_profiles()) == {
        "v1_production",
        "v3_production",
        "ab_testing",
        "conservative_testing",
        "paper_trading_validation",
    }


def test_environment_overrides_profile_and_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text(
        "IFD_ANALYSIS__V3__MIN_PRESSURE_RATIO=4.5\nIFD_PROFILE=conservative_testing\n"
    )
    s = st.get_settings()
    assert s.profile == "conservative_testing"
    assert s.analysis.v3.min_pressure_ratio == 4.5  # .env beats the profile
    assert s.analysis.v3.min_total_volume == 200  # the profile beats the defaults
    monkeypatch.setenv("IFD_ANALYSIS__V3__MIN_PRESSURE_RATIO", "5.5")
    assert st.get_settings().analysis.v3.min_pressure_ratio == 5.5  # environment beats .env


def test_unknown_key_in_profile_is_an_error_naming_the_key(monkeypatch, tmp_path):
    (tmp_path / "typo.toml").write_text("[analysis.v3]\nmin_presure_ratio = 3.0\n")
    monkeypatch.setattr(st, "PROFILES_DIR", tmp_path)
    with pytest.raises(Exception, match="min_presure_ratio"):
        st.get_settings("typo")


def test_unknown_environment_key_is_an_error(monkeypatch):
    monkeypatch.setenv("IFD_ANALYSIS__V3__NOT_A_FIELD", "1")
    with pytest.raises(Exception, match="not_a_field"):
        st.get_settings()


def test_config_version_is_stable_and_sensitive():
    assert st.get_settings().config_version() == st.get_settings().config_version()
    assert st.get_settings("v3_production").config_version() == st.get_settings().config_version()
    assert (
        st.get_settings("conservative_testing").config_version()
        != st.get_settings().config_version()
    )


def test_config_version_ignores_how_the_live_run_operates():
    base = st.get_settings().config_version()
    assert (
        st.get_settings(live={"flush_every_s": 0.2, "reconnect_max_attempts": 3}).config_version()
        == base
    )
    assert st.get_settings(live={"session_policy": "rth_only"}).config_version() != base


def test_secret_is_masked_and_never_in_profiles(monkeypatch):
    monkeypatch.setenv("IFD_DATABENTO__API_KEY", "db-supersecretkey")
    res = CliRunner().invoke(app, ["config", "show", "--json"])
    assert res.exit_code == 0
    assert "supersecret" not in res.output and "**********" in res.output
    for path in st.PROFILES_DIR.glob("*.toml"):
        assert "api_key" not in path.read_text()


def test_config_show_unknown_profile_exits_with_usage_error():
    res = CliRunner().invoke(app, ["config", "show", "--profile", "nope"])
    assert res.exit_code == EXIT_USAGE
    assert "unknown profile 'nope'" in res.stderr


def test_ifd_data_dir_names_the_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("IFD_DATA_DIR", str(tmp_path / "elsewhere"))
    s = st.get_settings()
    assert s.data_dir == s.warehouse.data_dir == (tmp_path / "elsewhere").resolve()


def test_live_group_defaults():
    live = st.get_settings().live
    assert live.session_policy == "always_on"
    assert live.stale_after_s == 10.0
    assert live.heartbeat_interval_s == 10
    assert live.flush_every_s == 5.0
    assert live.flush_every_records == 500_000
    assert live.reconnect_max_attempts == 10
    assert live.reconnect_base_delay_s == 0.5
    assert live.reconnect_max_delay_s == 30.0
    assert live.replay_margin_s == 10.0
    assert live.max_buffer_bytes == 256 * 1024 * 1024
    assert live.backfill_enabled is True
    assert live.min_backfill_gap_s == 30.0
    assert live.option_roots == ["NQ"]
    assert live.future_root == "NQ"


def test_live_group_environment_override_and_validation(monkeypatch):
    monkeypatch.setenv("IFD_LIVE__SESSION_POLICY", "rth_only")
    monkeypatch.setenv("IFD_LIVE__OPTION_ROOTS", '["NQ", "QN1"]')
    s = st.get_settings()
    assert s.live.session_policy == "rth_only"
    assert s.live.option_roots == ["NQ", "QN1"]
    monkeypatch.setenv("IFD_LIVE__SESSION_POLICY", "sometimes")
    with pytest.raises(Exception, match="session_policy"):
        st.get_settings()
