"""The rollout controller (docs/algorithms.md §16): pure rules and the controller over a lake."""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
import pytest

from ifd_core.ops.resilience import ErrorWindow
from ifd_core.settings import get_settings
from ifd_core.trading.rollout import (
    LiveHealth,
    RolloutRefused,
    RolloutState,
    StageEvidence,
    check_immediate,
    operator_promote,
    review_session,
    route_bucket,
    routed,
    share_of,
)
from jobs.rollout import RolloutController

NOW = dt.datetime(2025, 3, 10, 21, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def rs(settings):
    return settings.rollout


def _state(stage: str, rs, **kw) -> RolloutState:
    return RolloutState(
        stage=stage,
        share=kw.pop("share", share_of(stage, rs)),
        since=NOW - dt.timedelta(days=20),
        stage_started=dt.date(2025, 2, 18),
        **kw,
    )


def _evidence(resolved_c: int, **kw) -> StageEvidence:
    """Evidence meeting every criterion except possibly the resolved count (90 % accurate)."""
    base = dict(
        sessions=12,
        resolved_c=resolved_c,
        correct_c=round(resolved_c * 0.9),
        resolved_i=400,
        correct_i=280,
        pnl_per_trade_ci_low=5.0,
        pnl_per_trade=20.0,
        trades=40,
        latency_p95_ms=40.0,
        uptime_rth=0.9995,
        cost_per_signal=1.0,
        critical_incidents=0,
    )
    base.update(kw)
    return StageEvidence(**base)


# ---------------------------------------------------------------- session-close promotion


def test_shadow_with_80_resolved_holds_on_min_resolved_only(rs):
    d = review_session(_state("SHADOW", rs), _evidence(80), rs, NOW, approved=True)
    assert d.action == "hold"
    assert d.to_stage == "SHADOW" and d.share == 0
    assert d.failed == ["MIN_RESOLVED"]
    rule = next(r for r in d.rules if r.id == "MIN_RESOLVED")
    assert rule.value == 80 and rule.threshold == rs.shadow_min_resolved


def test_shadow_with_110_resolved_promotes_to_paper_without_approval_flag(rs):
    s = rs.model_copy(update={"require_approval": False})
    d = review_session(_state("SHADOW", s), _evidence(110), s, NOW)
    assert d.action == "promote"
    assert (d.from_stage, d.to_stage, d.share) == ("SHADOW", "PAPER", 100)
    assert d.failed == []


def test_shadow_with_110_resolved_needs_approval_when_required(rs):
    s = rs.model_copy(update={"require_approval": True})
    d = review_session(_state("SHADOW", s), _evidence(110), s, NOW)
    assert d.action == "hold"
    assert d.to_stage == "SHADOW"
    assert d.failed == ["APPROVAL"]
    # an operator's approval lets the same evidence promote
    ok = review_session(_state("SHADOW", s), _evidence(110), s, NOW, approved=True)
    assert ok.action == "promote" and ok.to_stage == "PAPER"


def test_min_sessions_not_reached_holds(rs):
    d = review_session(_state("SHADOW", rs), _evidence(110, sessions=9), rs, NOW, approved=True)
    assert d.action == "hold"
    assert d.failed == ["MIN_SESSIONS"]


# ---------------------------------------------------------------- routing


def test_routing_is_stable_and_recomputable(rs):
    ids = [f"sig-{i}" for i in range(200)]
    first = [routed(i, rs.salt, 10) for i in ids]
    assert first == [routed(i, rs.salt, 10) for i in ids]
    for sid in ids:
        digest = hashlib.sha256(f"{rs.salt}:{sid}".encode()).digest()
        expected = int.from_bytes(digest[:8], "big") % 100
        assert route_bucket(sid, rs.salt) == expected
        assert routed(sid, rs.salt, 10) == (expected < 10)
    # a pinned value: the same in every process, after every restart
    pinned = int.from_bytes(hashlib.sha256(b"ifd-rollout:abc").digest()[:8], "big") % 100
    assert route_bucket("abc", "ifd-rollout") == pinned


def test_routing_share_is_roughly_uniform(rs):
    ids = [f"signal-{i:05d}" for i in range(10_000)]
    frac = sum(routed(i, rs.salt, 10) for i in ids) / len(ids)
    assert 0.08 <= frac <= 0.12
    buckets = [route_bucket(i, rs.salt) for i in ids]
    assert min(buckets) == 0 and max(buckets) == 99
    assert not any(routed(i, rs.salt, 0) for i in ids[:500])
    assert all(routed(i, rs.salt, 100) for i in ids[:500])


# ---------------------------------------------------------------- immediate triggers


def test_feed_unhealthy_90s_in_live_limited_rolls_back(rs):
    st = _state("LIVE_LIMITED", rs)
    assert st.share == rs.limited_share > 0
    d = check_immediate(st, LiveHealth(feed_unhealthy_s=90.0), rs)
    assert d is not None
    assert d.action == "rollback"
    assert (d.from_stage, d.to_stage, d.share) == ("LIVE_LIMITED", "ROLLED_BACK", 0)
    assert d.failed == ["FEED_UNHEALTHY"]
    assert "FEED_UNHEALTHY" in d.reason


def test_feed_unhealthy_exactly_60s_does_not_roll_back(rs):
    assert (
        check_immediate(_state("LIVE_LIMITED", rs), LiveHealth(feed_unhealthy_s=60.0), rs) is None
    )
    assert check_immediate(_state("LIVE_LIMITED", rs), LiveHealth(), rs) is None


def test_error_rate_above_limit_rolls_back(rs):
    h = LiveHealth(error_windows=20, failed_windows=3)
    d = check_immediate(_state("LIVE_CANARY", rs), h, rs)
    assert d is not None and d.to_stage == "ROLLED_BACK"
    assert d.failed == ["ERROR_RATE"]


def test_error_rate_below_min_windows_does_not_trigger(rs):
    h = LiveHealth(error_windows=19, failed_windows=10)
    assert check_immediate(_state("LIVE_CANARY", rs), h, rs) is None
    # exactly at the limit (2/20 = 10 %) is not above it
    assert (
        check_immediate(
            _state("LIVE_CANARY", rs), LiveHealth(error_windows=20, failed_windows=2), rs
        )
        is None
    )


def test_shadow_never_rolls_back_automatically(rs):
    bad = LiveHealth(
        feed_unhealthy_s=600.0,
        challenger_breaker_open=True,
        error_windows=100,
        failed_windows=100,
        severe_latency_s=1e4,
    )
    assert check_immediate(_state("SHADOW", rs), bad, rs) is None
    assert check_immediate(_state("ROLLED_BACK", rs), bad, rs) is None


# ---------------------------------------------------------------- soft demotion


def test_soft_demotion_on_accuracy_ratio(rs):
    # 60 resolved, 42 correct (0.70; Wilson low ~0.57 — below the floor too) vs incumbent 0.95
    ev = _evidence(60, correct_c=42, resolved_i=100, correct_i=95)
    d = review_session(_state("LIVE_LIMITED", rs), ev, rs, NOW)
    assert d.action == "demote"
    assert (d.to_stage, d.share) == ("LIVE_CANARY", rs.canary_share)
    assert "SOFT_ACCURACY_RATIO" in d.failed


def test_soft_demotion_ratio_alone(rs):
    # a looser accuracy floor so only the ratio rule (0.70 / 0.95 = 0.737 < 0.8) fails
    s = rs.model_copy(update={"min_accuracy_lower": 0.3})
    ev = _evidence(60, correct_c=42, resolved_i=100, correct_i=95)
    d = review_session(_state("PAPER", s), ev, s, NOW)
    assert d.action == "demote"
    assert (d.from_stage, d.to_stage, d.share) == ("PAPER", "SHADOW", 0)
    assert d.failed == ["SOFT_ACCURACY_RATIO"]


def test_soft_demotion_needs_enough_resolved(rs):
    s = rs.model_copy(update={"min_accuracy_lower": 0.3})
    ev = _evidence(49, correct_c=34, resolved_i=100, correct_i=95)
    d = review_session(_state("PAPER", s), ev, s, NOW)
    assert d.action != "demote"


# ---------------------------------------------------------------- error window


def test_error_window_drops_old_events():
    w = ErrorWindow(span_ns=300 * 10**9)
    w.add(0, 10, 5)
    w.add(100 * 10**9, 10, 0)
    assert (w.windows, w.failed) == (20, 5)
    assert w.rate() == pytest.approx(0.25)
    w.add(350 * 10**9, 10, 1)  # the event at t=0 is now older than 300 s
    assert (w.windows, w.failed) == (20, 1)
    w.add(1000 * 10**9, 4, 0)
    assert (w.windows, w.failed) == (4, 0)
    assert w.rate() == 0.0
    assert ErrorWindow(span_ns=1).rate() is None


# ---------------------------------------------------------------- operator decisions (pure)


def test_operator_promote_refused_during_cooldown(rs):
    st = _state(
        "ROLLED_BACK", rs, last_rollback=NOW - dt.timedelta(minutes=5), rolled_back_from="PAPER"
    )
    with pytest.raises(RolloutRefused) as exc:
        operator_promote(st, rs, NOW, sessions_since_rollback=1)
    ids = {r.id: r.passed for r in exc.value.rules}
    assert ids == {"COOLDOWN": False, "SESSION_REVIEWED": True}
    later = NOW + dt.timedelta(minutes=rs.cooldown_min)
    d = operator_promote(st, rs, later, sessions_since_rollback=1)
    assert (d.to_stage, d.share) == ("SHADOW", 0)  # one step back from PAPER


# ---------------------------------------------------------------- controller on a lake


def test_fresh_lake_starts_in_shadow_with_one_init_event(lake, settings):
    rc = RolloutController(lake, settings)
    st = rc.state()
    assert (st.stage, st.share) == ("SHADOW", 0)
    ev = rc.events()
    assert ev.height == 1
    assert ev["action"].to_list() == ["init"]
    # asking again (or from a new instance) does not write another init
    RolloutController(lake, settings).state()
    assert rc.events().height == 1


def test_four_operator_rollbacks_all_execute_and_open_incidents(lake, settings):
    rc = RolloutController(lake, settings)
    for i in range(4):
        d = rc.rollback(f"drill {i}", operator="tester")
        assert d.action == "rollback" and d.to_stage == "ROLLED_BACK"
    ev = rc.events()
    assert ev.filter(pl.col("action") == "rollback").height == 4
    assert rc.state().stage == "ROLLED_BACK" and rc.state().share == 0
    inc = lake.scan("incidents").collect()
    rb = inc.filter(pl.col("kind") == "rollout_rollback")
    assert rb.height == 4
    assert set(rb["severity"]) == {"critical"} and set(rb["state"]) == {"open"}


def test_promote_right_after_rollback_is_refused_by_cooldown(lake, settings):
    rc = RolloutController(lake, settings)
    rc.rollback("drill", operator="tester")
    with pytest.raises(RolloutRefused) as exc:
        rc.promote(operator="tester")
    failed = [r.id for r in exc.value.rules if not r.passed]
    assert "COOLDOWN" in failed
    assert rc.state(refresh=True).stage == "ROLLED_BACK"
    assert rc.events().filter(pl.col("action") == "promote").height == 0


def test_operator_promote_from_shadow_and_state_survives_restart(lake, settings):
    rc = RolloutController(lake, settings)
    d = rc.promote(operator="tester")
    assert (d.from_stage, d.to_stage, d.share) == ("SHADOW", "PAPER", 100)
    assert (rc.state().stage, rc.state().share) == ("PAPER", 100)
    again = RolloutController(lake, settings)  # a restart
    st = again.state()
    assert (st.stage, st.share) == ("PAPER", 100)
    assert again.share() == 100
    assert again.events()["action"].to_list() == ["init", "promote"]
    assert again.executes(settings.rollout.challenger, "any-signal")


def test_tick_records_automatic_rollback(lake, settings):
    rc = RolloutController(lake, settings)
    rc.promote(operator="tester")  # PAPER, share 100
    assert rc.tick(LiveHealth(feed_unhealthy_s=30.0)) is None
    d = rc.tick(LiveHealth(feed_unhealthy_s=90.0), data_ts=123)
    assert d is not None and d.to_stage == "ROLLED_BACK"
    st = RolloutController(lake, settings).state()
    assert (st.stage, st.share) == ("ROLLED_BACK", 0)
    last = rc.events().row(-1, named=True)
    assert last["action"] == "rollback" and "FEED_UNHEALTHY" in last["rules"]
    assert last["data_ts"] == 123
