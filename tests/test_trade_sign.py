"""Trade signing: exchange aggressor first, then Lee–Ready (quote rule, tick test), else unknown."""

from __future__ import annotations

import numpy as np
import pytest

from ifd_core.analysis.order_book import PRE_TRADE_DTYPE, UNDEF_PRICE, replay
from ifd_core.analysis.trade_sign import METHOD_NAMES, TradeSigner, classify
from tests.conftest import NT

PX = 1_000_000_000
NO = None  # no quote on that side


def trades(*rows: tuple) -> np.ndarray:
    """Rows (side, price, bid, ask[, instrument_id]) in points; None = side of book empty."""
    out = np.zeros(len(rows), PRE_TRADE_DTYPE)
    for i, r in enumerate(rows):
        side, px, bid, ask = r[:4]
        out[i]["instrument_id"] = r[4] if len(r) > 4 else 1
        out[i]["side"] = side.encode()
        out[i]["price"] = round(px * PX)
        out[i]["bid_px"] = UNDEF_PRICE if bid is None else round(bid * PX)
        out[i]["ask_px"] = UNDEF_PRICE if ask is None else round(ask * PX)
    return out


def signs(t: np.ndarray, signer: TradeSigner | None = None) -> list[tuple[str, str]]:
    s = (signer or TradeSigner()).classify(t)
    return [
        (a.decode(), m) for a, m in zip(s.aggressor.tolist(), s.method_names.tolist(), strict=True)
    ]


def test_exchange_aggressor_wins_over_quotes():
    # A buy aggressor printing at the bid is still a buy: the exchange knows better than a rule.
    got = signs(trades(("B", 10.0, 10.0, 10.5), ("A", 10.5, 10.0, 10.5)))
    assert got == [("B", "aggressor"), ("A", "aggressor")]


def test_quote_rule_above_and_below_mid():
    got = signs(trades(("N", 10.4, 10.0, 10.5), ("N", 10.1, 10.0, 10.5)))
    assert got == [("B", "quote"), ("A", "quote")]


def test_at_mid_uses_tick_test_up_and_down():
    t = trades(
        ("B", 10.0, 10.0, 10.5),
        ("N", 10.25, 10.0, 10.5),  # uptick from 10.00
        ("A", 10.5, 10.0, 10.5),
        ("N", 10.25, 10.0, 10.5),  # downtick from 10.50
    )
    assert [x for i, x in enumerate(signs(t)) if i in (1, 3)] == [("B", "tick"), ("A", "tick")]


def test_zero_tick_carries_last_nonzero_tick():
    t = trades(
        ("A", 10.0, NO, NO),
        ("A", 10.25, NO, NO),  # uptick (signed by its own aggressor, but it sets the tick)
        ("N", 10.25, NO, NO),  # zero tick → previous nonzero: up
        ("N", 10.25, 10.0, 10.5),  # at mid, zero tick again → still up
        ("A", 10.0, NO, NO),  # downtick
        ("N", 10.0, NO, NO),  # zero tick → down
    )
    got = signs(t)
    assert got[2:4] == [("B", "tick"), ("B", "tick")]
    assert got[5] == ("A", "tick")


def test_no_quote_no_previous_trade_is_unknown():
    got = signs(trades(("N", 10.0, NO, NO), ("N", 10.0, NO, 10.5), ("N", 10.0, NO, NO)))
    # One-sided quotes have no mid; a zero tick with no earlier nonzero tick stays unknown.
    assert got == [("U", "unknown")] * 3


def test_crossed_quote_is_not_used():
    # The ESH4 opening print: side N against a still-crossed pre-open book.
    assert signs(trades(("N", 4800.25, 4809.0, 4785.5))) == [("U", "unknown")]


def test_tick_test_never_crosses_instruments():
    t = trades(("N", 10.0, NO, NO, 1), ("N", 20.0, NO, NO, 2), ("N", 15.0, NO, NO, 1))
    assert signs(t) == [("U", "unknown"), ("U", "unknown"), ("B", "tick")]


def test_chunked_signer_equals_one_shot():
    rng = np.random.default_rng(3)
    rows = [
        (
            str(rng.choice(["B", "A", "N", "N"])),
            float(rng.integers(0, 8) * 0.25 + 10),
            NO if rng.random() < 0.3 else 10.5,
            NO if rng.random() < 0.3 else 11.0,
            int(rng.integers(1, 4)),
        )
        for _ in range(500)
    ]
    t = trades(*rows)
    whole = classify(t)
    s = TradeSigner()
    parts = [s.classify(c) for c in np.array_split(t, 17)]
    assert np.array_equal(np.concatenate([p.aggressor for p in parts]), whole.aggressor)
    assert np.array_equal(np.concatenate([p.method for p in parts]), whole.method)
    assert set(METHOD_NAMES[whole.method]) >= {"aggressor", "quote", "tick"}


def test_misaligned_bbo_is_refused():
    with pytest.raises(ValueError, match="aligned"):
        classify(trades(("N", 10.0, NO, NO)), trades())


def test_esh4_trades_signed_from_mbo():
    from ifd_core.marketdata.dbn_files import read_dbn

    recs = read_dbn(NT / "esh4-glbx-mdp3-20231225.mbo.dbn.zst").arrays["mbo"]
    _, pt = replay(recs, pre_trade=True)
    s = classify(pt)
    names = s.method_names
    assert (names == "aggressor").sum() == 2_972
    # The single side-N print is the 23:00 UTC opening print, against a crossed book.
    (i,) = np.flatnonzero(names != "aggressor")
    assert pt[i]["bid_px"] > pt[i]["ask_px"]
    assert s.aggressor[i] == b"U"
