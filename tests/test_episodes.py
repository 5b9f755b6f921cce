"""Signal episodes (ifd_core/analysis/episodes.py): one flow seen in several windows is one unit of
evidence. Hand-built signal sequences: the demo's QN2J6 put over four consecutive windows,
coordinated strikes in one window, opposite views, a gap, streaming against batch, stable ids."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ifd_core.analysis.detectors import SIGNAL_SCHEMA
from ifd_core.analysis.episodes import (
    EpisodeParams,
    EpisodeTracker,
    assign_episodes,
    episode_id,
    first_per_episode,
)

NS = 1_000_000_000
W = 300 * NS
DAY = dt.date(2026, 3, 6)
T1110 = 1_772_813_400 * NS  # 2026-03-06 11:10 New York (16:10 UTC)


def sig(
    k: int,
    *,
    iid: int = 7001,
    strike: float = 19000.0,
    right: str = "P",
    view: str = "BEARISH",
    algo: str = "v3",
    day: dt.date = DAY,
    start: int = T1110,
    underlying: float | None = 19050.0,
    confidence: float = 0.8,
    volume: int = 200,
) -> dict:
    """The signal of window ``k`` (0 = the window starting at ``start``)."""
    ws = start + k * W
    return {
        "date": day,
        "signal_id": f"{algo}-{iid}-{k}-{view}",
        "algo": algo,
        "instrument_id": iid,
        "raw_symbol": f"QN2J6 {right}{int(strike)}",
        "root": "QN2",
        "expiration": dt.date(2026, 4, 10),
        "expiration_ts": 0,
        "strike": strike,
        "option_type": right,
        "direction": "BUY" if view == "BEARISH" else "SELL",
        "view": view,
        "window_start": ws,
        "window_end": ws + W,
        "decision_ts": ws + W + 30 * NS,
        "confidence": confidence,
        "tier": "HIGH",
        "underlying_id": 1,
        "underlying_price": underlying,
        "volume": volume,
        "premium": 1000.0,
        "features": "{}",
        "episode_id": None,
    }


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SIGNAL_SCHEMA)


def test_the_qn2j6_put_in_four_consecutive_windows_is_one_episode():
    sigs = frame([sig(k) for k in range(4)])  # 11:10, 11:15, 11:20, 11:25
    out = assign_episodes(sigs)
    assert out["episode_id"].n_unique() == 1
    # The id is the first signal's: algorithm, trade date, first window start, instrument.
    assert out["episode_id"][0] == episode_id("v3", DAY, T1110, 7001)
    first = first_per_episode(out)
    assert first.height == 1 and first["signal_id"][0] == "v3-7001-0-BEARISH"


def test_two_strikes_of_one_expiry_in_one_window_within_the_band_are_one_episode():
    # band: 0.5 % of 19 050 = 95.25 points; 19 000 and 19 075 are 75 apart
    out = assign_episodes(frame([sig(0), sig(0, iid=7002, strike=19075.0)]))
    assert out["episode_id"].n_unique() == 1
    # 19 000 and 19 100 are 100 apart: outside the band, two flows
    out = assign_episodes(frame([sig(0), sig(0, iid=7003, strike=19100.0)]))
    assert out["episode_id"].n_unique() == 2
    # the other right of the same expiry is not the same flow either
    out = assign_episodes(frame([sig(0), sig(0, iid=7004, right="C", strike=19025.0)]))
    assert out["episode_id"].n_unique() == 2


def test_coordinated_strike_then_the_same_option_continues_the_episode():
    rows = [sig(0), sig(0, iid=7002, strike=19050.0), sig(1, iid=7002, strike=19050.0)]
    out = assign_episodes(frame(rows))
    assert out["episode_id"].n_unique() == 1


def test_same_option_opposite_view_is_two_episodes():
    out = assign_episodes(frame([sig(0), sig(1, view="BULLISH"), sig(2)]))
    ids = out["episode_id"].to_list()
    assert ids[0] != ids[1]
    # and the bearish flow resumed after a window of the other view is a new episode
    assert len(set(ids)) == 3


def test_an_empty_window_ends_the_episode_unless_the_gap_setting_allows_it():
    rows = frame([sig(0), sig(1), sig(3)])  # window 2 has no signal
    assert assign_episodes(rows)["episode_id"].n_unique() == 2
    allowed = assign_episodes(rows, EpisodeParams(max_gap_windows=1))
    assert allowed["episode_id"].n_unique() == 1
    assert (
        assign_episodes(frame([sig(0), sig(3)]), EpisodeParams(max_gap_windows=1))[
            "episode_id"
        ].n_unique()
        == 2
    )


def test_episodes_never_span_trade_dates_or_algorithms():
    nxt = DAY + dt.timedelta(days=1)
    # the same option in the last window of one date and the first of the next
    rows = [sig(0), sig(1, day=nxt), sig(0, algo="v1")]
    out = assign_episodes(frame(rows))
    assert out["episode_id"].n_unique() == 3


def test_streaming_window_by_window_equals_batch_and_reruns_give_the_same_ids():
    rows = [sig(k) for k in range(4)] + [sig(k, iid=7002, strike=19050.0) for k in (1, 2)]
    rows += [sig(k, iid=7100, strike=18000.0, view="BULLISH") for k in (0, 2, 3)]
    batch = assign_episodes(frame(rows))
    tracker = EpisodeTracker()
    streamed = pl.concat(
        [
            tracker.assign(frame([r for r in rows if r["window_start"] == T1110 + k * W]))
            for k in range(4)
        ]
    )
    key = ["signal_id", "episode_id"]
    assert streamed.select(key).sort("signal_id").equals(batch.select(key).sort("signal_id"))
    again = assign_episodes(frame(list(reversed(rows))))  # input order does not matter
    assert again.select(key).sort("signal_id").equals(batch.select(key).sort("signal_id"))
    assert batch["episode_id"].n_unique() == 3  # the put flow (7001+7002), 7100 twice


def test_first_per_episode_refuses_signals_without_episodes():
    with pytest.raises(ValueError, match="episode_id"):
        first_per_episode(frame([sig(0)]).drop("episode_id"))
    with pytest.raises(ValueError, match="ifd detect"):
        first_per_episode(frame([sig(0)]))  # episode_id null: detected before episodes


def test_the_settings_reach_the_detectors_and_both_executors():
    from ifd_core.broker.factory import trader_from_settings
    from ifd_core.broker.paper_broker import PaperBroker
    from ifd_core.ops.resilience import Breaker
    from ifd_core.settings import BreakerSettings, Settings
    from ifd_core.trading.paper import executor_from_settings
    from jobs.detect import make_detectors

    s = Settings(analysis={"episode_max_gap_windows": 2}, paper={"stack_episodes": True})
    for d in make_detectors(s, DAY, None, ("v3", "v1")):
        assert d.episodes.params == EpisodeParams(window_s=300, max_gap_windows=2, band_pct=0.5)
    ex = executor_from_settings("v3", s, halted=lambda: None, run_id="r", mode="backtest")
    trader = trader_from_settings(
        "v3",
        s,
        PaperBroker(2.0),
        Breaker("b", BreakerSettings()),
        quote=lambda i: None,
        halted=lambda: None,
        run_id="r",
    )
    assert ex.cfg.stack_episodes and trader.cfg.stack_episodes
    assert Settings().paper.stack_episodes is False
    assert Settings().analysis.episode_max_gap_windows == 0
