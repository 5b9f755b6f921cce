"""Simulator knobs: settings group `simulator.`, SimParams, `ifd simulate` overrides (SYNTHETIC)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ifd_cli.app import EXIT_USAGE, app
from ifd_core import settings as st
from ifd_core.simulator.params import SimParams, parse_count_range

runner = CliRunner()


def test_settings_defaults_are_the_params_defaults() -> None:
    assert SimParams.from_settings(st.get_settings().simulator) == SimParams()
    assert SimParams().to_dict()["informed_move_points"] == [25.0, 50.0]


def test_settings_reject_bad_ranges_and_stay_out_of_the_config_hash() -> None:
    with pytest.raises(ValueError):
        st.get_settings(simulator={"flows_per_day": [4, 2]})
    with pytest.raises(ValueError):
        st.get_settings(simulator={"informed_share": 1.5})
    other = st.get_settings(simulator={"informed_share": 0.0})
    assert other.config_version() == st.get_settings().config_version()


def test_params_validation_and_count_ranges() -> None:
    with pytest.raises(ValueError):
        SimParams(informed_ramp_s=(0.0, 10.0))
    with pytest.raises(ValueError):
        SimParams(shape_weights=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError):
        SimParams(informed_delay_s=(60.0, 7200.0), informed_ramp_s=(300.0, 7200.0))
    assert parse_count_range("3") == (3, 3) and parse_count_range("2-5") == (2, 5)
    with pytest.raises(ValueError):
        parse_count_range("two")


def test_cli_overrides_reach_the_truth_and_provenance(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IFD_SIMULATOR__LARGE_PRINTS_PER_DAY", "[0, 0]")
    out = tmp_path / "sim"
    args = ["simulate", "--out", str(out), "--days", "1", "--scale", "0.05"]
    res = runner.invoke(app, [*args, "--informed-share", "0", "--flows-per-day", "3"])
    assert res.exit_code == 0, res.output
    truth = json.loads((out / "ground_truth.json").read_text())
    prov = json.loads((out / "IFD_SYNTHETIC.json").read_text())
    assert truth["params"] == prov["params"]
    assert truth["params"]["informed_share"] == 0.0 and truth["params"]["flows_per_day"] == [3, 3]
    assert truth["params"]["large_prints_per_day"] == [0, 0]  # from the settings (environment)
    flows = [e for e in truth["events"] if e["kind"] == "institutional"]
    assert len([e for e in flows if e["shape"] != "low_oi_block"]) == 3
    assert not any(e["informed"] for e in flows)
    assert not [e for e in truth["events"] if e["kind"] == "decoy_large_print"]


def test_cli_rejects_a_bad_flow_count(tmp_path) -> None:
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--flows-per-day", "4-2"])
    assert res.exit_code == EXIT_USAGE
