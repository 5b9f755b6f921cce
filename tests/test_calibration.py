"""The calibration study: its rates on hand-built results, and a reduced fixed-seed study on a
no-edge SYNTHETIC market whose extended test must not PASS and whose A/B test must not name a
winner (their false-positive bounds, 5 %, exceeded by any single false verdict here)."""

from __future__ import annotations

import pytest

from ifd_core.trading.extended import Criteria
from reports.calibration import coverage, markdown, n_for_power, rate, summarize


def _stats(correct: int, incorrect: int, lo: float, hi: float) -> dict:
    return {"correct": correct, "resolved": correct + incorrect, "ci_low": lo, "ci_high": hi}


def _block(v3: dict, pnl: float = -1.0) -> dict:
    algo = {
        "per_episode": v3,
        "per_signal": v3,
        "planted": 3,
        "found": 2,
        "informed_found": 1,
        "episodes": 4,
        "episodes_on_flows": 3,
        "decoy_signals": 0,
        "net_pnl": pnl,
        "mc_prob_loss": 0.5,
    }
    return {
        "algos": {"v3": algo, "v1": algo},
        "extended": {"status": "INCONCLUSIVE"},
        "labeller": [
            {"informed": True, "label": "correct"},
            {"informed": False, "label": "neutral"},
        ],
    }


def test_coverage_counts_blocks_whose_interval_holds_the_pooled_accuracy():
    blocks = [_block(_stats(6, 4, 0.3, 0.8)), _block(_stats(4, 6, 0.1, 0.45))]
    cov = coverage(blocks, "v3", "per_episode")
    assert cov["true_accuracy"] == 0.5
    assert (cov["k"], cov["n"]) == (1, 2)


def test_rates_carry_counts_and_wilson_intervals():
    r = rate(0, 20)
    assert r["rate"] == 0.0 and r["low"] == 0.0 and 0.15 < r["high"] < 0.17
    assert rate(0, 0)["rate"] is None


def test_power_needs_more_episodes_as_the_edge_shrinks():
    c = Criteria()
    assert n_for_power(0.6, c) is None  # below the accuracy bar: never passes
    assert n_for_power(0.9, c) == c.min_resolved
    assert n_for_power(0.77, c) > n_for_power(0.8, c)


def test_summary_and_table_from_market_results():
    ab = {"recommendation": "inconclusive"}
    markets = [{"share": 0.0, "seed": 1, "ab": ab, "blocks": [_block(_stats(5, 5, 0.2, 0.8))]}]
    summary = summarize(markets, Criteria())
    row = summary[0.0]
    assert row["algos"]["v3"]["recall"]["k"] == 2 and row["ab"]["any_winner"]["k"] == 0
    assert row["labeller"]["informed_correct"]["k"] == 1
    text = markdown(
        summary, {"warmup": 20, "blocks": 1, "block_days": 3, "scale": 0.2, "seeds": [1]}
    )
    assert "SYNTHETIC" in text and "not evidence about IFD's signals on real markets" in text


@pytest.mark.slow
def test_no_edge_market_gets_no_false_pass_and_no_false_winner(tmp_path):
    from ifd_core.settings import get_settings
    from jobs.calibration import Grid, run_market

    grid = Grid(
        shares=(0.0,),
        seeds=(3,),
        warmup=20,
        blocks=2,
        block_days=4,
        scale=0.2,
        v1_informed_share=0.0,
    )
    m = run_market(0.0, 3, grid, tmp_path, lambda d: get_settings(data_dir=str(d)))
    assert len(m.blocks) == 2
    assert all(b.algos["v3"]["planted"] > 0 for b in m.blocks)  # flows were planted and judged
    assert not any(f["informed"] for b in m.blocks for f in b.labeller)
    assert [b.extended["status"] for b in m.blocks].count("PASS") == 0
    assert m.ab["recommendation"] not in ("v3", "v1"), m.ab["verdict"]
