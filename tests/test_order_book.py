"""L3 book rebuilt from MBO: every action by hand, F_LAST batching, chunking, real ES samples."""

from __future__ import annotations

import datetime as dt

import databento_dbn
import numpy as np
import pytest

from ifd_core.analysis.order_book import (
    BBO,
    PRE_TRADE_DTYPE,
    UNDEF_PRICE,
    BookSet,
    replay,
)
from tests.conftest import NT

MBO_DTYPE = np.dtype(databento_dbn.MBOMsg._dtypes)
PX = 1_000_000_000  # fixed-point scale
LAST = 0x80
IID = 7

ESH4 = NT / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESM4 = (
    NT
    / "order_book_deltas_catalog"
    / "databento"
    / "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
)


def mbo(*rows: tuple) -> np.ndarray:
    """Rows (action, side, order_id, price in points, size[, flags[, instrument_id]]).

    flags default to F_LAST (one record per event), so each row is applied on its own.
    """
    out = np.zeros(len(rows), MBO_DTYPE)
    for i, r in enumerate(rows):
        action, side, oid, px, sz = r[:5]
        flags = r[5] if len(r) > 5 else LAST
        iid = r[6] if len(r) > 6 else IID
        price = UNDEF_PRICE if px is None else round(px * PX)
        out[i] = (
            14, 0xA0, 1, iid, 1_000 + i, oid, price, sz, flags, 0,
            action.encode(), side.encode(), 1_000 + i, 0, i,
        )  # fmt: skip
    return out


def run(*rows: tuple) -> BookSet:
    books = BookSet()
    books.apply(mbo(*rows))
    return books


def p(x: float) -> int:
    return round(x * PX)


# ----- each action -------------------------------------------------------------------------------


def test_add_builds_levels_and_bbo():
    b = run(
        ("A", "B", 1, 100.0, 5),
        ("A", "B", 2, 100.0, 3),
        ("A", "B", 3, 99.75, 10),
        ("A", "A", 4, 100.5, 2),
        ("A", "A", 5, 100.25, 7),
    )
    assert b.bbo(IID) == BBO(p(100.0), 8, 2, p(100.25), 7, 1)
    bids, asks = b.depth(IID, 5)
    assert bids == [(p(100.0), 8, 2), (p(99.75), 10, 1)]
    assert asks == [(p(100.25), 7, 1), (p(100.5), 2, 1)]
    assert not b.is_crossed(IID)
    assert b.bbo(999) is None


def test_cancel_full_and_partial_and_best_repair():
    b = run(
        ("A", "B", 1, 100.0, 5),
        ("A", "B", 2, 99.5, 4),
        ("A", "B", 3, 99.0, 1),
        ("C", "B", 1, 100.0, 2),  # partial: 3 left
    )
    assert b.bbo(IID)[:3] == (p(100.0), 3, 1)
    b.apply(mbo(("C", "B", 1, 100.0, 3)))  # rest of it: best level empties
    assert b.bbo(IID)[:3] == (p(99.5), 4, 1)
    b.apply(mbo(("C", "B", 2, 99.5, 4), ("C", "B", 3, 99.0, 1)))
    assert b.bbo(IID) == BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)
    assert b.stats()["anomalies"] == {}


def test_modify_size_keeps_level_and_modify_price_moves_order():
    b = run(("A", "A", 1, 101.0, 5), ("A", "A", 2, 101.0, 5), ("A", "A", 3, 102.0, 1))
    b.apply(mbo(("M", "A", 1, 101.0, 2)))  # size down
    assert b.bbo(IID)[3:] == (p(101.0), 7, 2)
    b.apply(mbo(("M", "A", 1, 101.0, 9)))  # size up
    assert b.bbo(IID)[3:] == (p(101.0), 14, 2)
    b.apply(mbo(("M", "A", 1, 100.5, 9)))  # price improves: new best
    assert b.depth(IID, 3)[1] == [(p(100.5), 9, 1), (p(101.0), 5, 1), (p(102.0), 1, 1)]
    b.apply(mbo(("M", "A", 1, 103.0, 9)))  # away from best: best repaired
    assert b.depth(IID, 4)[1] == [(p(101.0), 5, 1), (p(102.0), 1, 1), (p(103.0), 9, 1)]
    assert b.book(IID).orders[1] == (False, p(103.0), 9)


def test_clear_empties_only_that_instrument():
    b = run(
        ("A", "B", 1, 100.0, 5, LAST, 1),
        ("A", "A", 2, 101.0, 5, LAST, 1),
        ("A", "B", 3, 50.0, 5, LAST, 2),
        ("R", "N", 0, None, 0, LAST, 1),
    )
    assert b.bbo(1) == BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)
    assert b.book(1).orders == {}
    assert b.bbo(2)[:3] == (p(50.0), 5, 1)
    b.apply(mbo(("A", "B", 4, 99.0, 1, LAST, 1)))  # the cleared book rebuilds
    assert b.bbo(1)[:3] == (p(99.0), 1, 1)
    assert b.stats()["clears"] == 1


def test_trade_and_fill_leave_book_unchanged():
    b = run(("A", "B", 1, 100.0, 5), ("A", "A", 2, 100.25, 5))
    before = (b.bbo(IID), b.depth(IID, 5), dict(b.book(IID).orders))
    b.apply(mbo(("T", "A", 99, 100.0, 2, 0), ("F", "B", 1, 100.0, 2, LAST)))
    assert (b.bbo(IID), b.depth(IID, 5), dict(b.book(IID).orders)) == before
    s = b.stats()
    assert (s["trades"], s["fills"], s["hidden_fills"], s["anomalies"]) == (1, 1, 0, {})
    # The book moves only with the C/M that follow the fill, as on CME.
    b.apply(mbo(("C", "B", 1, 100.0, 2, 0), ("N", "N", 0, None, 0, LAST)))
    assert b.bbo(IID)[:3] == (p(100.0), 3, 1)


def test_fill_of_unknown_order_is_hidden_fill_not_an_order():
    b = run(("A", "A", 2, 100.25, 5), ("T", "B", 50, 100.25, 3, 0), ("F", "A", 77, 100.25, 3))
    s = b.stats()
    assert s["hidden_fills"] == 1
    assert s["instruments"][IID]["hidden_fill_size"] == 3
    assert 77 not in b.book(IID).orders
    assert b.bbo(IID)[3:] == (p(100.25), 5, 1)
    assert s["anomalies"] == {}


def test_unknown_ids_and_bad_records_are_anomalies_not_errors():
    b = run(
        ("A", "B", 1, 100.0, 5),
        ("C", "B", 42, 100.0, 5),  # unknown cancel
        ("M", "B", 43, 100.0, 5),  # unknown modify
        ("C", "B", 1, 100.0, 8),  # larger than the order: removed, not negative
        ("A", "N", 2, 100.0, 1),  # no side
        ("A", "B", 3, None, 1),  # no price
        ("A", "B", 4, 99.0, 2),
        ("A", "B", 4, 98.0, 3),  # duplicate id: the newest wins
        ("X", "B", 5, 98.0, 3),  # unknown action
    )
    assert b.stats()["anomalies"] == {
        "cancel_unknown_id": 1,
        "modify_unknown_id": 1,
        "cancel_oversize": 1,
        "add_no_side": 1,
        "add_bad_price_or_size": 1,
        "add_duplicate_id": 1,
        "unknown_action": 1,
    }
    assert b.depth(IID, 5) == ([(p(98.0), 3, 1)], [])
    assert b.book(IID).orders == {4: (True, p(98.0), 3)}


# ----- F_LAST batching -------------------------------------------------------------------------


def test_changes_apply_only_at_f_last():
    b = BookSet()
    b.apply(mbo(("A", "B", 1, 100.0, 5), ("A", "A", 2, 100.5, 5)))
    # One event: an ask added through the bid (crossed intermediate), then the bid taken out.
    b.apply(mbo(("A", "A", 3, 99.75, 1, 0), ("A", "B", 4, 99.5, 1, 0)))
    assert b.bbo(IID) == BBO(p(100.0), 5, 1, p(100.5), 5, 1)  # nothing visible yet
    assert b.stats()["pending"] == 2
    b.apply(mbo(("C", "B", 1, 100.0, 5, LAST)))
    assert b.bbo(IID) == BBO(p(99.5), 1, 1, p(99.75), 1, 1)
    assert not b.is_crossed(IID)
    assert b.stats()["pending"] == 0


def test_f_last_is_per_instrument():
    b = BookSet()
    b.apply(
        mbo(
            ("A", "B", 1, 100.0, 5, 0, 1),  # event of instrument 1, still open
            ("A", "B", 2, 50.0, 5, LAST, 2),  # instrument 2's F_LAST must not apply it
        )
    )
    assert b.bbo(1) == BBO(UNDEF_PRICE, 0, 0, UNDEF_PRICE, 0, 0)
    assert b.bbo(2)[:3] == (p(50.0), 5, 1)
    b.apply(mbo(("N", "N", 0, None, 0, LAST, 1)))
    assert b.bbo(1)[:3] == (p(100.0), 5, 1)


def test_flush_applies_a_cut_off_event():
    b = BookSet()
    b.apply(mbo(("A", "B", 1, 100.0, 5, 0)))
    assert b.bbo(IID)[0] == UNDEF_PRICE
    b.flush()
    assert b.bbo(IID)[:3] == (p(100.0), 5, 1)


def test_pre_trade_bbo_is_the_last_event_boundary():
    b = BookSet()
    b.apply(mbo(("A", "B", 1, 100.0, 5), ("A", "A", 2, 100.25, 4)))
    out = b.apply(
        mbo(
            ("A", "A", 3, 100.0, 1, 0),  # same event as the trade: not yet visible
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


def test_best_price_survives_many_level_churns():
    """The lazily-cleaned heap stays correct when levels are created and emptied repeatedly."""
    rng = np.random.default_rng(1)
    rows, live = [], {}
    for oid in range(1, 3000):
        if live and rng.random() < 0.45:
            k = int(rng.choice(list(live)))
            side, px, sz = live.pop(k)
            rows.append(("C", side, k, px, sz))
        else:
            side = "B" if rng.random() < 0.5 else "A"
            px = float(100 + (-1 if side == "B" else 1) * rng.integers(1, 40) * 0.25)
            sz = int(rng.integers(1, 9))
            live[oid] = (side, px, sz)
            rows.append(("A", side, oid, px, sz))
    b = run(*rows)
    bids = [v for v in live.values() if v[0] == "B"]
    asks = [v for v in live.values() if v[0] == "A"]
    want_bid = max(v[1] for v in bids)
    want_ask = min(v[1] for v in asks)
    bbo = b.bbo(IID)
    assert bbo.bid_px == p(want_bid) and bbo.ask_px == p(want_ask)
    assert bbo.bid_sz == sum(v[2] for v in bids if v[1] == want_bid)
    assert len(b.book(IID).bids) == len({v[1] for v in bids})


# ----- real data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def esh4() -> np.ndarray:
    from ifd_core.marketdata.dbn_files import read_dbn

    return read_dbn(ESH4).arrays["mbo"]


@pytest.fixture(scope="module")
def esm4() -> np.ndarray:
    from ifd_core.marketdata.dbn_files import read_dbn

    return read_dbn(ESM4).arrays["mbo"]


def _end_state(books: BookSet, iid: int):
    return books.bbo(iid), books.depth(iid, 10), books.stats()


@pytest.mark.parametrize("which", ["esh4", "esm4"])
def test_chunking_invariance(which, request):
    recs = request.getfixturevalue(which)
    iid = int(recs["instrument_id"][0])
    whole, whole_pt = replay(recs, pre_trade=True)
    rng = np.random.default_rng(7)
    for _ in range(3):
        books, pts = BookSet(), []
        cuts = np.sort(rng.choice(np.arange(1, len(recs)), size=200, replace=False))
        for part in np.split(recs, cuts):
            pts.append(books.apply(part, pre_trade=True))
        assert _end_state(books, iid) == _end_state(whole, iid)
        assert np.array_equal(np.concatenate(pts), whole_pt)
    assert len(whole_pt) == int((recs["action"] == b"T").sum())


def _ts(h: int, m: int) -> int:
    return int(dt.datetime(2023, 12, 25, h, m, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def _walk(recs: np.ndarray):
    """Replay with a check after every event: returns (books, [(ts_event, crossed, locked)])."""
    seen = []
    ts = recs["ts_event"]

    def hook(iid, index, book):
        sizes_ok = all(lv[0] > 0 and lv[1] > 0 for lv in book.bids.values()) and all(
            lv[0] > 0 and lv[1] > 0 for lv in book.asks.values()
        )
        assert sizes_ok, f"non-positive level at record {index}"
        seen.append((int(ts[index]), book.is_crossed, book.is_locked))

    books = BookSet()
    books.apply(recs, on_event=hook)
    return books, seen


def test_esh4_never_crossed_outside_the_pre_open(esh4):
    books, seen = _walk(esh4)
    assert len(seen) == 47_022  # every F_LAST boundary, as the README counts them
    pre_open = (_ts(22, 39), _ts(23, 0))
    bad = [
        t
        for t, crossed, locked in seen
        if (crossed or locked) and not pre_open[0] <= t < pre_open[1]
    ]
    assert bad == []
    # The legitimate pre-open cross is seen, so the check is not vacuous.
    assert any(crossed for t, crossed, _ in seen if pre_open[0] <= t < pre_open[1])
    s = books.stats()
    assert s["hidden_fills"] == 7
    assert s["anomalies"] == {}
    assert s["pending"] == 0
    assert (s["records"], s["trades"], s["fills"]) == (68_792, 2_973, 6_371)
    book = books.book(17077)
    assert all(o[2] > 0 for o in book.orders.values())
    # Level totals equal the sum of their orders (no drift after 68k records).
    for is_bid, levels in ((True, book.bids), (False, book.asks)):
        agg: dict[int, list[int]] = {}
        for side, px, sz in book.orders.values():
            if side == is_bid:
                a = agg.setdefault(px, [0, 0])
                a[0] += sz
                a[1] += 1
        assert agg == levels


def test_esm4_clear_then_snapshot_never_crossed(esm4):
    books, seen = _walk(esm4)
    assert not any(c or lk for _, c, lk in seen)
    s = books.stats()
    assert s["clears"] == 1 and s["anomalies"] == {} and s["hidden_fills"] == 0
    bbo = books.bbo(5602)
    assert bbo.bid_px < bbo.ask_px and bbo.bid_sz > 0 and bbo.ask_sz > 0
