"""The one rollout controller's rules: stages, routing, promotion and rollback.

A challenger (v3) earns execution against the incumbent (v1) in stages, SHADOW → ... → LIVE_FULL,
with ROLLED_BACK and HALTED; routing is ``sha256(salt:signal_id) mod 100 < share``; promotion is
judged at session close by named rules, rollbacks are immediate and never rate-limited. Pure (no
I/O, no clock): ``jobs/rollout.py`` gathers the evidence, calls these functions and appends their
decisions to ``rollout_events``. Rules: docs/algorithms.md §16.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from ifd_core.settings import RolloutSettings
from ifd_core.trading.ab_stats import compare_accuracy
from ifd_core.trading.metrics import wilson_interval

STAGES: tuple[str, ...] = (
    "SHADOW",
    "PAPER",
    "LIVE_CANARY",
    "LIVE_LIMITED",
    "LIVE_MAJORITY",
    "LIVE_FULL",
)
OFF_STAGES = ("ROLLED_BACK", "HALTED")
ALL_STAGES = STAGES + OFF_STAGES
LIVE_STAGES = STAGES[2:]
# Promotions into these need an operator when ``require_approval`` is set (docs/algorithms.md §16).
APPROVAL_INTO = ("PAPER", "LIVE_CANARY")
Action = Literal["init", "promote", "hold", "demote", "rollback", "halt"]


def share_of(stage: str, s: RolloutSettings) -> int:
    """Percent of the challenger's actionable signals executed in ``stage``."""
    return {
        "SHADOW": 0,
        "PAPER": 100,
        "LIVE_CANARY": s.canary_share,
        "LIVE_LIMITED": s.limited_share,
        "LIVE_MAJORITY": s.majority_share,
        "LIVE_FULL": 100,
    }.get(stage, 0)


def min_sessions(stage: str, s: RolloutSettings) -> int:
    return s.shadow_min_sessions if stage == "SHADOW" else s.stage_min_sessions


def next_stage(stage: str) -> str | None:
    if stage not in STAGES or stage == STAGES[-1]:
        return None
    return STAGES[STAGES.index(stage) + 1]


def previous_stage(stage: str) -> str:
    return STAGES[max(STAGES.index(stage) - 1, 0)] if stage in STAGES else "SHADOW"


def route_bucket(signal_id: str, salt: str) -> int:
    """The signal's stable bucket 0..99 (sha256, not Python's per-process ``hash``)."""
    digest = hashlib.sha256(f"{salt}:{signal_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def routed(signal_id: str, salt: str, share: int) -> bool:
    return route_bucket(signal_id, salt) < share


@dataclass(frozen=True)
class RuleResult:
    """One criterion of one decision: its id, whether it passed, and the numbers."""

    id: str
    passed: bool
    value: float | str | None
    threshold: float | str | None
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    action: Action
    from_stage: str
    to_stage: str
    share: int
    rules: tuple[RuleResult, ...]
    reason: str

    @property
    def failed(self) -> list[str]:
        return [r.id for r in self.rules if not r.passed]

    def rules_json(self) -> str:
        return json.dumps([asdict(r) for r in self.rules], default=str)


@dataclass(frozen=True)
class RolloutState:
    """The controller's current state (the latest ``rollout_events`` row)."""

    stage: str
    share: int
    since: dt.datetime
    """When the current stage began (wall clock UTC)."""
    stage_started: dt.date | None
    """First trade date judged in this stage (sessions are counted from it)."""
    last_rollback: dt.datetime | None = None
    rolled_back_from: str | None = None


@dataclass(frozen=True)
class StageEvidence:
    """What the session-close review judges, pooled since the stage started."""

    sessions: int
    resolved_c: int
    correct_c: int
    resolved_i: int
    correct_i: int
    pnl_per_trade_ci_low: float | None
    pnl_per_trade: float | None
    trades: int
    latency_p95_ms: float | None
    uptime_rth: float | None
    cost_per_signal: float | None
    critical_incidents: int


def _accuracy(k: int, n: int) -> float | None:
    return k / n if n else None


def promotion_rules(st: RolloutState, ev: StageEvidence, s: RolloutSettings) -> list[RuleResult]:
    """Every docs/algorithms.md §16 promotion criterion for leaving ``st.stage``, each with its
    value."""
    rules: list[RuleResult] = []
    need_s = min_sessions(st.stage, s)
    rules.append(RuleResult("MIN_SESSIONS", ev.sessions >= need_s, ev.sessions, need_s))
    if st.stage == "SHADOW":
        rules.append(
            RuleResult(
                "MIN_RESOLVED",
                ev.resolved_c >= s.shadow_min_resolved,
                ev.resolved_c,
                s.shadow_min_resolved,
            )
        )
    acc = _accuracy(ev.correct_c, ev.resolved_c)
    ci = wilson_interval(ev.correct_c, ev.resolved_c)
    low = ci[0] if ci else None
    rules.append(
        RuleResult(
            "ACCURACY_LOWER",
            low is not None and low >= s.min_accuracy_lower,
            low,
            s.min_accuracy_lower,
            "Wilson 95 % lower bound",
        )
    )
    rules.append(
        RuleResult("ACCURACY", acc is not None and acc >= s.min_accuracy, acc, s.min_accuracy)
    )
    # Non-inferiority: H0 p_c - p_i <= -margin, rejected at alpha (one-sided, pooled z / Fisher
    # on the shifted counts is not exact; we use the Newcombe interval's one-sided bound).
    ni_value = None
    ni_pass = False
    if ev.resolved_c and ev.resolved_i:
        res = compare_accuracy(ev.correct_c, ev.resolved_c, ev.correct_i, ev.resolved_i)
        ni_value = res["diff_ci_low"]
        ni_pass = ni_value is not None and ni_value > -s.noninferiority_margin
    rules.append(
        RuleResult(
            "NON_INFERIOR",
            ni_pass,
            ni_value,
            -s.noninferiority_margin,
            "lower bound of challenger - incumbent accuracy",
        )
    )
    if st.stage != "SHADOW":  # nothing is traded in shadow
        lowp = ev.pnl_per_trade_ci_low
        rules.append(
            RuleResult(
                "PNL_PER_TRADE",
                ev.pnl_per_trade is not None
                and ev.pnl_per_trade >= 0
                and lowp is not None
                and lowp > s.min_pnl_ci_lower,
                ev.pnl_per_trade,
                f">= 0 and 90 % CI low {lowp if lowp is None else round(lowp, 2)} "
                f"> {s.min_pnl_ci_lower:g}",
            )
        )
    lat = ev.latency_p95_ms
    rules.append(
        RuleResult(
            "LATENCY_P95", lat is not None and lat < s.max_latency_p95_ms, lat, s.max_latency_p95_ms
        )
    )
    up = ev.uptime_rth
    rules.append(
        RuleResult("UPTIME_RTH", up is not None and up >= s.min_uptime_rth, up, s.min_uptime_rth)
    )
    cps = ev.cost_per_signal
    rules.append(
        RuleResult(
            "COST_PER_SIGNAL",
            cps is not None and cps < s.max_cost_per_signal,
            cps,
            s.max_cost_per_signal,
        )
    )
    rules.append(
        RuleResult("NO_CRITICAL_INCIDENT", ev.critical_incidents == 0, ev.critical_incidents, 0)
    )
    return rules


def soft_demotion_rules(ev: StageEvidence, s: RolloutSettings) -> list[RuleResult]:
    """Session-close demotion (docs/algorithms.md §16 soft triggers), judged only with enough
    resolved signals."""
    if ev.resolved_c < s.soft_min_resolved:
        return []
    ci = wilson_interval(ev.correct_c, ev.resolved_c)
    low = ci[0] if ci else None
    rules = [
        RuleResult(
            "SOFT_ACCURACY_LOWER",
            low is not None and low >= s.min_accuracy_lower,
            low,
            s.min_accuracy_lower,
        )
    ]
    acc_c = _accuracy(ev.correct_c, ev.resolved_c)
    acc_i = _accuracy(ev.correct_i, ev.resolved_i)
    if acc_c is not None and acc_i:
        ratio = acc_c / acc_i
        rules.append(
            RuleResult(
                "SOFT_ACCURACY_RATIO",
                ratio >= s.soft_min_accuracy_ratio,
                ratio,
                s.soft_min_accuracy_ratio,
            )
        )
    return rules


def review_session(
    st: RolloutState,
    ev: StageEvidence,
    s: RolloutSettings,
    now: dt.datetime,
    *,
    approved: bool = False,
) -> Decision:
    """The session-close decision: promote, hold or step back one stage."""
    if st.stage in OFF_STAGES:
        return Decision(
            "hold",
            st.stage,
            st.stage,
            st.share,
            (),
            f"{st.stage}: operator action needed (`ifd rollout promote`)",
        )
    soft = soft_demotion_rules(ev, s)
    if st.stage != "SHADOW" and any(not r.passed for r in soft):
        to = previous_stage(st.stage)
        return Decision(
            "demote",
            st.stage,
            to,
            share_of(to, s),
            tuple(soft),
            "soft trigger at session close: " + ", ".join(r.id for r in soft if not r.passed),
        )
    nxt = next_stage(st.stage)
    rules = promotion_rules(st, ev, s)
    if nxt is None:
        return Decision("hold", st.stage, st.stage, st.share, tuple(rules), "final stage")
    failed = [r.id for r in rules if not r.passed]
    if failed:
        return Decision(
            "hold",
            st.stage,
            st.stage,
            st.share,
            tuple(rules),
            "criteria not met: " + ", ".join(failed),
        )
    if s.require_approval and nxt in APPROVAL_INTO and not approved:
        rules = (*rules, RuleResult("APPROVAL", False, "none", "operator"))
        return Decision(
            "hold",
            st.stage,
            st.stage,
            st.share,
            tuple(rules),
            f"all criteria met; {st.stage} -> {nxt} needs an operator's `ifd rollout promote`",
        )
    return Decision(
        "promote",
        st.stage,
        nxt,
        share_of(nxt, s),
        tuple(rules),
        f"all criteria met after {ev.sessions} sessions",
    )


@dataclass(frozen=True)
class LiveHealth:
    """What the immediate triggers look at, measured by the running process."""

    feed_unhealthy_s: float = 0.0
    """How long the feed has been continuously unhealthy during RTH (0 when healthy)."""
    challenger_breaker_open: bool = False
    error_windows: int = 0
    """Windows the challenger was asked to score in the error window."""
    failed_windows: int = 0
    realized_daily_loss: float = 0.0
    """Loss so far today as a positive number (0 when flat or up)."""
    open_risk: float = 0.0
    capital: float = 0.0
    severe_latency_s: float = 0.0
    """How long the rolling p95 decision latency has been above the severe level."""


def immediate_rules(st: RolloutState, h: LiveHealth, s: RolloutSettings) -> list[RuleResult]:
    """The docs/algorithms.md §16 automatic rollback triggers, each evaluated (passed = healthy)."""
    live = st.stage in LIVE_STAGES
    loss_limit = s.daily_loss_limit_live if live else s.daily_loss_fraction_paper * h.capital
    err = h.failed_windows / h.error_windows if h.error_windows else 0.0
    enough = h.error_windows >= s.min_error_windows
    return [
        RuleResult(
            "FEED_UNHEALTHY",
            h.feed_unhealthy_s <= s.feed_unhealthy_s,
            round(h.feed_unhealthy_s, 3),
            s.feed_unhealthy_s,
            "seconds unhealthy in RTH",
        ),
        RuleResult(
            "BREAKER_OPEN",
            not h.challenger_breaker_open,
            "open" if h.challenger_breaker_open else "closed",
            "closed",
        ),
        RuleResult(
            "ERROR_RATE",
            not (enough and err > s.max_error_rate),
            round(err, 4),
            s.max_error_rate,
            f"{h.failed_windows}/{h.error_windows} windows over {s.error_window_s:g} s",
        ),
        RuleResult(
            "DAILY_LOSS",
            not (loss_limit > 0 and h.realized_daily_loss >= loss_limit),
            round(h.realized_daily_loss, 2),
            round(loss_limit, 2),
        ),
        RuleResult(
            "OPEN_RISK",
            not (h.capital > 0 and h.open_risk > s.max_open_risk_fraction * h.capital),
            round(h.open_risk, 2),
            round(s.max_open_risk_fraction * h.capital, 2),
        ),
        RuleResult(
            "LATENCY_SEVERE",
            h.severe_latency_s < s.severe_latency_window_s,
            round(h.severe_latency_s, 1),
            s.severe_latency_window_s,
            f"seconds with p95 > {s.severe_latency_ms:g} ms",
        ),
    ]


def check_immediate(st: RolloutState, h: LiveHealth, s: RolloutSettings) -> Decision | None:
    """A rollback decision when any trigger fires and something is being executed."""
    if st.share == 0:  # nothing to roll back (SHADOW, ROLLED_BACK, HALTED)
        return None
    rules = immediate_rules(st, h, s)
    failed = [r.id for r in rules if not r.passed]
    if not failed:
        return None
    return Decision(
        "rollback",
        st.stage,
        "ROLLED_BACK",
        0,
        tuple(rules),
        "automatic rollback: " + ", ".join(failed),
    )


def operator_rollback(st: RolloutState, reason: str, *, halt: bool = False) -> Decision:
    """An operator's rollback (or halt): always executes, whatever the state."""
    to = "HALTED" if halt else "ROLLED_BACK"
    return Decision(
        "halt" if halt else "rollback", st.stage, to, 0, (), reason or f"{to.lower()} by operator"
    )


def operator_promote(
    st: RolloutState,
    s: RolloutSettings,
    now: dt.datetime,
    to: str | None = None,
    sessions_since_rollback: int = 0,
) -> Decision:
    """An operator's promotion: one step (or to ``to``); after a rollback, only once the 60-min
    cool-down has passed and a session has been reviewed since (docs/algorithms.md §16)."""
    if st.stage in OFF_STAGES:
        target = to or (previous_stage(st.rolled_back_from) if st.rolled_back_from else "SHADOW")
        if st.stage == "ROLLED_BACK" and st.last_rollback is not None:
            wait = st.last_rollback + dt.timedelta(minutes=s.cooldown_min)
            rules = (
                RuleResult(
                    "COOLDOWN",
                    now >= wait,
                    now.isoformat(timespec="seconds"),
                    wait.isoformat(timespec="seconds"),
                ),
                RuleResult(
                    "SESSION_REVIEWED", sessions_since_rollback >= 1, sessions_since_rollback, 1
                ),
            )
            if not all(r.passed for r in rules):
                failed = ", ".join(r.id for r in rules if not r.passed)
                raise RolloutRefused(f"re-promotion refused: {failed}", rules)
    else:
        target = to or next_stage(st.stage)
        if target is None:
            raise RolloutRefused(f"{st.stage} is the final stage", ())
    if target not in STAGES:
        raise RolloutRefused(f"unknown stage {target!r}: one of {', '.join(STAGES)}", ())
    return Decision(
        "promote", st.stage, target, share_of(target, s), (), f"promoted by operator to {target}"
    )


class RolloutRefused(RuntimeError):
    def __init__(self, message: str, rules: tuple[RuleResult, ...]) -> None:
        super().__init__(message)
        self.rules = rules
