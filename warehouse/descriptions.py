"""What every view, column and macro of the catalog means: the one description IFD's docs share.

The catalog carries it as DuckDB comments (``COMMENT ON VIEW`` / ``COMMENT ON COLUMN``, applied by
``apply_comments`` after every migration), so ``duckdb_columns()``, ``information_schema`` and
notebook tools explain the data; warehouse/README.md and ``ifd sql --help`` render from it too.
Lake tables are described in ``warehouse/tables.py`` (table, grain) and here (columns); the views
that are not tables (joins, rollups, current state, costs) are described here in full.

A column's meaning is looked up in ``TABLE_COLUMNS[table]`` first (a name that means something
else in that table), then in ``COLUMNS`` (a name that means the same wherever it appears); a view
over other views inherits their columns' meanings. A test fails when a column has none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import duckdb

from warehouse.decoded import DECODED, RAW, view_name
from warehouse.tables import TABLES

NS_UTC = "integer nanoseconds since the Unix epoch, UTC"
FIXED = "DBN fixed-point integer: divide by 1e9 for the price in index points"

# ----------------------------------------------------------------------------------- columns
COLUMNS: dict[str, str] = {
    # provenance and keys
    "date": "CME Globex trade date (a session opening at 18:00 New York belongs to the next date).",
    "origin": "Where the row's data came from: synthetic (simulated, SYNTHETIC), replay, "
    "historical, live or backfill.",
    "source_sha": "First 16 hex digits of the SHA-256 of the raw file(s) the row was built from "
    "(lineage; a change of the raw files recomputes derived rows).",
    "run_id": "Id of the run (ingest, detection, backtest, paper or live session) that wrote the "
    "row.",
    "instrument_id": "Databento instrument id (numeric, per publisher; look up instruments for "
    "its symbol).",
    "underlying_id": "Instrument id of the option's underlying future.",
    "raw_symbol": "The exchange's symbol of the instrument (e.g. an NQ option's CME code).",
    "root": "Option root / trading class (the definition's asset, e.g. QN1, Q3A, NQ).",
    "right": "Option right: C call, P put.",
    "strike": "Strike price in index points.",
    "expiration": f"Expiration instant, {NS_UTC}.",
    "algo": "Detector / algorithm: v3 (IFD v3) or v1 (Dead Simple v1).",
    "mode": "How the run traded: backtest, paper, shadow or ib (real broker).",
    "config_version": "Hash of the settings the signal or trade was made with (traces P&L to "
    "its parameters).",
    "signal_id": "Stable signal id: hash of algorithm, instrument and window start.",
    "episode_id": "Episode the signal belongs to (one flow: same option or coordinated strikes, "
    "same view, consecutive windows); NULL for signals detected before episodes existed.",
    "engine_version": "FlowEngine version that computed the row (bumped when windows would "
    "change for the same records).",
    # DBN record header and common record fields
    "ts_recv": f"Databento capture-server receive time, {NS_UTC}.",
    "ts_event": f"Exchange (matching-engine) event time, {NS_UTC}.",
    "ts_in_delta": "Exchange send time minus Databento receive time, nanoseconds (DBN).",
    "ts_ref": f"Reference time the statistic applies to (e.g. the session), {NS_UTC}.",
    "publisher_id": "Databento publisher id (dataset and venue).",
    "channel_id": "Exchange channel the record came on.",
    "sequence": "Exchange message sequence number.",
    "flags": "DBN flags bit field (128 last record of an event, 64 top of book, 32 snapshot, "
    "16 MBP, 8 bad ts_recv, 4 maybe bad book).",
    "stat_flags": "Statistic flags bit field (DBN); for settlements bit 0 set = final.",
    "schema": "Databento schema the row came from.",
    "dataset": "Databento dataset (e.g. GLBX.MDP3).",
    "source_file": "Path of the raw file as given to ingest.",
    # flow windows (ifd_core/analysis/pressure_windows.py, docs/algorithms.md §4)
    "window_start": f"Start of the 5-minute event-time window, {NS_UTC}.",
    "window_end": f"End (exclusive) of the 5-minute window, {NS_UTC}.",
    "buy_volume": "Contracts traded with a buyer as aggressor (side B).",
    "sell_volume": "Contracts traded with a seller as aggressor (side A).",
    "unsigned_volume": "Contracts traded without an aggressor side (N).",
    "volume": "All contracts traded: buy + sell + unsigned.",
    "buy_trades": "Number of trades with a buyer as aggressor.",
    "sell_trades": "Number of trades with a seller as aggressor.",
    "unsigned_trades": "Number of trades without an aggressor side.",
    "trades": "Number of trades: buy + sell + unsigned.",
    "buy_premium": "Premium of buyer-initiated trades, USD (price x size x $20 multiplier).",
    "sell_premium": "Premium of seller-initiated trades, USD (price x size x $20 multiplier).",
    "max_print": "Largest single trade, contracts.",
    "large_prints": "Trades of at least 50 contracts (large prints).",
    "large_buy_prints": "Large prints (>= 50 contracts) with a buyer as aggressor.",
    "large_sell_prints": "Large prints (>= 50 contracts) with a seller as aggressor.",
    "vwap": "Volume-weighted average trade price, index points.",
    "first_trade_ts": f"Time of the first trade, {NS_UTC}.",
    "last_trade_ts": f"Time of the last trade, {NS_UTC}.",
    "imbalance": "(buy_volume - sell_volume) / (buy_volume + sell_volume), in [-1, 1]; 0 when "
    "nothing was signed.",
    "buy_share": "buy_volume / (buy_volume + sell_volume); 0.5 when nothing was signed.",
    "log_ratio": "ln((buy_volume + 1) / (sell_volume + 1)): finite, symmetric pressure.",
    "pressure_ratio": "Legacy buy/sell volume ratio, capped at 100 (never infinite); 1 when "
    "nothing was signed.",
    "dominant_side": "BUY when imbalance > 0.2, SELL when < -0.2, else NEUTRAL.",
    "delta_volume": "Sum of sign x size x Black-76 delta per trade: delta-equivalent contracts "
    "of the underlying (positive = bullish).",
    "delta_unknown_volume": "Signed contracts whose delta could not be computed (no implied "
    "volatility or no underlying price).",
    "underlying_price": "Last trade price of the underlying future at the window's end, index "
    "points.",
    "confidence": "Confidence in [0, 1].",
    # signals and outcomes
    "decision_ts": f"When the decision could be made: window end + watermark grace, {NS_UTC}.",
    "view": "View on the underlying: BULLISH or BEARISH.",
    "label": "Triple-barrier outcome: correct, incorrect, neutral (neither barrier within the "
    "horizon) or unresolved (the data end first).",
    "ref_price": "Underlying's last trade at or before decision_ts, index points.",
    "barrier_points": "Barrier distance in index points (setting labels.barrier_points).",
    "horizon_s": "Labelling horizon in seconds after decision_ts (setting labels.horizon_s).",
    "resolved_ts": f"When a barrier was hit (NULL if none), {NS_UTC}.",
    "move_at_horizon": "Underlying's move in the signal's view at the horizon (or the last "
    "price seen), index points.",
    "max_favorable": "Largest move in the signal's view up to the resolution, index points.",
    "max_adverse": "Largest move against the signal's view up to the resolution, index points.",
    "price_source": "Which prices labelled it: databento, ib (reference price from IB's "
    "ticks) or databento+ib (IB's ticks continued the path).",
    # trading ledger
    "order_id": "IFD's order id.",
    "side": "Side: BUY or SELL.",
    "qty": "Quantity, contracts.",
    "fee": "Commission and exchange fees of the fill, USD.",
    "fees": "Commission and exchange fees, USD.",
    "gross_pnl": "Gross P&L, USD ($20 per premium point per contract).",
    "net_pnl": "Net P&L, USD: gross_pnl - fees.",
    "reason": "Why (free text; empty when nothing to say).",
    "status": "Status of the row (values: see the table's description).",
    "detail": "Human-readable detail.",
    "severity": "Severity: warning or critical.",
    "state": "State of the episode at this row.",
    "ts": "When it happened, UTC.",
}

F = "from the window's FlowEngine (docs/algorithms.md §4)"
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "mbo": {
        "order_id": "Exchange order id.",
        "action": "Event: A add, C cancel, M modify, R clear book, T trade, F fill, N none.",
        "side": "Side of the order: B bid, A ask, N none (for T: the aggressor).",
        "price": f"Order price, {FIXED}.",
        "size": "Order size (for T and F: the traded quantity), contracts.",
    },
    "trades": {
        "price": f"Trade price, {FIXED}.",
        "size": "Trade size, contracts.",
        "side": "Aggressor side: B buy, A sell, N none.",
        "schema": "Source schema: mbo (the T record), trades or tbbo.",
    },
    "instruments": {
        "raw_symbol": "The exchange's symbol of the instrument.",
        "asset": "Product / root code (e.g. NQ, QN1).",
        "group": "Security group (exchange product group).",
        "security_type": "Security type (FUT, OOF option on future, ...).",
        "instrument_class": "Class: C call, P put, F future, S spread, ...",
        "strike_price": f"Strike, {FIXED}.",
        "strike": "Strike in index points (strike_price / 1e9).",
        "expiration": f"Last trade / expiration instant, {NS_UTC}.",
        "underlying": "Symbol of the underlying.",
        "underlying_id": "Instrument id of the underlying.",
        "min_price_increment": f"Tick size, {FIXED}.",
        "display_factor": "Display factor (fixed-point 1e-9) to turn prices into display prices.",
        "contract_multiplier": "Contract multiplier (instruments per contract).",
        "unit_of_measure_qty": "Contract size in the unit of measure, fixed-point 1e-9.",
        "tick_rule": "Tick rule id (variable tick sizes).",
        "currency": "Price currency.",
        "exchange": "Exchange (MIC) of the instrument.",
        "security_update_action": "A added, M modified, D deleted.",
        "ts_event": f"Publication time of the definition, {NS_UTC}.",
    },
    "statistics": {
        "stat_type": "Statistic type (DBN StatType: 1 opening price, 3 settlement price, 4 "
        "trading-session low, 5 high, 6 cleared volume, 9 open interest, ...).",
        "price": f"Statistic's price (when it has one), {FIXED}.",
        "quantity": "Statistic's quantity (when it has one).",
        "channel_id": "Exchange channel the record came on.",
        "update_action": "1 new, 2 delete.",
    },
    "open_interest": {"quantity": "Open interest, contracts (as of ts_ref's session)."},
    "settlements": {"price": f"Settlement price, {FIXED}."},
    "bbo": {
        "price": f"Price of the trade or update that triggered the record, {FIXED}.",
        "size": "Size of the trade or update, contracts.",
        "action": "Event: A add, C cancel, M modify, T trade, ...",
        "side": "Side of the event: B bid, A ask, N none.",
        "schema": "Feed: mbp-1, tbbo, bbo-1s or bbo-1m.",
        "bid_px": f"Best bid price, {FIXED}.",
        "ask_px": f"Best ask price, {FIXED}.",
        "bid_sz": "Size at the best bid, contracts.",
        "ask_sz": "Size at the best ask, contracts.",
        "bid_ct": "Orders at the best bid.",
        "ask_ct": "Orders at the best ask.",
    },
    "ohlcv": {
        "ts_event": f"Bar open time, {NS_UTC}.",
        "schema": "Bar interval: ohlcv-1s, -1m, -1h, -1d or -eod.",
        "open": f"Open, {FIXED}.",
        "high": f"High, {FIXED}.",
        "low": f"Low, {FIXED}.",
        "close": f"Close, {FIXED}.",
        "volume": "Contracts traded in the bar.",
    },
    "status": {
        "action": "Status action (DBN StatusAction: 0 none, 1 pre-open, 3 trading, 7 halt, ...).",
        "reason": "Status reason code (DBN StatusReason).",
        "trading_event": "Trading event code (DBN TradingEvent).",
        "is_trading": "Y trading, N not trading, ~ not available.",
        "is_quoting": "Y quoting, N not quoting, ~ not available.",
        "is_short_sell_restricted": "Y restricted, N not, ~ not available.",
    },
    "dq_results": {
        "date": "UTC day the batch was validated.",
        "run_id": "Id of the ingest run (or Barchart cross-check run) that validated the batch.",
        "validated_at": "When the batch was validated, UTC.",
        "dataset": "Which data set of the batch was validated (e.g. mbo, definition; "
        "barchart_check: Databento's open interest and settlements against Barchart's chain).",
        "source_file": "Name of the raw file as given to ingest; barchart:<root>:<date> for the "
        "Barchart cross-check.",
        "suite": "Expectation suite (ifd_<dataset>).",
        "expectation": "Great Expectations expectation type.",
        "column": "Column the expectation checks (empty for table-level checks).",
        "success": "Whether this expectation passed.",
        "element_count": "Rows checked.",
        "unexpected_count": "Rows that failed the expectation.",
        "unexpected_percent": "unexpected_count as a percent of the rows.",
        "partial_unexpected": "Up to 10 failing values, JSON.",
        "batch_success": "Whether every expectation of the batch passed (the batch was published).",
    },
    "ingest_log": {
        "date": "UTC day of the ingest.",
        "ingested_at": "When the file was handled, UTC.",
        "raw_path": "Where the raw zone keeps the file (raw/<dataset>/<schema>/<sha16>-<name>).",
        "sha256": "SHA-256 of the raw file.",
        "schema": "Databento schema of the file (mixed when several).",
        "dbn_version": "DBN format version of the file.",
        "status": "loaded, quarantined or refused.",
        "reason": "Why not loaded; for loaded files the records of schemas IFD does not keep "
        "(JSON), else empty.",
        "rows": "Rows added per lake table, JSON object.",
        "duplicates": "Rows per table the lake already held from overlapping files, JSON object.",
        "dates": "Trade dates the file covers, JSON list.",
    },
    "cost_ledger": {
        "date": "UTC day of ts.",
        "entry_id": "Entry id (deterministic for booked costs, so a re-run does not double).",
        "ts": "When the entry was booked, UTC.",
        "month": "Ledger month, YYYY-MM (UTC).",
        "entry_type": "subscription_fee, live_usage, historical_quote, historical_spend, "
        "backfill, broker_commission or exchange_fee.",
        "category": "What it paid for (e.g. historical, live, a subscription's name, the "
        "algorithm or mode of a fee).",
        "amount_usd": "Amount, USD (a quote's estimate for historical_quote).",
        "status": "quoted, spent, failed, accrued or charged.",
        "decision": "Budget gate's verdict: approve, require_approval, defer or deny.",
        "reason": "The budget gate's reason, or why the entry exists.",
        "schema": "Databento schema requested.",
        "symbols": "Symbols requested, comma-separated.",
        "stype_in": "Symbology of the symbols (raw_symbol, parent, ...).",
        "range_start": "Start of the requested range (ISO, UTC).",
        "range_end": "End (exclusive) of the requested range (ISO, UTC).",
        "record_count": "Records in the request (Databento's quote).",
        "billable_bytes": "Billable bytes (Databento's quote, or live usage).",
        "request_id": "Id tying a quote to its spend.",
    },
    "pressure_windows": {
        "right": "Option right: C call, P put.",
        "confidence": "Window's own confidence: min(trades / 20, 1) x |imbalance|.",
        "complete": "False when the window overlaps an unrecovered live-feed gap.",
        "buy_size_sq": "Sum of squared sizes of buyer-aggressive orders (a sweep's prints "
        "together): IFD v3 breadth; NULL in windows stored before engine-3.",
        "sell_size_sq": "Sum of squared sizes of seller-aggressive orders; NULL in windows "
        "stored before engine-3.",
    },
    "option_flow_daily": {
        "windows": "Windows of the day with trades in this option.",
        "vwap": "Volume-weighted average price over the day, index points.",
        "first_trade_ts": f"First trade of the day, {NS_UTC}.",
        "last_trade_ts": f"Last trade of the day, {NS_UTC}.",
        "max_print": "Largest single trade of the day, contracts.",
        "last_underlying_price": "Underlying's price at the end of the option's last window, "
        "index points.",
    },
    "engine_runs": {
        "run_at": "When the engine ran, UTC.",
        "source_files": "Raw files read, JSON list of names.",
        "records": "MBO records read.",
        "option_trades": "Option trades seen.",
        "underlying_trades": "Trades of the underlying futures seen.",
        "late_trades": "Trades that arrived after their window had closed (not counted).",
        "windows": "Pressure windows produced.",
        "hidden_fills": "Fills of orders not visible in the book (hidden liquidity).",
        "book_anomalies": "Order-book anomalies by kind, JSON object.",
        "seconds": "Wall time of the run, seconds.",
        "detectors": "Detectors run, comma-separated (v3, v1).",
        "source_sha": "Key of the raw files read (the day's windows are fresh while it matches).",
    },
    "baselines": {
        "date": "The session these baselines judge (built from the sessions before it).",
        "kind": "bucket (moneyness x days to expiry x right x time of day) or instrument.",
        "moneyness_bucket": "Moneyness band, (strike / underlying - 1) in percent (bucket kind).",
        "dte_bucket": "Days-to-expiry band: 0DTE, 1-2, 3-7, 8-45, beyond (bucket kind).",
        "right": "Option right, C or P (bucket kind).",
        "time_bucket": "Half hour of the New York day, 0-47 (bucket kind).",
        "instrument_id": "The instrument (instrument kind).",
        "n": "Windows in the sample.",
        "sessions_used": "Sessions the sample came from, comma-separated dates.",
        **{
            f"{s}_{m}": f"{'Mean' if s == 'mean' else 'Sample std (floored)'} of the window's {m}"
            + (" (ln(1 + volume))" if m == "log_volume" else "")
            + "."
            for m in ("log_volume", "buy_volume", "sell_volume", "imbalance")
            for s in ("mean", "std")
        },
        "has_baseline": "False below the minimum sample count: no baseline, not a made-up one.",
        "data_quality": "Share of the lookback's sessions the warehouse has windows for, 0-1.",
        "lookback_sessions": "Sessions in the lookback (setting baselines lookback).",
        "built_at": "When the baselines were built, UTC.",
    },
    "signals": {
        "expiration": "Option's expiration date.",
        "expiration_ts": f"Option's expiration instant, {NS_UTC}.",
        "option_type": "C call or P put.",
        "direction": "Aggressor direction in the option: BUY or SELL.",
        "window_start": f"Start of the window that triggered it, {NS_UTC}.",
        "window_end": f"End of the window that triggered it, {NS_UTC}.",
        "confidence": "Detector confidence in [0, 1] (v1: fixed map of its tier).",
        "tier": "Detector's tier (v3: by confidence; v1: EXTREME, VERY_HIGH, HIGH, MODERATE).",
        "underlying_price": "Underlying future's price at the window's end, index points.",
        "volume": "Contracts traded in the window.",
        "premium": "Premium traded in the window, USD.",
        "features": "Detector features behind the decision, JSON object (v1: `oi_source`, "
        "databento or barchart, where its open interest came from).",
        "detected_at": "When the detector wrote the signal, UTC.",
    },
    "signal_outcomes": {
        "decision_ts": f"Signal's decision time (barrier clock starts), {NS_UTC}.",
        "labelled_at": "When the label was computed, UTC.",
    },
    "underlying_ticks": {
        "ts_event": f"IB's receive time of the tick (IB sends no exchange time), {NS_UTC}.",
        "instrument_id": "Databento instrument id of the future the tick belongs to.",
        "price": "Last trade price, index points.",
        "size": "Last trade size, contracts.",
        "source": "Where the tick came from: ib.",
    },
    "massive_option_trades": {
        "date": "CME Globex trade date of the trade's SIP time (the lake's date rule).",
        "underlying": "Underlying ticker of the option: QQQ or NDX.",
        "ticker": "Massive's options ticker (O:<OCC symbol>).",
        "expiration": "Option's expiration date.",
        "strike": "Strike price, USD.",
        "shares_per_contract": "Shares (index units) per contract: the premium multiplier.",
        "ts": f"SIP timestamp of the trade, {NS_UTC}.",
        "sequence": "Massive's sequence number of the trade (per ticker).",
        "exchange": "Massive's exchange id of the trade.",
        "correction": "Massive's trade correction indicator (kept, not filtered).",
        "price": "Trade price per share, USD.",
        "size": "Trade size, contracts.",
        "premium": "price x size x shares_per_contract, USD.",
        "bid": "Bid in force at the trade (NULL: no quote in the lookback), USD.",
        "ask": "Ask in force at the trade (NULL: no quote in the lookback), USD.",
        "quote_ts": f"SIP timestamp of that quote, {NS_UTC}.",
        "aggressor": "B bought (at/above the ask), S sold (at/below the bid), N unsigned.",
        "origin": "Where the row came from: massive.",
        "source_sha": "First 16 hex digits of the SHA-256 of the fetch's answers (lineage).",
    },
    "cross_asset_confirmations": {
        "date": "CME Globex trade date of the episode.",
        "episode_id": "The v3 episode (signals.episode_id).",
        "algo": "Detector of the episode: v3.",
        "view": "The episode's view: BULLISH or BEARISH.",
        "start_ns": f"First minute counted (first window start, floored), {NS_UTC}.",
        "end_ns": f"End of the minutes counted (last window end, ceiled), {NS_UTC}.",
        "trades": "QQQ/NDX options trades in those minutes.",
        "bullish_premium": "Premium of calls bought and puts sold, USD.",
        "bearish_premium": "Premium of puts bought and calls sold, USD.",
        "unsigned_premium": "Premium of trades neither at/above the ask nor at/below the bid, USD.",
        "same_premium": "Premium in the episode's direction, USD.",
        "opposite_premium": "Premium against the episode's direction, USD.",
        "net_premium": "same_premium - opposite_premium, USD.",
        "confirmation": "same / (same + opposite); NULL when neither side traded.",
        "underlyings": "Underlyings whose options were read, comma-separated.",
        "origin": "Where the flow came from: massive.",
        "source_sha": "First 16 hex digits of the SHA-256 of the fetches' lineage keys read.",
    },
    "gaps": {
        "gap_id": "Number of the gap within the run.",
        "start_ns": f"Last ts_event before the drop, {NS_UTC}.",
        "end_ns": f"First ts_event after the reconnect, {NS_UTC}.",
        "disconnected_at": "Wall time the feed dropped, UTC.",
        "reconnected_at": "Wall time the feed came back, UTC.",
        "reason": "Why the feed dropped.",
        "status": "recovered_replay, backfilled, unrecovered or skipped_budget.",
        "replay_start_ns": f"Where the intraday replay started, {NS_UTC}.",
        "duplicates_removed": "Records seen twice at the seam and removed.",
        "attempts": "Recovery attempts.",
        "backfill_records": "Records backfilled from Historical.",
    },
    "incidents": {
        "date": "UTC day the incident opened.",
        "kind": "Incident kind: feed staleness, consumer stall, data quality, unrecovered gap.",
        "state": "opened or resolved.",
        "opened_at": "When the episode opened, UTC.",
        "resolved_at": "When it was resolved, UTC (NULL while open).",
    },
    "signal_latency": {
        "trigger_ts_event": f"Exchange time of the record that triggered the decision, {NS_UTC}.",
        "trigger_ts_recv": f"Databento capture time of that record, {NS_UTC}.",
        "local_recv_ns": f"Local receive time of the chunk it came in (its oldest record), "
        f"{NS_UTC}.",
        "emit_ns": f"When the signal was emitted, {NS_UTC}.",
        "decision_latency_ns": "emit - local receive, ns (the platform's own latency; SLO).",
        "feed_latency_ns": "local receive - Databento capture, ns (network and gateway).",
        "exchange_to_signal_ns": "emit - exchange event time, ns (reported, not budgeted).",
        "window_close_latency_ns": "emit - (window end + grace), ns.",
    },
    "rollout_events": {
        "date": "UTC day of the decision.",
        "event_id": "Event id.",
        "ts": "When the controller decided, UTC.",
        "data_ts": f"Data time the decision was made at, {NS_UTC}.",
        "challenger": "Algorithm being rolled out.",
        "incumbent": "Algorithm it would replace.",
        "action": "promote, demote, rollback, halt or hold (a review that changed nothing).",
        "from_stage": "Stage before.",
        "to_stage": "Stage after.",
        "share": "Challenger's share of the flow at to_stage, percent.",
        "rules": "Rules that passed or failed with their values, JSON.",
        "reason": "Why.",
        "operator": "Who decided (a person, or the controller).",
        "config_version": "Settings hash the decision was made with.",
        "run_id": "Run that made the decision.",
    },
    "barchart_chain": {
        "date": "Trade date of the chain (Barchart's price date; one session).",
        "root": "Barchart's option root the chain was asked for (setting barchart.root, e.g. NQ).",
        "symbol": "Barchart's option symbol: contract, strike, C or P (the pattern is inferred).",
        "expiration": "Option's expiration date, as Barchart gives it.",
        "open_interest": "Open interest as Barchart reports it, contracts (NULL: not given).",
        "volume": "Contracts traded in the session, as Barchart reports it (NULL: not given).",
        "settlement": "Settlement price in index points: Barchart's settlement field, else its "
        "last price when flagged settled ('s'); NULL when not settled.",
        "origin": "barchart (Barchart OnDemand's web API).",
    },
    "alerts": {
        "date": "UTC day of ts.",
        "alert_id": "Id of this state change.",
        "episode_id": "Alert episode (one condition from start to end).",
        "rule": "Alert rule.",
        "subject": "What the rule fired on (e.g. an algorithm, a feed).",
        "state": "FIRING, ESCALATED or RESOLVED.",
        "value": "Measured value behind the change.",
        "threshold": "Threshold it was compared with.",
        "ts": "When the state changed, UTC.",
    },
    "orders": {
        "purpose": "entry, stop, target, time_stop, session_end or expiration.",
        "type": "Order type: market or limit.",
        "limit_price": "Limit price, premium points (NULL for market orders).",
        "created_ts": f"When the order was decided, {NS_UTC}.",
        "status": "filled, partial, cancelled, rejected or skipped.",
        "filled_qty": "Contracts filled.",
        "avg_price": "Average fill price, premium points.",
        "reason": "Why rejected or skipped (risk, emergency stop, no liquidity, same_episode).",
    },
    "fills": {
        "fill_id": "Execution id (the broker's, stable across a reconnect).",
        "ts": f"Execution time, {NS_UTC}.",
        "price": "Fill price, premium points.",
        "liquidity": "Where the price came from: book, limit, trigger_trade, last_trade, "
        "cash_settlement (backtest), paper_quote or broker.",
    },
    "positions": {
        "position_id": "Position id.",
        "side": "Side of the entry: BUY or SELL.",
        "entry_ts": f"Entry fill time, {NS_UTC}.",
        "entry_price": "Entry price, premium points.",
        "exit_ts": f"Exit fill time, {NS_UTC}.",
        "exit_price": "Exit price, premium points.",
        "exit_reason": "stop, target, time_stop, session_end or expiration.",
    },
    "pnl_daily": {
        "signals": "Signals of the day.",
        "orders": "Entry orders decided (not those skipped as same_episode).",
        "episodes": "Episodes (flows) the signals form.",
        "rejected": "Entry orders rejected.",
        "trades": "Positions closed.",
        "wins": "Positions closed with net P&L > 0.",
        "losses": "Positions closed with net P&L <= 0.",
        "gross_pnl": "Gross P&L of the day, USD.",
        "fees": "Fees of the day, USD.",
        "net_pnl": "Net P&L of the day, USD.",
        "equity_end": "Account equity at the end of the day, USD.",
        "drawdown": "Drop of equity from its running peak, USD.",
    },
}


# ----------------------------------------------------------------------------------- views
@dataclass(frozen=True)
class View:
    """A catalog view that is not a lake table: what it is, the views it reads its columns'
    meanings from (in order), and the meanings of the columns it makes itself."""

    description: str
    inherits: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)


_COST = "cost_ledger entries counted once per entry_id"
VIEWS: dict[str, View] = {
    "trades_all": View(
        "Every trade row of every source (mbo T records, trades, tbbo): for audits; `trades` "
        "keeps one source per date and instrument.",
        ("trades",),
    ),
    "dq_summary": View(
        "One row per validated batch: run, dataset, file, whether it passed, expectations and "
        "how many failed.",
        ("dq_results",),
        {
            "expectations": "Expectations evaluated on the batch.",
            "failed": "Expectations that failed.",
            "validated_at": "When the batch was validated, UTC.",
        },
    ),
    "signals_with_outcomes": View(
        "Signals joined with their triple-barrier outcome (NULL outcome columns: not labelled "
        "yet).",
        ("signals", "signal_outcomes"),
    ),
    "signal_episodes": View(
        "One row per episode (one flow of signals); its outcome is the label of its first "
        "signal (the one the executor acts on). Evidence is counted here, not per signal.",
        ("signals", "signal_outcomes"),
        {
            "episode_id": "Episode id (NULL: a signal from before episodes, alone in its row).",
            "instruments": "Symbols of the options in the episode, sorted.",
            "instrument_ids": "Instrument ids of the options in the episode, sorted.",
            "option_type": "C or P (of the first signal).",
            "expiration": "Expiration date (of the first signal).",
            "view": "View on the underlying (of the first signal).",
            "direction": "Aggressor direction (of the first signal).",
            "first_window_start": f"Start of the episode's first window, {NS_UTC}.",
            "last_window_end": f"End of the episode's last window, {NS_UTC}.",
            "n_signals": "Signals in the episode.",
            "peak_confidence": "Highest confidence of its signals.",
            "total_volume": "Contracts traded over its signals' windows.",
            "first_signal_id": "The first signal (decision_ts, then signal_id).",
            "decision_ts": f"First signal's decision time, {NS_UTC}.",
            "label": "First signal's triple-barrier outcome.",
            "resolved_ts": f"When the first signal's barrier was hit, {NS_UTC}.",
        },
    ),
    "rollout_state": View(
        "Current rollout stage per challenger: its latest rollout_events row.",
        ("rollout_events",),
    ),
    "alerts_open": View(
        "Alert episodes not resolved: the latest state of each episode, FIRING or ESCALATED.",
        ("alerts",),
    ),
    "cost_daily": View(
        f"Cost per day, entry type and category ({_COST}).",
        ("cost_ledger",),
        {
            "amount": "Sum of amount_usd, USD.",
            "entries": "Ledger entries summed.",
            "cost_class": "data, trading or quote (NULL for other entry types).",
            "is_data_cost": "Counts against the monthly data budget.",
            "is_trading_cost": "Broker commission or exchange fee.",
        },
    ),
    "cost_monthly": View(
        "Costs per month: the budget dashboard (cost_monthly_vs_budget(budget) adds the budget).",
        ("cost_daily",),
        {
            "data_cost": "Data cost of the month (counts against the budget), USD.",
            "subscription_cost": "Subscription fees of the month, USD.",
            "marginal_data_cost": "Data cost without subscriptions, USD.",
            "trading_cost": "Broker commissions and exchange fees, USD.",
            "quoted": "Sum of Historical quotes (estimates, not spend), USD.",
            "first_date": "First day with an entry.",
            "last_date": "Last day with an entry.",
            "entries": "Ledger entries of the month.",
        },
    ),
    "cost_per_signal": View(
        "Data cost per actionable signal per month and algorithm (and 'all'); the month's data "
        "cost split by each algorithm's share of the records consumed. "
        "cost_per_signal_at(min_confidence) sets the confidence floor (here 0).",
        ("signals",),
        {
            "month": "Month, YYYY-MM.",
            "algo": "Algorithm, or all.",
            "actionable_signals": "Signals from real data at or above the confidence floor.",
            "synthetic_signals": "Signals from SYNTHETIC data (never actionable).",
            "records_consumed": "Records the algorithm's engine runs read.",
            "data_cost": "Its share of the month's data cost, USD.",
            "marginal_data_cost": "Its share of the data cost without subscriptions, USD.",
            "cost_per_signal": "data_cost / actionable_signals, USD.",
            "marginal_cost_per_signal": "marginal_data_cost / actionable_signals, USD.",
        },
    ),
    "cost_projection": View(
        "Month-end projection of data spend as of today (UTC): spent / elapsed days x days in "
        "the month; cost_projection_asof(d) for another day.",
        (),
        {
            "month": "Month, YYYY-MM.",
            "spent": "Data cost so far, USD.",
            "elapsed_days": "Days of the month elapsed (all of them for past months).",
            "days_in_month": "Days in the month.",
            "projection": "Projected data cost at month end, USD.",
        },
    ),
}

MACROS: dict[str, str] = {
    "instruments_asof": "instruments_asof(d): per instrument the definition in force on trade "
    "date d (the latest published on or before it).",
    "open_interest_asof": "open_interest_asof(t): per instrument the latest open interest "
    "published (ts_recv) at or before instant t (TIMESTAMPTZ); never from the future.",
    "cost_monthly_vs_budget": "cost_monthly_vs_budget(budget): cost_monthly's data cost against "
    "a monthly budget in USD: utilization and remaining.",
    "cost_per_signal_at": "cost_per_signal_at(min_confidence, through := date): cost_per_signal "
    "with a confidence floor, counting data through a date.",
    "cost_projection_asof": "cost_projection_asof(d): the month-end projection as of day d.",
}

BOOKKEEPING: dict[str, tuple[str, dict[str, str]]] = {
    "schema_migrations": (
        "Catalog migrations applied (warehouse/migrations.py).",
        {
            "version": "Migration number.",
            "name": "What it does.",
            "applied_at": "When it was applied.",
        },
    ),
    "catalog_meta": (
        "Catalog bookkeeping: the data root the views were made for, the comments' fingerprint.",
        {"key": "Setting name.", "value": "Its value."},
    ),
}


# ----------------------------------------------------------------------------------- lookup
def column_doc(table: str, column: str) -> str | None:
    """The meaning of ``column`` in the table or view ``table``; None when undescribed."""
    if table in TABLES:
        return TABLE_COLUMNS.get(table, {}).get(column) or COLUMNS.get(column)
    if table in VIEWS:
        view = VIEWS[table]
        if column in view.columns:
            return view.columns[column]
        for base in view.inherits:
            doc = column_doc(base, column)
            if doc:
                return doc
        return COLUMNS.get(column)
    if table in BOOKKEEPING:
        return BOOKKEEPING[table][1].get(column)
    return None


def _decoded_view(table: str) -> View:
    """``<table>_decoded``: the raw view's meanings, restated for the decoded values, and the
    raw integers under ``<column>_raw`` (warehouse/decoded.py)."""
    d = DECODED[table]
    cols: dict[str, str] = {}
    for c in d.fixed:
        raw = column_doc(table, c) or c
        meaning = raw.replace(f", {FIXED}.", ".").replace(" (fixed-point 1e-9)", "")
        meaning = meaning.replace(", fixed-point 1e-9.", ".")
        cols[c] = (
            f"{meaning.rstrip('.')}, as a decimal: {c}{RAW} / 1e9 (DOUBLE; NULL for DBN's "
            "undefined price)."
        )
        cols[c + RAW] = raw
    for c in d.instants:
        raw = column_doc(table, c) or c
        cols[c] = raw.replace(
            NS_UTC,
            f"TIMESTAMPTZ, UTC (microseconds: {c}{RAW} keeps the nanoseconds; NULL when undefined)",
        )
        cols[c + RAW] = raw
    return View(
        f"`{table}` for people: prices in points (DOUBLE) and instants as TIMESTAMPTZ under the "
        f"same names, the raw integers beside them as <column>{RAW}.",
        (table,),
        cols,
    )


VIEWS.update({view_name(t): _decoded_view(t) for t in DECODED})


def view_doc(name: str) -> str | None:
    """One line on what the view ``name`` holds (a lake table's description and grain)."""
    if name in TABLES:
        t = TABLES[name]
        return f"{t.description} Grain: {t.grain}."
    if name in VIEWS:
        return VIEWS[name].description
    return None


def catalog_names() -> list[str]:
    """Every view of the catalog, lake tables first (in their order), then the derived views."""
    return [*TABLES, *VIEWS]


def fingerprint() -> str:
    """Changes whenever any description does, so catalogs re-apply their comments."""
    blob = json.dumps(
        [
            {t: view_doc(t) for t in catalog_names()},
            COLUMNS,
            TABLE_COLUMNS,
            {k: [v.description, v.inherits, v.columns] for k, v in VIEWS.items()},
            MACROS,
            BOOKKEEPING,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _statements(kind: str, name: str, database: str, columns: list[str]) -> list[str]:
    """COMMENT statements for one view or table of ``database`` and its columns."""
    doc = view_doc(name) or (BOOKKEEPING[name][0] if name in BOOKKEEPING else None)
    if doc is None:
        return []
    target = f"{_ident(database)}.main.{_ident(name)}"
    out = [f"COMMENT ON {kind} {target} IS {_lit(doc)}"]
    for col in columns:
        cdoc = column_doc(name, col)
        if cdoc:
            out.append(f"COMMENT ON COLUMN {target}.{_ident(col)} IS {_lit(cdoc)}")
    return out


def _comment_all(con: duckdb.DuckDBPyConnection, database: str, only: str | None = None) -> int:
    rows = con.execute(
        """
        SELECT c.table_name, any_value(CASE WHEN v.view_name IS NULL THEN 'TABLE' ELSE 'VIEW' END),
               list(c.column_name ORDER BY c.column_index)
        FROM duckdb_columns() c
        LEFT JOIN duckdb_views() v
               ON v.database_name = c.database_name AND v.view_name = c.table_name
        WHERE c.database_name = $db AND NOT c.internal AND ($only IS NULL OR c.table_name = $only)
        GROUP BY c.table_name
        """,
        {"db": database, "only": only},
    ).fetchall()
    statements = [s for name, kind, cols in rows for s in _statements(kind, name, database, cols)]
    if statements:  # one call: hundreds of statements, each its own round trip otherwise
        con.execute(";\n".join(statements))
    return len(statements)


def apply_comments(con: duckdb.DuckDBPyConnection) -> int:
    """Comment every IFD view and its columns, the bookkeeping tables and the macros of the
    catalog ``con`` is attached to; returns the statements run.

    ``CREATE OR REPLACE VIEW`` drops a view's comments, so this runs after every migration."""
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    n = _comment_all(con, db)
    macros = con.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() "
        "WHERE database_name = ? AND function_type = 'table_macro' AND NOT internal",
        [db],
    ).fetchall()
    for (m,) in macros:
        if m in MACROS:
            con.execute(f"COMMENT ON MACRO TABLE {_ident(m)} IS {_lit(MACROS[m])}")
            n += 1
    return n


def comment_temp_view(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """The same comments on a connection's TEMP view ``name`` (``ifd sql`` pins lake tables to a
    snapshot with TEMP views that shadow the catalog's: they must explain the data too)."""
    return _comment_all(con, "temp", name)
