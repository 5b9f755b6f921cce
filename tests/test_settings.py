"""Settings: layering, profiles, unknown keys, secrets and the config hash."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
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


def test_the_cross_asset_weight_is_in_config_version_only_when_on():
    base = st.get_settings().config_version()
    off = st.get_settings(massive={"confidence_weight": 0.0})
    # Off: Massive stays wholly out of the hash, as before the key existed.
    assert off.config_version() == base
    assert st.get_settings(massive={"underlyings": ["QQQ"]}).config_version() == base
    on = st.get_settings(massive={"confidence_weight": 0.3})
    assert on.config_version() != base
    assert st.get_settings(massive={"confidence_weight": 0.4}).config_version() not in (
        base,
        on.config_version(),
    )
    # On: only the weight comes in, the fetch settings stay out.
    same = st.get_settings(
        massive={"confidence_weight": 0.3, "underlyings": ["QQQ"], "api_key": "k", "max_pages": 3}
    )
    assert same.config_version() == on.config_version()
    with pytest.raises(ValidationError):
        st.get_settings(massive={"confidence_weight": 1.5})


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


# ------------------------------------------------------------------ v3 settings are V3Params
def test_default_v3_settings_build_the_detector_the_engine_ran_before():
    # Before the settings drove every parameter, the engine built exactly this; detection at
    # default settings is therefore unchanged (same signals from the same records).
    from ifd_core.analysis.ifd_v3 import V3Params
    from ifd_core.analysis.pressure_windows import WindowParams
    from ifd_core.analysis.wiring import engine_params

    wp, v3, bp = engine_params(st.get_settings())
    assert v3 == V3Params(min_imbalance=1 / 3, min_confidence=0.7, min_data_quality=0.9)
    assert wp == WindowParams(window_s=300, grace_s=30)
    assert (bp.lookback_sessions, bp.min_samples) == (20, 5)


def test_conservative_profile_makes_v3_stricter():
    from ifd_core.analysis.wiring import v3_params

    base = v3_params(st.get_settings().analysis.v3)
    strict = v3_params(st.get_settings("conservative_testing").analysis.v3)
    assert strict.min_imbalance > base.min_imbalance
    assert strict.min_total_volume > base.min_total_volume
    assert strict.min_trades > base.min_trades
    assert strict.min_confidence > base.min_confidence
    assert strict.full_breadth_prints > base.full_breadth_prints
    assert strict.mm_floor < base.mm_floor  # market making discounts sooner


def test_v3_weights_must_sum_to_one():
    with pytest.raises(Exception, match="must sum to 1"):
        st.get_settings(analysis={"v3": {"weights": {"size": 0.5}}})
    s = st.get_settings(analysis={"v3": {"weights": {"size": 0.45, "imbalance": 0.2}}})
    assert s.analysis.v3.weights.model_dump() == {"size": 0.45, "imbalance": 0.2, "prints": 0.35}


def test_criteria_defaults_are_the_extended_settings():
    from ifd_core.trading.extended import Criteria

    assert Criteria() == Criteria.from_settings(st.get_settings().extended)
    assert Criteria.from_settings(st.ExtendedSettings(min_resolved=7)).min_resolved == 7


# ------------------------------------------------------------------ the schema's edges
@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("IFD_RISKK__MAX_POSITION_SIZE", "did you mean 'risk'"),
        ("IFD_ANALYSYS__V3__MIN_PRESSURE_RATIO", "did you mean 'analysis'"),
        ("IFD_ANALYSIS__V33__MIN_PRESSURE_RATIO", "did you mean 'analysis.v3'"),
        ("IFD_RISK__MAX_POSITON_SIZE", "did you mean 'risk.max_position_size'"),
    ],
)
def test_unknown_environment_group_is_an_error_with_a_suggestion(monkeypatch, variable, suggestion):
    monkeypatch.setenv(variable, "3")
    with pytest.raises(st.UnknownSettingError, match=suggestion):
        st.get_settings()


def test_process_variables_are_not_settings(monkeypatch):
    monkeypatch.setenv("IFD_FAILPOINTS", "")
    monkeypatch.setenv("IFD_REPO_DIR", "/x")
    assert st.get_settings().risk.max_position_size == 15


def test_unknown_environment_group_fails_the_cli_as_a_usage_error(monkeypatch):
    monkeypatch.setenv("IFD_RISKK__MAX_POSITION_SIZE", "1000")
    res = CliRunner().invoke(app, ["config", "show"])
    assert res.exit_code == EXIT_USAGE
    assert "riskk" in res.stderr and "risk" in res.stderr


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"analysis": {"v3": {"min_pressure_ratio": -3}}}, "min_pressure_ratio"),
        ({"analysis": {"v3": {"min_pressure_ratio": 0.5}}}, "min_pressure_ratio"),
        ({"analysis": {"v3": {"min_pressure_ratio": 1.0}}}, "min_pressure_ratio"),
        ({"analysis": {"v3": {"min_overall_confidence": 1.2}}}, "min_overall_confidence"),
        ({"analysis": {"v3": {"support_gains": {"trend": -0.1}}}}, "trend"),
        ({"analysis": {"v3": {"mm_floor": 1.0}}}, "mm_floor"),
        ({"analysis": {"v3": {"min_trades": 0}}}, "min_trades"),
        ({"risk": {"max_position_size": 0}}, "max_position_size"),
        ({"risk": {"min_signal_confidence": 1.5}}, "min_signal_confidence"),
        ({"extended": {"min_accuracy": 1.1}}, "min_accuracy"),
        ({"analysis": {"v1": {"tier_high": 60.0}}}, "tier"),
    ],
)
def test_values_outside_their_range_are_refused(override, field):
    with pytest.raises(Exception, match=field):
        st.get_settings(**override)


def test_log_level_is_one_of_the_logging_levels():
    assert st.get_settings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(Exception, match="log_level must be one of"):
        st.get_settings(log_level="LOUD")


@pytest.mark.parametrize("name", ["../config/profiles/v1_production", "/etc/passwd", "a/b", ".."])
def test_profile_is_a_name_never_a_path(name):
    with pytest.raises(st.ProfileError, match="available: .*v1_production"):
        st.get_settings(name)


def test_profile_path_on_the_command_line_is_a_usage_error():
    res = CliRunner().invoke(app, ["config", "show", "--profile", "../../etc/passwd"])
    assert res.exit_code == EXIT_USAGE
    assert "not a profile name" in res.stderr and "conservative_testing" in res.stderr


def test_profiles_set_only_keys_the_code_reads():
    # Every profile loads (unknown keys are errors) and no profile sets a removed key.
    for name in st.available_profiles():
        st.get_settings(name)
    text = " ".join(p.read_text() for p in st.PROFILES_DIR.glob("*.toml"))
    for removed in (
        "min_volume_concentration",
        "market_making_penalty",
        "slippage_ticks",
        "tier_moderate",
        "split_ratio",
        "min_baseline_anomaly",
    ):
        assert removed not in text
