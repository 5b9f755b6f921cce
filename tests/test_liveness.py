"""Liveness incidents, latency SLIs and RTH-minute uptime (docs/operations.md §Health, SLIs and alerts)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ifd_core.calendar import NS, et_to_ns
from ifd_core.ops.liveness import (
    MINUTE_NS,
    MS,
    FeedLiveness,
    LatencyHistogram,
    SignalLatency,
    bad_minutes,
    uptime_minutes,
)

T0 = 1_718_028_000 * NS  # 2024-06-10 14:00 UTC, a Monday in RTH
DAY = dt.date(2024, 6, 10)


def s(x: float) -> int:
    return T0 + int(x * NS)


# --- feed_stale ---------------------------------------------------------------------------------
def test_stale_feed_opens_one_incident_per_episode_and_resolves_with_duration():
    f = FeedLiveness(stale_after_s=10.0)
    f.on_record(s(0))
    assert f.check(s(0), True) == []  # the session, as the controller sees it, starts here
    assert f.check(s(5), True) == []
    assert f.check(s(10), True) == []  # exactly 10 s is not "more than" 10 s
    opened = f.check(s(11), True)
    assert [(i.kind, i.state, i.severity) for i in opened] == [("feed_stale", "open", "critical")]
    assert opened[0].opened_ns == s(10)  # when the silence crossed the threshold
    assert opened[0].resolved_ns is None and opened[0].duration_ns is None
    for t in range(12, 60, 3):  # many checks during the same episode: no new rows
        assert f.check(s(t), True) == []
    assert f.open_incident == opened[0]
    f.on_heartbeat(s(61))
    assert f.open_incident is None
    resolved = f.check(s(62), True)
    assert len(resolved) == 1
    r = resolved[0]
    assert (r.kind, r.state, r.opened_ns, r.resolved_ns) == ("feed_stale", "resolved", s(10), s(61))
    assert r.duration_s == 51.0
    assert "heartbeat received" in r.detail
    assert f.check(s(65), True) == []
    # A second silence is a second episode.
    assert [i.state for i in f.check(s(72), True)] == ["open"]


def test_heartbeats_alone_keep_a_quiet_feed_alive():
    f = FeedLiveness(stale_after_s=10.0)
    f.on_record(s(0))
    for t in range(5, 120, 5):
        f.on_heartbeat(s(t))
        assert f.check(s(t + 1), True) == []


def test_no_incident_out_of_session_and_grace_at_session_start():
    f = FeedLiveness(stale_after_s=10.0)
    f.on_record(s(0))
    assert f.check(s(3600), False) == []  # overnight silence is expected
    # Session starts at s(7200): silence is measured from then, not from the last record.
    assert f.check(s(7200), True) == []
    assert f.check(s(7210), True) == []
    rows = f.check(s(7211), True)
    assert rows[0].opened_ns == s(7210) and "last at" in rows[0].detail


def test_never_connected_in_session_is_stale_and_says_so():
    f = FeedLiveness(stale_after_s=10.0)
    f.check(s(0), True)
    rows = f.check(s(11), True)
    assert rows[0].kind == "feed_stale" and "last never" in rows[0].detail


def test_session_end_resolves_an_open_episode():
    f = FeedLiveness(stale_after_s=10.0)
    f.on_record(s(0))
    f.check(s(1), True)
    assert f.check(s(20), True)[0].state == "open"
    rows = f.check(s(30), False)
    assert [(i.state, i.resolved_ns) for i in rows] == [("resolved", s(30))]
    assert "session ended" in rows[0].detail


# --- consumer_stall -----------------------------------------------------------------------------
def test_consumer_stall_over_threshold_is_a_resolved_incident():
    f = FeedLiveness(stale_after_s=10.0, stall_warn_s=1.0)
    assert f.on_stall(s(0), s(0.5), 1_000) == []  # short backpressure: normal
    rows = f.on_stall(s(1), s(3.5), 64 * 1024 * 1024) + f.on_stall(s(10), s(25), 256 * 1024**2)
    assert [(i.kind, i.state, i.severity) for i in rows] == [
        ("consumer_stall", "resolved", "warning"),
        ("consumer_stall", "resolved", "critical"),
    ]
    assert rows[0].duration_s == 2.5 and "67108864 bytes" in rows[0].detail
    f.on_record(s(25))
    f.check(s(25), True)
    assert f.check(s(26), True) == []  # stall rows are returned once, never again by check


# --- latency ------------------------------------------------------------------------------------
def test_signal_latency_slis():
    lat = SignalLatency(ts_event=1_000, ts_recv=1_500, local_recv_ns=3_000, emit_ns=10_000)
    assert lat.decision_latency_ns == 7_000
    assert lat.feed_latency_ns == 1_500
    assert lat.exchange_to_signal_ns == 9_000


def test_histogram_percentiles_match_numpy_and_stay_bounded():
    rng = np.random.default_rng(1)
    samples = rng.integers(1 * MS, 200 * MS, 5_000)
    h = LatencyHistogram(capacity=1_000)
    assert h.count == 0 and h.p95 is None and h.max is None
    for v in samples[:2_500]:
        h.record(int(v))
    h.record_many(samples[2_500:])
    assert h.count == 1_000 and h.total == 5_000
    kept = samples[-1_000:]
    assert np.array_equal(h.values(), kept)  # the newest samples, oldest first
    assert h.p50 == pytest.approx(np.percentile(kept, 50))
    assert h.p95 == pytest.approx(np.percentile(kept, 95))
    assert h.p99 == pytest.approx(np.percentile(kept, 99))
    assert h.max == kept.max()
    assert h.summary()["count"] == 1_000


def test_record_many_wraps_and_larger_than_capacity():
    h = LatencyHistogram(capacity=4)
    h.record_many([1, 2, 3])
    h.record_many([4, 5])
    assert h.values().tolist() == [2, 3, 4, 5]
    h.record_many(range(10, 20))
    assert h.values().tolist() == [16, 17, 18, 19] and h.total == 15


def test_rolling_window_uses_the_newest_samples():
    h = LatencyHistogram(capacity=100)
    for i in range(50):
        h.record(400 * MS, at_ns=s(i))  # old and slow
    for i in range(50, 80):
        h.record(10 * MS, at_ns=s(i))  # recent and fast
    window = h.values_since(s(50))
    assert len(window) == 30 and set(window.tolist()) == {10 * MS}


# --- uptime -------------------------------------------------------------------------------------
def test_three_minute_outage_in_a_390_minute_session():
    start = et_to_ns(DAY, 11)
    good, total, pct = uptime_minutes([(start, start + 3 * MINUTE_NS)], DAY)
    assert (good, total) == (387, 390)
    assert round(pct, 2) == 99.23


def test_outage_outside_rth_is_not_counted():
    # 16:20 ET: after RTH (and, on Globex, near the 17:00 halt): not part of the SLI.
    start = et_to_ns(DAY, 16, 20)
    assert uptime_minutes([(start, start + 5 * MINUTE_NS)], DAY) == (390, 390, 100.0)
    pre = et_to_ns(DAY, 8)
    assert uptime_minutes([(pre, et_to_ns(DAY, 9, 31))], DAY)[:2] == (389, 390)


def test_partial_minute_overlap_makes_the_minute_bad():
    start = et_to_ns(DAY, 11) + 30 * NS
    assert uptime_minutes([(start, start + 3 * MINUTE_NS)], DAY)[:2] == (386, 390)


def test_a_good_minute_between_two_outages_stays_good():
    a = et_to_ns(DAY, 11)
    intervals = [(a, a + 2 * MINUTE_NS), (a + 3 * MINUTE_NS, a + 5 * MINUTE_NS)]
    assert bad_minutes(intervals, DAY) == [a + k * MINUTE_NS for k in (0, 1, 3, 4)]
    assert uptime_minutes(intervals, DAY)[:2] == (386, 390)


def test_early_close_and_holiday_change_the_denominator():
    black_friday = dt.date(2024, 11, 29)  # CMES early close 13:00 ET
    assert uptime_minutes([], black_friday) == (210, 210, 100.0)
    late = et_to_ns(black_friday, 13, 30)
    assert uptime_minutes([(late, late + MINUTE_NS)], black_friday)[0] == 210
    assert uptime_minutes([], dt.date(2024, 12, 25)) == (0, 0, None)
