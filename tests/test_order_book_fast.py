"""The compiled book (FastBookSet) against the reference (BookSet): same cases, same numbers.

The hand-written case per action runs here, on both books; then parity on random streams
built to hit every anomaly and every table growth, on the real ES samples and on a simulated
day, each under random chunkings whose cuts fall inside multi-record events.
"""

from __future__ import annotations

import numpy as np
import pytest

from ifd_core.analysis.order_book import BBO, PRE_TRADE_DTYPE, UNDEF_PRICE, BookSet
from ifd_core.analysis.order_book_fast import ANOMALY_KINDS, FastBookSet
from tests.test_order_book import ESH4, ESM4, IID, LAST, MBO_DTYPE, _ts, mbo, p

SNAPSHOT = 0x20


@pytest.fixture(params=["python", "fast"])
def make(request):
    return BookSet if request.param == "python" else FastBookSet


def orders_of(books, iid: int) -> dict:
    return books.book(iid).orders if isinstance(books, BookSet) else books.orders(iid)


def run(make, *rows):
    books = make()
    books.apply(mbo(*rows))
    return books


# ----- the hand-written cases, on both books -----------------------------------------------------


def test_add_builds_levels_and_bbo(make):
    b = run(
        make,
        ("A", "B", 1, 100.0, 5),
        ("A", "B", 2, 100.0, 3),
        ("A", "B", 3, 99.75, 10),
        ("A", "A", 4, 100.5, 2),
        ("A", "A", 5, 100.25, 7),
    )
    assert b.bbo(IID) == BBO(p(100.0), 8, 2, p(100.25), 7, 1)
    assert b.depth(IID, 5) == (
        [(p(100.0), 8, 2), (p(99.75), 10, 1)],
        [(p(100.25), 7, 1), (p(100.5), 2, 1)],
    )
    assert b.depth(IID, 1) == ([(p(100.0), 8, 2)], [(p(100.25), 7, 1)])
    assert b.depth(IID, 0) == ([], []) and b.depth(999, 5) == ([], [])
    assert not b.is_crossed(IID) and not b.is_crossed(999)
    assert b.bbo(999) is None


def test_cancel_full_and_partial_and_best_repair(make):
    b = run(
        make,
        ("A", "B", 1, 100.0, 5),
        ("A", "B", 2, 99.5, 4),
        ("A", "B", 3, 99.0, 1),
        ("C", "B", 1, 100.0, 2),
    )
    assert b.bbo(IID)[:3] == (p(100.0), 3, 1)
    b.apply(mbo(("C", "B", 1, 100.0, 3)))
    assert b.bbo(IID)[:3] == (p(99.5), 4, 1)
    b.apply(mbo(("C", "B", 2, 99.5, 4), ("C", "B", 3, 99.0, 1)))
    assert b.bbo(IID) == BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)
    assert b.stats()["anomalies"] == {}


def test_modify_size_keeps_level_and_modify_price_moves_order(make):
    b = run(make, ("A", "A", 1, 101.0, 5), ("A", "A", 2, 101.0, 5), ("A", "A", 3, 102.0, 1))
    b.apply(mbo(("M", "A", 1, 101.0, 2)))
    assert b.bbo(IID)[3:] == (p(101.0), 7, 2)
    b.apply(mbo(("M", "A", 1, 101.0, 9)))
    assert b.bbo(IID)[3:] == (p(101.0), 14, 2)
    b.apply(mbo(("M", "A", 1, 100.5, 9)))
    assert b.depth(IID, 3)[1] == [(p(100.5), 9, 1), (p(101.0), 5, 1), (p(102.0), 1, 1)]
    b.apply(mbo(("M", "A", 1, 103.0, 9)))
    assert b.depth(IID, 4)[1] == [(p(101.0), 5, 1), (p(102.0), 1, 1), (p(103.0), 9, 1)]
    assert orders_of(b, IID)[1] == (False, p(103.0), 9)


def test_clear_empties_only_that_instrument(make):
    b = run(
        make,
        ("A", "B", 1, 100.0, 5, LAST, 1),
        ("A", "A", 2, 101.0, 5, LAST, 1),
        ("A", "B", 3, 50.0, 5, LAST, 2),
        ("R", "N", 0, None, 0, LAST, 1),
    )
    assert b.bbo(1) == BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)
    assert orders_of(b, 1) == {}
    assert b.bbo(2)[:3] == (p(50.0), 5, 1)
    # The cleared book rebuilds, and a dead order's id can come back as a new order.
    b.apply(mbo(("A", "B", 4, 99.0, 1, LAST, 1), ("A", "A", 1, 102.0, 3, LAST, 1)))
    assert b.bbo(1) == BBO(p(99.0), 1, 1, p(102.0), 3, 1)
    b.apply(mbo(("C", "B", 2, 101.0, 5, LAST, 1)))  # died with the clear: unknown now
    s = b.stats()
    assert s["clears"] == 1 and s["anomalies"] == {"cancel_unknown_id": 1}
    assert s["instruments"][1]["orders"] == 2


def test_trade_and_fill_leave_book_unchanged(make):
    b = run(make, ("A", "B", 1, 100.0, 5), ("A", "A", 2, 100.25, 5))
    before = (b.bbo(IID), b.depth(IID, 5), dict(orders_of(b, IID)))
    b.apply(mbo(("T", "A", 99, 100.0, 2, 0), ("F", "B", 1, 100.0, 2, LAST)))
    assert (b.bbo(IID), b.depth(IID, 5), dict(orders_of(b, IID))) == before
    s = b.stats()
    assert (s["trades"], s["fills"], s["hidden_fills"], s["anomalies"]) == (1, 1, 0, {})
    b.apply(mbo(("C", "B", 1, 100.0, 2, 0), ("N", "N", 0, None, 0, LAST)))
    assert b.bbo(IID)[:3] == (p(100.0), 3, 1)


def test_fill_of_unknown_order_is_hidden_fill_not_an_order(make):
    b = run(make, ("A", "A", 2, 100.25, 5), ("T", "B", 50, 100.25, 3, 0), ("F", "A", 77, 100.25, 3))
    s = b.stats()
    assert s["hidden_fills"] == 1
    assert s["instruments"][IID]["hidden_fill_size"] == 3
    assert 77 not in orders_of(b, IID)
    assert b.bbo(IID)[3:] == (p(100.25), 5, 1)
    assert s["anomalies"] == {}


def test_unknown_ids_and_bad_records_are_anomalies_not_errors(make):
    b = run(
        make,
        ("A", "B", 1, 100.0, 5),
        ("C", "B", 42, 100.0, 5),
        ("M", "B", 43, 100.0, 5),
        ("C", "B", 1, 100.0, 8),
        ("A", "N", 2, 100.0, 1),
        ("A", "B", 3, None, 1),
        ("A", "B", 4, 99.0, 2),
        ("A", "B", 4, 98.0, 3),
        ("X", "B", 5, 98.0, 3),
        ("A", "A", 6, 101.0, 0),  # zero size
        ("A", "A", 7, 101.0, 4),
        ("M", "A", 7, None, 4),  # modify to no price: the order goes
    )
    assert b.stats()["anomalies"] == {
        "cancel_unknown_id": 1,
        "modify_unknown_id": 1,
        "cancel_oversize": 1,
        "add_no_side": 1,
        "add_bad_price_or_size": 2,
        "add_duplicate_id": 1,
        "unknown_action": 1,
        "modify_bad_price_or_size": 1,
    }
    assert b.depth(IID, 5) == ([(p(98.0), 3, 1)], [])
    assert orders_of(b, IID) == {4: (True, p(98.0), 3)}


def test_changes_apply_only_at_f_last(make):
    b = make()
    b.apply(mbo(("A", "B", 1, 100.0, 5), ("A", "A", 2, 100.5, 5)))
    b.apply(mbo(("A", "A", 3, 99.75, 1, 0), ("A", "B", 4, 99.5, 1, 0)))
    assert b.bbo(IID) == BBO(p(100.0), 5, 1, p(100.5), 5, 1)
    assert b.stats()["pending"] == 2
    b.apply(mbo(("C", "B", 1, 100.0, 5, LAST)))
    assert b.bbo(IID) == BBO(p(99.5), 1, 1, p(99.75), 1, 1)
    assert not b.is_crossed(IID)
    assert b.stats()["pending"] == 0


def test_f_last_is_per_instrument(make):
    b = make()
    b.apply(mbo(("A", "B", 1, 100.0, 5, 0, 1), ("A", "B", 2, 50.0, 5, LAST, 2)))
    assert b.bbo(1) == BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)
    assert b.bbo(2)[:3] == (p(50.0), 5, 1)
    b.apply(mbo(("N", "N", 0, None, 0, LAST, 1)))
    assert b.bbo(1)[:3] == (p(100.0), 5, 1)


def test_flush_applies_a_cut_off_event(make):
    b = make()
    b.apply(mbo(("A", "B", 1, 100.0, 5, 0)))
    assert b.bbo(IID)[0] == UNDEF_PRICE
    b.flush()
    assert b.bbo(IID)[:3] == (p(100.0), 5, 1)
    assert b.stats()["pending"] == 0


def test_pre_trade_bbo_is_the_last_event_boundary(make):
    b = make()
    assert len(b.apply(mbo()[:0], pre_trade=True)) == 0 and b.apply(mbo()[:0]) is None
    b.apply(mbo(("A", "B", 1, 100.0, 5), ("A", "A", 2, 100.25, 4)))
    out = b.apply(
        mbo(
            ("A", "A", 3, 100.0, 1, 0),
            ("T", "N", 0, 100.0, 1, 0),
            ("F", "B", 1, 100.0, 1, 0),
            ("C", "A", 3, 100.0, 1, 0),
            ("C", "B", 1, 100.0, 1, LAST),
        ),
        pre_trade=True,
    )
    assert out.dtype == PRE_TRADE_DTYPE and len(out) == 1
    r = out[0]
    assert (r["index"], r["price"], r["size"], r["side"]) == (3, p(100.0), 1, b"N")
    assert (r["bid_px"], r["bid_sz"], r["bid_ct"]) == (p(100.0), 5, 1)
    assert (r["ask_px"], r["ask_sz"], r["ask_ct"]) == (p(100.25), 4, 1)
    assert b.bbo(IID) == BBO(p(100.0), 4, 1, p(100.25), 4, 1)
    none = b.apply(mbo(("A", "B", 9, 99.0, 1)), pre_trade=True)
    assert none.dtype == PRE_TRADE_DTYPE and len(none) == 0


def test_order_ids_are_per_instrument_and_full_64_bit(make):
    big = 2**64 - 1
    b = run(make, ("A", "B", big, 100.0, 5, LAST, 1), ("A", "A", big, 101.0, 2, LAST, 2))
    assert orders_of(b, 1) == {big: (True, p(100.0), 5)}
    assert orders_of(b, 2) == {big: (False, p(101.0), 2)}
    b.apply(mbo(("C", "B", big, 100.0, 5, LAST, 1)))
    assert orders_of(b, 1) == {} and orders_of(b, 2) == {big: (False, p(101.0), 2)}
    assert b.stats()["anomalies"] == {}


# ----- parity: random streams that hit every branch and every table growth -----------------------


def random_stream(seed: int, n: int, instruments: int = 90) -> np.ndarray:
    """Records of many instruments with multi-record events, snapshots, clears, reused and
    unknown ids, bad sides/prices/sizes and unknown actions: every anomaly and every growth."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, MBO_DTYPE)
    iids = rng.integers(1, 2**31, instruments)
    acts = np.array(list(b"AAAACCCMMMFFTNRX"), np.uint8)
    next_oid = 2**63 - 1000  # crosses 2**63: ids above it are negative as int64
    live: dict[int, list[int]] = {int(i): [] for i in iids}
    for k in range(n):
        iid = int(iids[min(int(rng.zipf(1.6)) - 1, instruments - 1)])
        act = acts[rng.integers(len(acts))]
        if act == ord("R") and rng.random() < 0.9:
            act = ord("A")  # clears rare
        ids = live[iid]
        if act == ord("A"):
            if ids and rng.random() < 0.03:
                oid = ids[rng.integers(len(ids))]  # duplicate add
            else:
                next_oid += int(rng.integers(1, 4))
                oid = next_oid % 2**64
                ids.append(oid)
        elif ids and rng.random() < 0.93:
            oid = ids[rng.integers(len(ids))]
        else:
            oid = int(rng.integers(0, 2**63))  # unknown (hidden fill, bad cancel)
        side = rng.choice(np.frombuffer(b"BBBBBAAAAAN", np.uint8))
        bid = side == ord("B")
        price = p(100.0) + int(rng.integers(-60, 10) if bid else rng.integers(-10, 60)) * p(0.25)
        if rng.random() < 0.01:
            price = UNDEF_PRICE
        size = int(rng.integers(0, 12)) if rng.random() < 0.05 else int(rng.integers(1, 12))
        flags = LAST if rng.random() < 0.55 else (SNAPSHOT if rng.random() < 0.1 else 0)
        out[k] = (
            14,
            0xA0,
            1,
            iid,
            1_000 + k,
            oid,
            price,
            size,
            flags,
            0,
            bytes([act]),
            bytes([side]),
            1_000 + k,
            0,
            k,
        )
    # One very long event (a snapshot with no F_LAST until the end): the pending buffer grows.
    big = out[-3000:]
    big["instrument_id"] = iids[0]
    big["flags"] = SNAPSHOT
    big["action"] = b"A"
    big["order_id"] = np.arange(len(big)) + 10**12
    big[-1:]["flags"] = LAST
    return out


def assert_same(fast: FastBookSet, ref: BookSet, depth: int = 10_000) -> None:
    """Identical counters, BBOs, full ladders and orders for every instrument."""
    assert fast.stats() == ref.stats()
    assert fast.records == ref.records
    assert sorted(fast.instruments()) == sorted(ref.books)
    for iid in ref.books:
        assert fast.bbo(iid) == ref.bbo(iid), iid
        assert fast.is_crossed(iid) == ref.is_crossed(iid)
        assert fast.depth(iid, depth) == ref.depth(iid, depth), iid
        assert fast.orders(iid) == ref.book(iid).orders, iid


def run_chunked(books, recs: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    parts = [books.apply(part, pre_trade=True) for part in np.split(recs, cuts)]
    return np.concatenate(parts)


def random_cuts(rng, recs: np.ndarray, k: int) -> np.ndarray:
    """Cut points, half of them just inside a multi-record event (after a non-F_LAST record)."""
    open_ = np.flatnonzero((recs["flags"][:-1] & LAST) == 0) + 1
    a = rng.choice(np.arange(1, len(recs)), size=k // 2, replace=False)
    b = rng.choice(open_, size=min(k - k // 2, len(open_)), replace=False)
    return np.unique(np.concatenate([a, b]))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_parity_under_chunkings(seed):
    recs = random_stream(seed, 12_000)
    ref = BookSet()
    want = ref.apply(recs, pre_trade=True)
    assert len(want) == int((recs["action"] == b"T").sum())
    rng = np.random.default_rng(seed)
    for chunks in (0, 7, 300):
        fast = FastBookSet()
        got = run_chunked(fast, recs, random_cuts(rng, recs, chunks))
        assert np.array_equal(got, want)
        assert_same(fast, ref)
    anomalies = ref.stats()["anomalies"]
    assert set(anomalies) == set(ANOMALY_KINDS), anomalies
    assert ref.stats()["clears"] > 0 and ref.stats()["hidden_fills"] > 0
    # Cut off mid-event, then flushed: still the same.
    fast, ref = FastBookSet(), BookSet()
    half = recs[: len(recs) - 1]  # the long event's F_LAST never comes
    fast.apply(half)
    ref.apply(half)
    assert fast.stats()["pending"] == ref.stats()["pending"] >= 2999
    fast.flush()
    ref.flush()
    assert_same(fast, ref)


def test_growth_from_many_instruments_and_orders():
    """Thousands of books and orders: every table grows many times, nothing is lost."""
    recs = random_stream(9, 40_000, instruments=3_000)
    fast, ref = FastBookSet(), BookSet()
    assert np.array_equal(fast.apply(recs, pre_trade=True), ref.apply(recs, pre_trade=True))
    assert_same(fast, ref)
    assert len(fast.instruments()) > 500


def test_any_array_layout_is_accepted():
    recs = random_stream(4, 3_000)
    strided = recs[::2]  # not contiguous
    ref = BookSet()
    fast = FastBookSet()
    assert np.array_equal(fast.apply(strided, pre_trade=True), ref.apply(strided, pre_trade=True))
    readonly = recs[1::2].copy()
    readonly.flags.writeable = False
    assert np.array_equal(fast.apply(readonly, pre_trade=True), ref.apply(readonly, pre_trade=True))
    assert_same(fast, ref)


def test_state_pickles_mid_event_and_carries_on():
    """All state is numpy arrays: a checkpoint taken inside open events resumes exactly."""
    import pickle

    recs = random_stream(5, 4_000)
    ref = BookSet()
    want = ref.apply(recs, pre_trade=True)
    first = FastBookSet()
    got = [first.apply(recs[:2_500], pre_trade=True)]
    assert first.stats()["pending"] > 0
    second = pickle.loads(pickle.dumps(first))
    got.append(second.apply(recs[2_500:], pre_trade=True))
    assert np.array_equal(np.concatenate(got), want)
    assert_same(second, ref)


def test_warm_up_compiles_every_kernel():
    from ifd_core.analysis.order_book_fast import warm_up

    warm_up()
    assert warm_up() < 1.0  # everything is compiled now


# ----- parity on real and simulated data ---------------------------------------------------------


@pytest.fixture(scope="module")
def esh4() -> np.ndarray:
    from ifd_core.marketdata.dbn_files import read_dbn

    if not ESH4.exists():
        pytest.skip(f"sample not found: {ESH4}")
    return read_dbn(ESH4).arrays["mbo"]


@pytest.fixture(scope="module")
def esm4() -> np.ndarray:
    from ifd_core.marketdata.dbn_files import read_dbn

    if not ESM4.exists():
        pytest.skip(f"sample not found: {ESM4}")
    return read_dbn(ESM4).arrays["mbo"]


@pytest.fixture(scope="module")
def sim_day(tmp_path_factory) -> np.ndarray:
    from ifd_core.marketdata.dbn_files import read_dbn
    from ifd_core.simulator.market import simulate_market

    summary = simulate_market(tmp_path_factory.mktemp("sim"), days=1, seed=7, scale=0.3)
    mbo_file = next(f for f in summary.files if f.name.endswith(".mbo.dbn.zst"))
    return read_dbn(mbo_file).arrays["mbo"]


@pytest.mark.parametrize("which", ["esh4", "esm4", "sim_day"])
def test_parity_on_real_and_simulated_data(which, request):
    recs = request.getfixturevalue(which)
    ref = BookSet()
    want = ref.apply(recs, pre_trade=True)
    fast = FastBookSet()
    assert np.array_equal(fast.apply(recs, pre_trade=True), want)
    assert_same(fast, ref)
    rng = np.random.default_rng(11)
    for _ in range(2):
        chunked = FastBookSet()
        assert np.array_equal(run_chunked(chunked, recs, random_cuts(rng, recs, 200)), want)
        assert_same(chunked, ref)
    fast.flush()
    ref.flush()
    assert_same(fast, ref)
    if which == "sim_day":  # the simulator's many instruments and multi-record events
        s = ref.stats()
        assert len(s["instruments"]) > 100 and s["events"] < s["records"] / 2


def test_esh4_never_crossed_outside_the_pre_open_and_levels_sound(esh4):
    books = FastBookSet(audit=True)
    rng = np.random.default_rng(3)
    run_chunked(books, esh4, random_cuts(rng, esh4, 100))
    log = books.audit_log()
    assert len(log) == 47_022  # every F_LAST boundary
    assert np.array_equal(log["index"], np.flatnonzero(esh4["flags"] & LAST))
    ts = esh4["ts_event"][log["index"]].astype(np.int64)
    pre_open = (ts >= _ts(22, 39)) & (ts < _ts(23, 0))
    assert not (log["crossed"] | log["locked"])[~pre_open].any()
    assert log["crossed"][pre_open].any()  # the legitimate pre-open cross: not vacuous
    assert (log["bad_levels"] == 0).all()  # no level ever non-positive at a boundary
    s = books.stats()
    assert (s["records"], s["trades"], s["fills"], s["hidden_fills"]) == (68_792, 2_973, 6_371, 7)
    assert s["anomalies"] == {} and s["pending"] == 0
    # Level totals equal the sum of their orders (no drift after 68k records).
    orders = books.orders(17077)
    assert all(sz > 0 for _, _, sz in orders.values())
    bids, asks = books.depth(17077, 10_000)
    for is_bid, levels in ((True, bids), (False, asks)):
        agg: dict[int, list[int]] = {}
        for side, px, sz in orders.values():
            if side == is_bid:
                a = agg.setdefault(px, [0, 0])
                a[0] += sz
                a[1] += 1
        assert agg == {px: [sz, ct] for px, sz, ct in levels}


def test_esm4_clear_then_snapshot_never_crossed(esm4):
    books = FastBookSet(audit=True)
    books.apply(esm4)
    log = books.audit_log()
    assert len(log) == int((esm4["flags"] & LAST != 0).sum())
    assert not (log["crossed"] | log["locked"]).any() and (log["bad_levels"] == 0).all()
    s = books.stats()
    assert s["clears"] == 1 and s["anomalies"] == {} and s["hidden_fills"] == 0
    bbo = books.bbo(5602)
    assert bbo.bid_px < bbo.ask_px and bbo.bid_sz > 0 and bbo.ask_sz > 0
