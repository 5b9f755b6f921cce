"""The lake's tables: one polars schema per table, the single source for files, views and docs.

Every lake file carries all of its table's columns, the trade ``date`` included, so a view reads
the files with ``union_by_name`` and needs no hive partitioning. Prices are DBN fixed-point
integers (1e-9); timestamps are integer nanoseconds since the epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

U8, U16, U32, U64 = pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64
I32, I64, F64, S, B = pl.Int32, pl.Int64, pl.Float64, pl.String, pl.Boolean

# Columns every market-data row carries: where it came from and which raw file it was read from.
PROVENANCE = {"origin": S, "source_sha": S}
ORIGINS = ("synthetic", "replay", "historical", "live", "backfill")


@dataclass(frozen=True)
class Table:
    name: str
    grain: str
    schema: dict[str, pl.DataType]
    description: str

    @property
    def pl_schema(self) -> pl.Schema:
        return pl.Schema(self.schema)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.pl_schema)


def _t(name: str, grain: str, description: str, cols: dict, provenance: bool = True) -> Table:
    schema = {"date": pl.Date, **cols, **(PROVENANCE if provenance else {})}
    return Table(name, grain, schema, description)


_MBO = {
    "ts_recv": U64,
    "ts_event": U64,
    "instrument_id": U32,
    "publisher_id": U16,
    "channel_id": U8,
    "order_id": U64,
    "action": S,
    "side": S,
    "price": I64,
    "size": U32,
    "flags": U8,
    "ts_in_delta": I32,
    "sequence": U32,
}

_BASELINE_METRICS = ("log_volume", "buy_volume", "sell_volume", "imbalance")

_FLOW = {
    "buy_volume": I64,
    "sell_volume": I64,
    "unsigned_volume": I64,
    "volume": I64,
    "buy_trades": I64,
    "sell_trades": I64,
    "unsigned_trades": I64,
    "trades": I64,
    "buy_premium": F64,
    "sell_premium": F64,
    "max_print": I64,
    "large_prints": I64,
    "large_buy_prints": I64,
    "large_sell_prints": I64,
    "vwap": F64,
    "first_trade_ts": U64,
    "last_trade_ts": U64,
    "imbalance": F64,
    "buy_share": F64,
    "log_ratio": F64,
    "pressure_ratio": F64,
    "dominant_side": S,
    "delta_volume": F64,
    "delta_unknown_volume": I64,
}
_CONTRACT = {
    "instrument_id": U32,
    "raw_symbol": S,
    "root": S,
    "right": S,
    "strike": F64,
    "expiration": U64,
    "underlying_id": U32,
}
_WINDOW_COLS = {
    "window_start": U64,
    "window_end": U64,
    **_CONTRACT,
    "underlying_price": F64,
    **_FLOW,
    "confidence": F64,
    "engine_version": S,
    "complete": B,
    # Σ q² of aggressive orders per side (v3 breadth); null in windows stored before engine-3.
    "buy_size_sq": I64,
    "sell_size_sq": I64,
}
_ROLLUP_COLS = {
    **_CONTRACT,
    "windows": I64,
    **{k: v for k, v in _FLOW.items() if k not in ("max_print", "dominant_side", "buy_share")},
    "max_print": I64,
    "last_underlying_price": F64,
}

# The trading ledger: every row carries its run, mode (backtest | paper | shadow | ib), algorithm,
# signal and config version, so any P&L traces back to the signal and parameters behind it.
_RUN = {"run_id": S, "mode": S, "algo": S, "origin": S}  # origin: synthetic when simulated
_LEDGER = [
    _t(
        "orders",
        "one order of one run",
        "Every order the executor decided on, including rejected ones and why (risk, emergency "
        "stop, no liquidity): purpose entry | stop | target | time_stop | session_end | "
        "expiration; status filled | partial | cancelled | rejected | skipped (a later signal "
        "of an episode already acted on: reason `same_episode`).",
        {
            **_RUN,
            "order_id": S,
            "signal_id": S,
            "config_version": S,
            "instrument_id": U32,
            "purpose": S,
            "side": S,
            "type": S,
            "qty": I64,
            "limit_price": F64,
            "created_ts": U64,
            "status": S,
            "filled_qty": I64,
            "avg_price": F64,
            "reason": S,
        },
        provenance=False,
    ),
    _t(
        "fills",
        "one fill of one order",
        "Executions: price in premium points, quantity, fee, and where the price came from "
        "(book: walking the visible book; limit: a resting limit; trigger_trade / last_trade: no "
        "book on that side; cash_settlement: intrinsic value at expiration).",
        {
            **_RUN,
            "fill_id": S,
            "order_id": S,
            "signal_id": S,
            "config_version": S,
            "instrument_id": U32,
            "ts": U64,
            "side": S,
            "price": F64,
            "qty": I64,
            "fee": F64,
            "liquidity": S,
        },
        provenance=False,
    ),
    _t(
        "positions",
        "one closed position (one signal's trade)",
        "Round trips: entry and exit price and time, exit reason (stop, target, time_stop, "
        "session_end, expiration), gross P&L ($20 per point), fees and net P&L.",
        {
            **_RUN,
            "position_id": S,
            "signal_id": S,
            "config_version": S,
            "instrument_id": U32,
            "raw_symbol": S,
            "side": S,
            "qty": I64,
            "entry_ts": U64,
            "entry_price": F64,
            "exit_ts": U64,
            "exit_price": F64,
            "exit_reason": S,
            "gross_pnl": F64,
            "fees": F64,
            "net_pnl": F64,
        },
        provenance=False,
    ),
    _t(
        "pnl_daily",
        "one trade date of one algorithm in one run",
        "Daily (not cumulative) trading results and the account after the day: trades, wins, "
        "losses, gross, fees, net P&L, equity at the end, drawdown from the running peak. "
        "`signals` counts signals, `episodes` the flows they form (the unit of evidence); "
        "`orders` counts entries decided, not those skipped as `same_episode`.",
        {
            **_RUN,
            "config_version": S,
            "signals": I64,
            "orders": I64,
            "episodes": I64,
            "rejected": I64,
            "trades": I64,
            "wins": I64,
            "losses": I64,
            "gross_pnl": F64,
            "fees": F64,
            "net_pnl": F64,
            "equity_end": F64,
            "drawdown": F64,
        },
        provenance=False,
    ),
]


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _t("mbo", "one MBO record", "Market-by-order records (A/C/M/R/T/F/N), as received.", _MBO),
        _t(
            "trades",
            "one trade (the aggressor's T record, or one record of the trades/tbbo schemas)",
            "Trades with the aggressor side: B buy, A sell, N none. Volume counts from here only.",
            {
                "ts_recv": U64,
                "ts_event": U64,
                "instrument_id": U32,
                "price": I64,
                "size": U32,
                "side": S,
                "flags": U8,
                "sequence": U32,
                "schema": S,
            },
        ),
        _t(
            "instruments",
            "one instrument on one trade date (point in time: the definition in force that day)",
            "Instrument master from definition records; strike and tick as fixed-point 1e-9.",
            {
                "instrument_id": U32,
                "raw_symbol": S,
                "asset": S,
                "group": S,
                "security_type": S,
                "instrument_class": S,
                "strike_price": I64,
                "strike": F64,
                "expiration": U64,
                "underlying": S,
                "underlying_id": U32,
                "min_price_increment": I64,
                "display_factor": I64,
                "contract_multiplier": I32,
                "unit_of_measure_qty": I64,
                "tick_rule": U8,
                "currency": S,
                "exchange": S,
                "security_update_action": S,
                "ts_event": U64,
                "ts_recv": U64,
            },
        ),
        _t(
            "statistics",
            "one statistics record",
            "Every statistics record as published (all stat types).",
            {
                "ts_recv": U64,
                "ts_event": U64,
                "ts_ref": U64,
                "instrument_id": U32,
                "stat_type": U16,
                "price": I64,
                "quantity": I64,
                "sequence": U32,
                "ts_in_delta": I32,
                "channel_id": U16,
                "update_action": U8,
                "stat_flags": U8,
            },
        ),
        _t(
            "open_interest",
            "one open-interest publication (stat_type 9) for one instrument",
            "Open interest, published once a day for the previous session (ts_ref). Use it "
            "point in time: only rows with ts_recv before the decision time.",
            {
                "ts_recv": U64,
                "ts_event": U64,
                "ts_ref": U64,
                "instrument_id": U32,
                "quantity": I64,
                "stat_flags": U8,
            },
        ),
        _t(
            "settlements",
            "one settlement-price publication (stat_type 3) for one instrument",
            "Settlement prices; stat_flags bit 0 set = final, else preliminary.",
            {
                "ts_recv": U64,
                "ts_event": U64,
                "ts_ref": U64,
                "instrument_id": U32,
                "price": I64,
                "stat_flags": U8,
            },
        ),
        _t(
            "bbo",
            "one top-of-book record (mbp-1, tbbo, bbo-1s, bbo-1m)",
            "Top of book; `schema` says which feed.",
            {
                "ts_recv": U64,
                "ts_event": U64,
                "instrument_id": U32,
                "schema": S,
                "price": I64,
                "size": U32,
                "action": S,
                "side": S,
                "flags": U8,
                "sequence": U32,
                "bid_px": I64,
                "ask_px": I64,
                "bid_sz": U32,
                "ask_sz": U32,
                "bid_ct": U32,
                "ask_ct": U32,
            },
        ),
        _t(
            "ohlcv",
            "one bar",
            "OHLCV bars; `schema` gives the interval (ohlcv-1s, -1m, -1h, -1d, -eod).",
            {
                "ts_event": U64,
                "instrument_id": U32,
                "schema": S,
                "open": I64,
                "high": I64,
                "low": I64,
                "close": I64,
                "volume": U64,
            },
        ),
        _t(
            "status",
            "one trading-status record",
            "Trading phase changes (pre-open, open, halt...).",
            {
                "ts_recv": U64,
                "ts_event": U64,
                "instrument_id": U32,
                "action": U16,
                "reason": U16,
                "trading_event": U16,
                "is_trading": S,
                "is_quoting": S,
                "is_short_sell_restricted": S,
            },
        ),
        _t(
            "dq_results",
            "one expectation evaluated on one validated batch",
            "Great Expectations results of every published batch.",
            {
                "run_id": S,
                "validated_at": pl.Datetime("us", "UTC"),
                "dataset": S,
                "source_file": S,
                "suite": S,
                "expectation": S,
                "column": S,
                "success": B,
                "element_count": I64,
                "unexpected_count": I64,
                "unexpected_percent": F64,
                "partial_unexpected": S,
                "batch_success": B,
            },
            provenance=False,
        ),
        _t(
            "ingest_log",
            "one raw file handled by one ingest run",
            "What every ingest did with every file: loaded (rows added per table, and "
            "`duplicates`: rows the lake already held from overlapping files), or why not.",
            {
                "run_id": S,
                "ingested_at": pl.Datetime("us", "UTC"),
                "source_file": S,
                "raw_path": S,
                "sha256": S,
                "dataset": S,
                "schema": S,
                "dbn_version": U8,
                "status": S,
                "reason": S,
                "rows": S,
                "duplicates": S,
                "dates": S,
            },
            provenance=False,
        ),
        _t(
            "cost_ledger",
            "one cost event (quote, spend, fee) in USD",
            "Every data-cost quote and spend, and fees; the budget gate's decisions.",
            {
                "entry_id": S,
                "ts": pl.Datetime("us", "UTC"),
                "month": S,
                "entry_type": S,
                "category": S,
                "amount_usd": F64,
                "status": S,
                "decision": S,
                "reason": S,
                "dataset": S,
                "schema": S,
                "symbols": S,
                "stype_in": S,
                "range_start": S,
                "range_end": S,
                "record_count": I64,
                "billable_bytes": I64,
                "request_id": S,
            },
            provenance=False,
        ),
        _t(
            "pressure_windows",
            "one option instrument in one 5-minute window that saw at least one trade",
            "Aggressor-signed option flow per window (FlowEngine), with the contract keys, the "
            "underlying future's price at the window's end and delta-signed volume. Recomputed "
            "from the raw zone when the raw files of its date change (source_sha).",
            _WINDOW_COLS,
        ),
        _t(
            "option_flow_daily",
            "one option (root, expiration, strike, right) on one trade date",
            "Rollup of pressure_windows over the session: the day's signed volume and premium.",
            _ROLLUP_COLS,
        ),
        _t(
            "engine_runs",
            "one FlowEngine run over the raw files of one trade date",
            "What the engine read and produced: records, trades, windows, late trades, book "
            "anomalies and hidden fills, so a day's windows can be audited and kept fresh.",
            {
                "run_at": pl.Datetime("us", "UTC"),
                "engine_version": S,
                "source_files": S,
                "records": I64,
                "option_trades": I64,
                "underlying_trades": I64,
                "late_trades": I64,
                "windows": I64,
                "hidden_fills": I64,
                "book_anomalies": S,
                "seconds": F64,
                "detectors": S,
            },
        ),
        _t(
            "baselines",
            "one baseline key (a bucket or an instrument) for judging one session",
            "Mean and floored sample std of window metrics over the previous N sessions (never "
            "the session judged); `sessions_used` lists them; `has_baseline` false below the "
            "minimum sample count.",
            {
                "kind": S,
                "moneyness_bucket": S,
                "dte_bucket": S,
                "right": S,
                "time_bucket": I32,
                "instrument_id": U32,
                "n": I64,
                "sessions_used": S,
                **{f"{s}_{m}": F64 for m in _BASELINE_METRICS for s in ("mean", "std")},
                "has_baseline": B,
                "data_quality": F64,
                "lookback_sessions": I32,
                "built_at": pl.Datetime("us", "UTC"),
            },
            provenance=False,
        ),
        _t(
            "signals",
            "one signal of one algorithm (v1 or v3) on one trade date",
            "Detector output with a stable contract: the option, the aggressor direction in it, "
            "the view on the underlying, the window, confidence, tier and the features (JSON). "
            "`episode_id` groups the signals of one flow (same option or coordinated strikes, "
            "same view, consecutive windows; docs: ifd_core/analysis/episodes.py): evidence is "
            "counted per episode, see the `signal_episodes` view.",
            {
                "signal_id": S,
                "algo": S,
                "config_version": S,
                "instrument_id": U32,
                "raw_symbol": S,
                "root": S,
                "expiration": pl.Date,
                "expiration_ts": U64,
                "strike": F64,
                "option_type": S,
                "direction": S,
                "view": S,
                "window_start": U64,
                "window_end": U64,
                "decision_ts": U64,
                "confidence": F64,
                "tier": S,
                "underlying_id": U32,
                "underlying_price": F64,
                "volume": I64,
                "premium": F64,
                "features": S,
                "detected_at": pl.Datetime("us", "UTC"),
                "episode_id": S,
            },
        ),
        _t(
            "signal_outcomes",
            "one signal labelled once (triple barrier on the underlying future)",
            "Whether the underlying moved `barrier_points` in the signal's view before moving "
            "as much against it, within `horizon_s` of the decision: correct, incorrect, neutral "
            "(neither barrier by the horizon) or unresolved (the data does not reach the horizon).",
            {
                "signal_id": S,
                "algo": S,
                "view": S,
                "decision_ts": U64,
                "underlying_id": U32,
                "ref_price": F64,
                "barrier_points": F64,
                "horizon_s": I64,
                "label": S,
                "resolved_ts": U64,
                "move_at_horizon": F64,
                "max_favorable": F64,
                "max_adverse": F64,
                "price_source": S,
                "labelled_at": pl.Datetime("us", "UTC"),
                "episode_id": S,
            },
        ),
        _t(
            "underlying_ticks",
            "one last-trade tick of an underlying future from Interactive Brokers",
            "The NQ future's trades as IB's market data reports them (`ifd ib record-underlying`): "
            "the labeller's prices after the lake's Databento trades of the underlying end. "
            "`ts_event` is IB's receive time (IB sends no exchange timestamp); price in points.",
            {
                "ts_event": U64,
                "instrument_id": U32,
                "price": F64,
                "size": F64,
                "source": S,
            },
            provenance=False,
        ),
        _t(
            "massive_option_trades",
            "one QQQ or NDX options trade from Massive, signed by the quote in force",
            "Equity-index options trades from Massive (formerly Polygon.io; optional, "
            "`IFD_MASSIVE__API_KEY`) for the cross-asset confirmation of v3 episodes: each trade "
            "with the bid and ask in force at its SIP time and its aggressor (B at/above the ask, "
            "S at/below the bid, N otherwise). `origin` is massive; `source_sha` hashes the "
            "answers the fetch was built from. Prices in USD per share.",
            {
                "underlying": S,
                "ticker": S,
                "expiration": pl.Date,
                "strike": F64,
                "right": S,
                "shares_per_contract": F64,
                "ts": U64,
                "sequence": I64,
                "exchange": I32,
                "correction": I32,
                "price": F64,
                "size": F64,
                "premium": F64,
                "bid": F64,
                "ask": F64,
                "quote_ts": U64,
                "aggressor": S,
            },
        ),
        _t(
            "cross_asset_confirmations",
            "one v3 signal episode on one trade date",
            "The QQQ/NDX options flow in the minutes of each v3 episode (Massive, optional; "
            "jobs/cross_asset.py): premium bullish (calls bought, puts sold), bearish (puts "
            "bought, calls sold) and unsigned, the same-direction and opposite premium relative "
            "to the episode's view, and `confirmation` = same / (same + opposite). Stored beside "
            "the signals; it changes no signal. `source_sha` hashes the fetches it read.",
            {
                "episode_id": S,
                "algo": S,
                "view": S,
                "start_ns": U64,
                "end_ns": U64,
                "trades": I64,
                "bullish_premium": F64,
                "bearish_premium": F64,
                "unsigned_premium": F64,
                "same_premium": F64,
                "opposite_premium": F64,
                "net_premium": F64,
                "confirmation": F64,
                "underlyings": S,
            },
        ),
        _t(
            "gaps",
            "one disconnect of the live feed",
            "Every live-feed gap [start_ns, end_ns) in exchange time (last ts_event before the "
            "drop, first new ts_event after the reconnect) and how it was closed: "
            "recovered_replay (intraday replay, duplicates at the seam removed), backfilled "
            "(Historical, behind the budget gate), unrecovered or skipped_budget (windows that "
            "overlap it are marked incomplete).",
            {
                "run_id": S,
                "gap_id": I64,
                "start_ns": U64,
                "end_ns": U64,
                "disconnected_at": pl.Datetime("us", "UTC"),
                "reconnected_at": pl.Datetime("us", "UTC"),
                "reason": S,
                "status": S,
                "replay_start_ns": U64,
                "duplicates_removed": I64,
                "attempts": I64,
                "backfill_records": I64,
                "detail": S,
            },
        ),
        _t(
            "incidents",
            "one episode of one incident kind (opened, and resolved when it ends)",
            "Operational incidents of the live path: feed staleness (no record or heartbeat for "
            "N seconds in session), consumer stalls (backpressure on the feed), failed data "
            "quality on a micro-batch, gaps left unrecovered. One row per episode and state.",
            {
                "run_id": S,
                "kind": S,
                "state": S,
                "severity": S,
                "opened_at": pl.Datetime("us", "UTC"),
                "resolved_at": pl.Datetime("us", "UTC"),
                "detail": S,
            },
            provenance=False,
        ),
        _t(
            "signal_latency",
            "one signal emitted by the live path",
            "Timing of each live signal: the triggering record's ts_event and ts_recv, its local "
            "receive time (the oldest record of the chunk it came in: an upper bound on the "
            "platform's own latency) and the emit time; decision latency = emit - local receive.",
            {
                "run_id": S,
                "signal_id": S,
                "algo": S,
                "trigger_ts_event": U64,
                "trigger_ts_recv": U64,
                "local_recv_ns": I64,
                "emit_ns": I64,
                "decision_latency_ns": I64,
                "feed_latency_ns": I64,
                "exchange_to_signal_ns": I64,
                "window_close_latency_ns": I64,
            },
            provenance=False,
        ),
        _t(
            "rollout_events",
            "one decision of the rollout controller",
            "The append-only history of the one rollout controller (docs/algorithms.md §16): every "
            "stage change (promote, demote, rollback, halt), every held review, with the rules "
            "that passed or failed and their values (JSON), the evidence, config version and "
            "operator. The current stage is the latest row (view rollout_state).",
            {
                "event_id": S,
                "ts": pl.Datetime("us", "UTC"),
                "data_ts": U64,
                "challenger": S,
                "incumbent": S,
                "action": S,
                "from_stage": S,
                "to_stage": S,
                "share": I64,
                "rules": S,
                "reason": S,
                "operator": S,
                "config_version": S,
                "run_id": S,
            },
            provenance=False,
        ),
        _t(
            "barchart_chain",
            "one option (expiration, strike, right) of one root in Barchart's chain of one date",
            "Barchart OnDemand's options chain (getFuturesOptions), an optional cross-check of "
            "Databento's open interest and settlements (docs/operations.md, \"Barchart OnDemand "
            '(optional)"): open interest, volume and settlement per strike as Barchart served '
            "them, origin 'barchart'. One file per root and date; a re-fetch replaces it.",
            {
                "root": S,
                "symbol": S,
                "expiration": pl.Date,
                "strike": F64,
                "right": S,
                "open_interest": I64,
                "volume": I64,
                "settlement": F64,
                "origin": S,
            },
            provenance=False,
        ),
        _t(
            "alerts",
            "one state change of one alert episode",
            "Alert episodes per rule and subject, deduplicated: FIRING when a condition starts, "
            "ESCALATED when it reaches the critical level, RESOLVED when it ends; the value and "
            "threshold behind each change (docs/operations.md §Health, SLIs and alerts).",
            {
                "alert_id": S,
                "episode_id": S,
                "rule": S,
                "subject": S,
                "state": S,
                "severity": S,
                "value": F64,
                "threshold": F64,
                "ts": pl.Datetime("us", "UTC"),
                "detail": S,
                "run_id": S,
            },
            provenance=False,
        ),
        *_LEDGER,
    ]
}

MARKET_TABLES = (
    "mbo",
    "trades",
    "instruments",
    "statistics",
    "open_interest",
    "settlements",
    "bbo",
    "ohlcv",
    "status",
)


def conform(table: str, df: pl.DataFrame) -> pl.DataFrame:
    """Cast and order ``df`` to the table's schema; a missing or extra column is a bug, so raise."""
    schema = TABLES[table].schema
    missing = set(schema) - set(df.columns)
    extra = set(df.columns) - set(schema)
    if missing or extra:
        raise ValueError(f"{table}: missing columns {sorted(missing)}, extra {sorted(extra)}")
    return df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
