"""Risk controls checked before every order that opens a position (docs/algorithms.md §11, issue
#5).

One function decides, for every mode (backtest, paper, shadow, IB): the emergency stop, max open
positions, sizing by risk budget (zero contracts, not one, when the risk does not fit), max
contracts, max loss per trade, the daily loss stop and the drawdown stop. Exits are never blocked:
a stop, target, time stop or session-end flatten reduces risk, and a halt must not leave a
position unprotected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ifd_core.units import MULTIPLIER


@dataclass(frozen=True)
class RiskLimits:
    max_positions: int = 10
    max_contracts: int = 15
    max_loss_per_trade: float = 1_000.0
    daily_loss_stop: float = 2_000.0
    drawdown_stop: float = 5_000.0
    risk_budget_fraction: float = 0.01  # of equity, risked per trade (stop distance x size)
    max_daily_trades: int = 30


@dataclass
class RiskState:
    """What the checks need to know about the account at the moment of an order."""

    equity: float
    peak_equity: float
    day_net_pnl: float = 0.0
    open_positions: int = 0
    day_trades: int = 0
    halted_reason: str | None = None


@dataclass(frozen=True)
class Sizing:
    contracts: int
    reasons: tuple[str, ...]  # why fewer than wanted, or why zero (the order is rejected)

    @property
    def rejected(self) -> bool:
        return self.contracts == 0


def size_entry(stop_distance_points: float, state: RiskState, limits: RiskLimits) -> Sizing:
    """Contracts for a new position whose stop is ``stop_distance_points`` away, or zero with the
    reasons. Sizing: floor(risk budget / (stop distance x $20)), capped by max contracts and by
    the max loss per trade."""
    if state.halted_reason:
        return Sizing(0, (f"emergency stop: {state.halted_reason}",))
    if state.open_positions >= limits.max_positions:
        return Sizing(0, (f"max positions {limits.max_positions} open",))
    if state.day_trades >= limits.max_daily_trades:
        return Sizing(0, (f"max daily trades {limits.max_daily_trades} reached",))
    if state.day_net_pnl <= -limits.daily_loss_stop:
        loss = f"{state.day_net_pnl:.2f} <= -{limits.daily_loss_stop}"
        return Sizing(0, (f"daily loss stop: {loss}",))
    drawdown = state.peak_equity - state.equity
    if drawdown >= limits.drawdown_stop:
        return Sizing(0, (f"drawdown stop: {drawdown:.2f} >= {limits.drawdown_stop}",))
    if not stop_distance_points > 0:
        return Sizing(0, ("no stop distance: the risk of the trade is unknown",))
    per_contract = stop_distance_points * MULTIPLIER
    budget = limits.risk_budget_fraction * state.equity
    n = math.floor(budget / per_contract + 1e-9)
    reasons = []
    if n > limits.max_contracts:
        n, reasons = limits.max_contracts, [f"capped at max contracts {limits.max_contracts}"]
    by_loss = math.floor(limits.max_loss_per_trade / per_contract + 1e-9)
    if n > by_loss:
        n = by_loss
        reasons.append(f"capped by max loss per trade {limits.max_loss_per_trade}")
    if n < 1:
        reasons.append(
            f"risk does not fit: one contract risks {per_contract:.2f} against a budget of "
            f"{min(budget, limits.max_loss_per_trade):.2f}"
        )
        return Sizing(0, tuple(reasons))
    return Sizing(n, tuple(reasons))
