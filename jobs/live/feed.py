"""What a live run subscribes to (the NQ option chain, its definitions and statistics, the NQ
futures) and how it connects to the Live gateway, from settings."""

from __future__ import annotations

import polars as pl

from ifd_core.marketdata.live_source import LiveParams, Subscription
from ifd_core.settings import Settings
from warehouse.lake import Lake

# CME product codes of the options on NQ futures: quarterly/serial (NQ), end-of-month (QNE) and
# the weeklies by weekday and week of month. Stored definitions add any others.
NQ_OPTION_ROOTS = (
    "NQ",
    "QNE",
    *[f"QN{w}" for w in range(1, 6)],
    *[f"Q{w}{d}" for d in "ABCD" for w in range(1, 6)],
)


def subscriptions_for(lake: Lake, settings: Settings) -> list[Subscription]:
    """Definitions, statistics and MBO for every NQ option root and the NQ futures."""
    roots = set(NQ_OPTION_ROOTS) | set(settings.live.option_roots)
    known = (
        lake.scan("instruments")
        .filter(pl.col("instrument_class").is_in(["C", "P"]))
        .select("asset", "underlying_id")
        .unique()
        .collect()
    )
    futures = (
        lake.scan("instruments")
        .filter(
            (pl.col("instrument_class") == "F") & (pl.col("asset") == settings.live.future_root)
        )
        .select("instrument_id")
        .unique()
        .collect()
    )
    fut_ids = set(futures["instrument_id"].to_list())
    roots |= {a for a, u in known.iter_rows() if u in fut_ids and a}
    symbols = tuple(sorted(f"{r}.OPT" for r in roots)) + (f"{settings.live.future_root}.FUT",)
    return [Subscription(s, symbols, "parent") for s in ("definition", "statistics", "mbo")]


def live_params(settings: Settings, host: str, port: int) -> LiveParams:
    key = settings.databento.api_key.get_secret_value()
    if not key:
        raise ValueError(
            "no Databento API key: set IFD_DATABENTO__API_KEY (the replay gateway accepts the "
            "key in the settings it was started with)"
        )
    lv = settings.live
    return LiveParams(
        host=host,
        port=port,
        key=key,
        dataset=settings.databento.dataset,
        heartbeat_interval_s=lv.heartbeat_interval_s,
        reconnect_max_attempts=lv.reconnect_max_attempts,
        reconnect_base_delay_s=lv.reconnect_base_delay_s,
        reconnect_max_delay_s=lv.reconnect_max_delay_s,
        replay_margin_s=lv.replay_margin_s,
        max_buffer_bytes=lv.max_buffer_bytes,
        raw_tap=lv.raw_tap,
    )
