"""What a report table calls each column and how it writes its values: one place for all pages.

Frames keep their machine names (``win_rate``, ``net_pnl``: the names of the lake, the JSON and
the SQL); a page shows people "Win rate 62.5%" and "Net P&L $1,234.50". ``column_format`` looks
a column up in ``LABELS`` and, for a name not listed, derives both from the name (``*_pnl`` is
money, ``*_rate`` a share, ``n_*`` a count), so a new column reads sensibly before anyone lists
it. The header's tooltip is the column's meaning from the warehouse's one description
(warehouse/descriptions.py), where it has one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Literal

from warehouse.descriptions import COLUMNS as COLUMN_MEANINGS

Kind = Literal["auto", "text", "count", "percent", "usd", "ratio", "points", "seconds"]


@dataclass(frozen=True)
class ColumnFormat:
    label: str
    kind: Kind = "auto"


def _c(label: str, kind: Kind = "auto") -> ColumnFormat:
    return ColumnFormat(label, kind)


# Listed where the derived label or kind would be wrong or poor.
LABELS: dict[str, ColumnFormat] = {
    # accuracy and evidence (fractions 0-1 shown as percent)
    "accuracy": _c("Accuracy", "percent"),
    "ci_low": _c("Accuracy CI low (95%)", "percent"),
    "ci_high": _c("Accuracy CI high (95%)", "percent"),
    "accuracy_ci_low": _c("Accuracy CI low (95%)", "percent"),
    "accuracy_ci_high": _c("Accuracy CI high (95%)", "percent"),
    "neutral_share": _c("Neutral share", "percent"),
    "win_rate": _c("Win rate", "percent"),
    "pass_rate": _c("Pass rate", "percent"),
    "uptime_rth": _c("Uptime (RTH)", "percent"),
    "tick_coverage": _c("Tick coverage", "percent"),
    "utilization": _c("Budget used", "percent"),
    "confidence": _c("Confidence", "ratio"),
    "peak_confidence": _c("Peak confidence", "ratio"),
    "resolved": _c("Resolved", "count"),
    "correct": _c("Correct", "count"),
    "incorrect": _c("Incorrect", "count"),
    "neutral": _c("Neutral", "count"),
    "n_signals": _c("Signals", "count"),
    "n_episodes": _c("Episodes", "count"),
    # trade statistics
    "payoff_ratio": _c("Payoff ratio", "ratio"),
    "payoff": _c("Payoff ratio", "ratio"),
    "count_wl_ratio": _c("Wins / losses", "ratio"),
    "count_wl": _c("Wins / losses", "ratio"),
    "profit_factor": _c("Profit factor", "ratio"),
    "daily_sharpe": _c("Sharpe (daily, annualised)", "ratio"),
    "avg_win": _c("Average win", "usd"),
    "gross_win": _c("Gross wins", "usd"),
    "gross_loss": _c("Gross losses", "usd"),
    "avg_loss": _c("Average loss", "usd"),
    "max_drawdown": _c("Max drawdown", "usd"),
    "drawdown": _c("Drawdown", "usd"),
    "equity_end": _c("Equity at close", "usd"),
    "fees": _c("Fees", "usd"),
    "fee": _c("Fee", "usd"),
    "premium": _c("Premium", "usd"),
    "usd": _c("USD", "usd"),
    "amount": _c("Amount", "usd"),
    "amount_usd": _c("Amount", "usd"),
    "capital": _c("Capital", "usd"),
    "cost_per_signal": _c("Cost per signal", "usd"),
    "marginal_cost_per_signal": _c("Marginal cost per signal", "usd"),
    "equity_floor": _c("Equity floor", "usd"),
    # Monte Carlo (returns and drawdowns are fractions of capital)
    "paths": _c("Paths", "count"),
    "horizon_days": _c("Horizon (days)", "count"),
    "block_days": _c("Block (days)", "count"),
    "terminal_return_p5": _c("Terminal return p5", "percent"),
    "terminal_return_p50": _c("Terminal return median", "percent"),
    "terminal_return_mean": _c("Terminal return mean", "percent"),
    "worst5_drawdown": _c("Drawdown, worst 5% of paths", "percent"),
    "prob_loss": _c("P(loss)", "percent"),
    "prob_ruin": _c("P(ruin)", "percent"),
    "seconds": _c("Seconds", "seconds"),
    # prices in points
    "strike": _c("Strike", "points"),
    "underlying_price": _c("Underlying price", "points"),
    "move_at_horizon": _c("Move at horizon (points)", "points"),
    "entry_price": _c("Entry price", "points"),
    "exit_price": _c("Exit price", "points"),
    "price": _c("Price", "points"),
    "vwap": _c("VWAP", "points"),
    # names people would not guess
    "raw_symbol": _c("Symbol"),
    "algo": _c("Algorithm"),
    "option_type": _c("Right"),
    "latency_p95_ms": _c("Latency p95 (ms)", "ratio"),
    "unexpected_percent": _c("Unexpected (%)", "ratio"),
    "rows_checked": _c("Rows checked", "count"),
    "entry_type": _c("Entry type"),
}

_WORDS = {
    "pnl": "P&L",
    "usd": "USD",
    "id": "ID",
    "ids": "IDs",
    "ci": "CI",
    "dq": "DQ",
    "dte": "DTE",
    "ny": "NY",
    "rth": "RTH",
    "avg": "average",
    "wl": "W/L",
    "ts": "time",
    "sha": "SHA",
    "oi": "OI",
}
_ID = re.compile(r"(^|_)(id|seed|sequence)$")
_USD = re.compile(r"(^|_)(pnl|cost|costs|spend|spent|budget|remaining|projection|quoted|premium)$")
_SHARE = re.compile(r"(_rate|_share|_pct)$|^(share_|prob_)")
_COUNT = re.compile(r"^(n|count)_|(^|_)(count|trades|signals|episodes|wins|losses|rows|days)$")


def _label(name: str) -> str:
    words = [_WORDS.get(w, w) for w in name.split("_") if w]
    text = " ".join(words) or name
    return text[:1].upper() + text[1:]


def _kind(name: str) -> Kind:
    if _ID.search(name):
        return "text"  # instrument 42001234, not 42,001,234
    if _USD.search(name):
        return "usd"
    if _SHARE.search(name):
        return "percent"
    if _COUNT.search(name):
        return "count"
    return "auto"


def column_format(name: str) -> ColumnFormat:
    """How the column ``name`` is headed and written: listed in ``LABELS``, else derived."""
    return LABELS.get(name) or ColumnFormat(_label(name), _kind(name))


def column_meaning(name: str) -> str | None:
    """The column's meaning in the warehouse's description (a header tooltip), if it has one."""
    return COLUMN_MEANINGS.get(name)


def _auto(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(v)


def format_cell(v: object, kind: Kind = "auto") -> str:
    """One value as a person reads it: ``None`` a dash, 0.625 as "62.5%" (percent), 1234.5 as
    "$1,234.50" (usd), counts with thousands separators, ratios and points to 2 decimals."""
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, int | float) or kind in ("auto", "text"):
        return _auto(v) if kind != "text" else str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if kind == "percent":
        return f"{v:.1%}"
    if kind == "usd":
        return f"-${-v:,.2f}" if v < 0 else f"${v:,.2f}"
    if kind == "count":
        return f"{v:,.0f}"
    if kind == "seconds":
        return f"{v:,.1f}"
    return f"{v:,.2f}"  # ratio, points


def is_numeric(v: object) -> bool:
    """Right-aligned in a table: numbers (not booleans)."""
    return isinstance(v, int | float) and not isinstance(v, bool)
