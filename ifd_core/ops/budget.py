"""The budget gate for optional data spend, and the ledger contract it reads.

Pure decisions, no I/O: the caller gets the month's spend from a ``CostLedger`` and asks
``BudgetGate.authorize`` before spending, so a CLI download, a backfill and a Prefect flow share
the same tested rules. DENY, DEFER, REQUIRE_APPROVAL, APPROVE, strongest first; an explicit
approval only turns REQUIRE_APPROVAL into APPROVE. Thresholds and cases: docs/operations.md §Costs.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from ifd_core.settings import BudgetSettings

# Ledger entry types. Only data spend counts against the monthly data budget; quotes are
# estimates and broker/exchange fees are trading costs, kept in the ledger but budgeted elsewhere.
ENTRY_TYPES: tuple[str, ...] = (
    "subscription_fee",
    "live_usage",
    "historical_quote",
    "historical_spend",
    "backfill",
    "broker_commission",
    "exchange_fee",
)
SPEND_ENTRY_TYPES: tuple[str, ...] = (
    "historical_spend",
    "backfill",
    "live_usage",
    "subscription_fee",
)


class Decision(StrEnum):
    """The gate's verdict; the value is what the ledger stores in its ``decision`` column."""

    APPROVE = "approve"
    REQUIRE_APPROVAL = "require_approval"
    DEFER = "defer"
    DENY = "deny"


@dataclass(frozen=True)
class Authorization:
    """One verdict with the numbers behind it, so a refusal can explain itself."""

    decision: Decision
    reason: str
    amount: float
    category: str
    spent: float
    remaining: float
    """Budget left *before* this spend (may be negative if the month is already overspent)."""
    post_utilization: float
    """Share of the monthly budget used *after* this spend (1.0 = the whole budget)."""
    triggers: tuple[str, ...] = ()
    """Which approval rules fired (``above_max``, ``share_of_remaining``, ``post_utilization``)."""

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.APPROVE


@runtime_checkable
class CostLedger(Protocol):
    """What the budget gate's callers need from a cost ledger (the warehouse implements it).

    Declared here so that ifd_core depends on the shape only and never imports ``warehouse``.
    """

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Record cost events (quotes, spend, fees); the ledger fills ids and timestamps."""
        ...

    def spent_in_month(self, month: str) -> float:
        """Data spend in USD booked in ``month`` ("YYYY-MM"); quotes and fees excluded."""
        ...


def _usd(x: float) -> str:
    return f"${x:,.2f}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


class BudgetGate:
    """Applies the docs/operations.md §Costs thresholds of one ``BudgetSettings`` to proposed
    spends."""

    def __init__(self, settings: BudgetSettings) -> None:
        if settings.monthly_budget <= 0:
            raise ValueError(
                f"monthly budget must be positive, got {settings.monthly_budget}; "
                "set IFD_BUDGET__MONTHLY_BUDGET"
            )
        self.settings = settings

    @property
    def monthly_budget(self) -> float:
        return self.settings.monthly_budget

    def authorize(
        self,
        amount: float,
        category: str,
        spent_this_month: float,
        approved: bool = False,
    ) -> Authorization:
        """Decide whether ``amount`` USD of ``category`` spend may go ahead this month."""
        if amount < 0:
            raise ValueError(f"a spend amount cannot be negative, got {amount}")
        s = self.settings
        budget = s.monthly_budget
        # Ledger sums are floats of cents: round so that $170 + $5 of $175 is exactly 100 %.
        remaining = round(budget - spent_this_month, 9)
        post = round((spent_this_month + amount) / budget, 12)
        common = dict(
            amount=amount,
            category=category,
            spent=spent_this_month,
            remaining=remaining,
            post_utilization=post,
        )
        what = f"{category} spend of {_usd(amount)}"

        # A free request cannot use budget, so no rule below applies to it (otherwise a $0 quote
        # in a month at 96 % would be deferred for nothing).
        if amount == 0:
            return Authorization(
                Decision.APPROVE, f"{what} costs nothing and is approved.", **common
            )
        if amount > remaining:
            return Authorization(
                Decision.DENY,
                f"{what} exceeds remaining budget: {_usd(max(remaining, 0.0))} left of "
                f"{_usd(budget)} this month ({_usd(spent_this_month)} spent).",
                **common,
            )
        if post > s.defer_post_utilization:
            return Authorization(
                Decision.DEFER,
                f"{what} with {_usd(spent_this_month)} of {_usd(budget)} already spent this "
                f"month would bring utilization to {_pct(post)} (above "
                f"{_pct(s.defer_post_utilization)}): schedule it for next month.",
                **common,
            )

        triggers: list[str] = []
        why: list[str] = []
        if amount > s.approval_above:
            triggers.append("above_max")
            why.append(f"it is above {_usd(s.approval_above)}")
        if amount > s.approval_share_of_remaining * remaining:
            triggers.append("share_of_remaining")
            why.append(
                f"it is more than {_pct(s.approval_share_of_remaining)} of the "
                f"{_usd(remaining)} remaining"
            )
        if post > s.approval_post_utilization:
            triggers.append("post_utilization")
            why.append(
                f"it would bring utilization to {_pct(post)} "
                f"(above {_pct(s.approval_post_utilization)})"
            )
        if triggers:
            if approved:
                return Authorization(
                    Decision.APPROVE,
                    f"{what} approved explicitly although " + " and ".join(why) + ".",
                    triggers=tuple(triggers),
                    **common,
                )
            return Authorization(
                Decision.REQUIRE_APPROVAL,
                f"{what} requires approval because " + " and ".join(why) + ".",
                triggers=tuple(triggers),
                **common,
            )
        if amount <= s.auto_approve_max:
            reason = f"{what} is auto-approved (at most {_usd(s.auto_approve_max)})"
        else:
            reason = f"{what} is approved (at most {_usd(s.approval_above)}, no approval trigger)"
        return Authorization(
            Decision.APPROVE,
            f"{reason}; utilization after it {_pct(post)} of {_usd(budget)}.",
            **common,
        )

    def alert_thresholds(self) -> list[float]:
        """The configured alert levels plus the 100 % hard stop, ascending and distinct."""
        return sorted({*self.settings.alert_levels, 1.0})

    def alerts_crossed(self, spent_before: float, spent_after: float) -> list[float]:
        """Alert levels (shares of the monthly budget) that a move from before to after crosses.

        A level counts as crossed when utilization goes from below it to at or above it, so a
        spend that lands exactly on 80 % fires the 80 % alert once, and a later spend does not.
        """
        budget = self.settings.monthly_budget
        before, after = round(spent_before / budget, 12), round(spent_after / budget, 12)
        return [lvl for lvl in self.alert_thresholds() if before < lvl <= after]


def prorated_daily(monthly_fee: float, year: int, month: int) -> float:
    """A flat monthly fee spread over the calendar days of that month (docs/operations.md §Costs
    subscription_fee).

    Calendar days, not trading days: a licence is billed for the month whatever the market does.
    """
    days = calendar.monthrange(year, month)[1]
    return monthly_fee / days
