"""The Massive options client against a loopback HTTPS server (tests/servers/massive_http.py).

The official ``massive`` client does the requests; IFD's layer walks the pages, signs the trades
by the quote in force and turns every bad answer into one MassiveError with a one-line message
and no rows. Failures of the dependency move its breaker, mistakes of ours (a rejected key, no
contracts, too many contracts) do not. The market served is SYNTHETIC.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import polars as pl
import pytest

from ifd_core.marketdata import massive_options as mo
from ifd_core.marketdata.historical import breakers
from ifd_core.settings import get_settings
from tests.helpers import FakeClock, client_resilience, loopback_settings
from tests.servers.massive_http import (
    CONTRACTS,
    PRODUCTION,
    T0,
    TEST_API_KEY,
    MassiveServer,
    S,
    massive_server_fixture,  # noqa: F401 - provides the `massive_server` fixture
)

START, END = T0, T0 + 300 * S


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def settings_for(
    server: MassiveServer | None, data_dir: Path, *, failures: int = 1, attempts: int = 2, **m
):
    m = {"requests_per_minute": 10_000, **m}  # off here; the throttle's own tests set it
    resilience = client_resilience(failures, attempts)
    return loopback_settings("massive", TEST_API_KEY, server, data_dir, resilience=resilience, **m)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client_for(settings, sleeps: Sleeps) -> mo.MassiveOptionsClient:
    return mo.make_client(settings, sleep=sleeps)


# The SYNTHETIC trades of tests/servers/massive_http.py in [T0, T0 + 300 s), signed by hand:
# (ticker, seconds after T0, price, size, bid, ask, aggressor).
EXPECTED = [
    ("O:NDX260320P19500000", 5, 40.0, 1.0, None, None, "N"),  # no quote yet
    ("O:QQQ260320C00480000", 10, 2.50, 10.0, 2.40, 2.50, "B"),
    ("O:QQQ260320P00470000", 20, 1.10, 8.0, 1.00, 1.10, "B"),
    ("O:NDX260320C19800000", 30, 61.0, 2.0, 59.0, 61.0, "B"),
    ("O:NDX260320P19500000", 60, 38.0, 3.0, 38.0, 39.5, "S"),
    ("O:QQQ260320C00480000", 70, 2.40, 5.0, 2.40, 2.50, "S"),
    ("O:QQQ260320P00470000", 90, 1.00, 3.0, 1.05, 1.15, "S"),
    ("O:QQQ260320C00480000", 130, 2.45, 4.0, 2.40, 2.50, "N"),
    ("O:QQQ260320C00480000", 200, 2.70, 2.0, 2.50, 2.60, "B"),
]


def _seen(frame: pl.DataFrame) -> list[tuple]:
    return [
        (
            r["ticker"],
            (r["ts"] - T0) // S,
            r["price"],
            r["size"],
            r["bid"],
            r["ask"],
            r["aggressor"],
        )
        for r in frame.iter_rows(named=True)
    ]


def test_fetches_and_signs_the_documented_answers_exactly(massive_server, data_dir, sleeps):
    client = client_for(settings_for(massive_server, data_dir), sleeps)
    got = client.fetch(START, END)
    frame = got.trades
    assert frame.schema == pl.Schema(mo.TRADES_SCHEMA)
    assert _seen(frame) == EXPECTED
    assert frame["origin"].unique().to_list() == ["massive"]
    assert frame.filter(pl.col("ticker") == "O:NDX260320C19800000")["premium"].to_list() == [
        61.0 * 2 * 100
    ]
    # 4 contracts: the 2026-03-23 expiry is beyond expiry_days=2 of 2026-03-20 (never asked).
    assert got.contracts == 4 and got.requests == massive_server.count()
    contract_reqs = [r for r in massive_server.requests if r.path == CONTRACTS]
    assert [r.params["underlying_ticker"] for r in contract_reqs] == ["QQQ", "NDX"]
    assert contract_reqs[0].params["expiration_date.gte"] == "2026-03-20"
    assert contract_reqs[0].params["expiration_date.lte"] == "2026-03-22"
    assert massive_server.count("/v3/trades/O:QQQ260323C00490000") == 0
    # The key travels only as the bearer token, never in a URL.
    assert {r.authorization for r in massive_server.requests} == {f"Bearer {TEST_API_KEY}"}
    assert all(TEST_API_KEY not in str(r.params) for r in massive_server.requests)
    assert len(got.source_sha) == 16


def test_pages_are_followed_on_the_configured_host(massive_server, data_dir, sleeps):
    """next_url names api.massive.com; the cursor is asked of the loopback (or the test would
    fail to connect), and the rows of every page are kept, once."""
    one = client_for(settings_for(massive_server, data_dir), sleeps).fetch(START, END)
    paged = client_for(settings_for(massive_server, data_dir, page_limit=1), sleeps).fetch(
        START, END
    )
    assert _seen(paged.trades) == _seen(one.trades) == EXPECTED
    cursors = [r for r in massive_server.requests if "cursor" in r.params]
    assert len(cursors) >= 5 and paged.requests > one.requests
    assert all(set(r.params) == {"cursor"} for r in cursors)
    assert PRODUCTION.startswith("https://api.massive.com")


def test_the_expiry_days_and_strike_band_narrow_the_contracts(massive_server, data_dir, sleeps):
    s = settings_for(massive_server, data_dir, expiry_days=0, strike_band_pct=1.0)
    got = client_for(s, sleeps).fetch(START, END, reference={"QQQ": 478.0, "NDX": 19700.0})
    # QQQ 478 ± 1 %: 473.22..482.78 keeps the 480 call only; NDX 19700 ± 197 keeps 19800 only.
    assert sorted(got.trades["ticker"].unique().to_list()) == [
        "O:NDX260320C19800000",
        "O:QQQ260320C00480000",
    ]
    assert got.contracts == 2
    qqq = next(r for r in massive_server.requests if r.params.get("underlying_ticker") == "QQQ")
    assert float(qqq.params["strike_price.gte"]) == pytest.approx(473.22)
    assert qqq.params["expiration_date.lte"] == "2026-03-20"


def test_too_many_contracts_is_refused_before_any_trade(massive_server, data_dir, sleeps):
    client = client_for(settings_for(massive_server, data_dir, max_contracts=1), sleeps)
    with pytest.raises(mo.MassiveError, match="more than IFD_MASSIVE__MAX_CONTRACTS=1"):
        client.fetch(START, END)
    assert massive_server.count("/v3/trades/") == 0


def test_too_many_pages_is_an_error_not_a_cut_result(massive_server, data_dir, sleeps):
    s = settings_for(massive_server, data_dir, page_limit=1, max_pages=2)
    with pytest.raises(mo.MassiveError, match="more than IFD_MASSIVE__MAX_PAGES=2 pages"):
        client_for(s, sleeps).fetch(START, END)


# mode, error class, counted by the breaker, words of the message
BAD = [
    ("auth", mo.MassiveError, False, "HTTP 401: not authorised"),
    ("not_entitled", mo.MassiveError, False, "not entitled to this data"),
    ("rate_limit", mo.MassiveRateLimited, True, "HTTP 429: rate limited"),
    ("empty", mo.MassiveEmpty, False, "listed no QQQ options"),
    ("malformed", mo.MassiveBadAnswer, True, "malformed JSON"),
    ("wrong_types", mo.MassiveBadAnswer, True, "price 'n/a' is not a number"),
    ("server_error", mo.MassiveTransient, True, "HTTP 500: Massive server error"),
]


@pytest.mark.parametrize(("mode", "error", "counted", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_answer_is_one_error_and_no_rows(
    massive_server, data_dir, sleeps, transitions, mode, error, counted, words
):
    massive_server.set_mode(mode)
    client = client_for(settings_for(massive_server, data_dir, attempts=1), sleeps)
    with pytest.raises(mo.MassiveError) as info:
        client.fetch(START, END)
    exc = info.value
    assert type(exc) is error
    message = str(exc)
    assert words in message and "\n" not in message and TEST_API_KEY not in message
    assert TEST_API_KEY not in "".join(traceback.format_exception(exc))
    name = f"massive:{client.host}"
    if counted:
        assert [(t.breaker, t.from_state, t.to_state) for t in transitions] == [
            (name, "closed", "open")
        ]
        sent = massive_server.count()
        with pytest.raises(mo.MassiveError, match="not attempted"):
            client.fetch(START, END)
        assert massive_server.count() == sent  # an open breaker sends nothing
    else:
        assert transitions == []
        assert breakers().get(name).state == "closed"


def test_a_malformed_later_page_loses_the_whole_fetch(massive_server, data_dir, sleeps):
    """The first pages were good; the window is still all or nothing."""
    massive_server.set_mode("malformed_page2")
    s = settings_for(massive_server, data_dir, page_limit=1, failures=5)
    with pytest.raises(mo.MassiveBadAnswer, match="malformed JSON"):
        client_for(s, sleeps).fetch(START, END)
    assert massive_server.count() >= 2  # a first page was served before the bad one


def test_a_server_error_is_retried_and_then_served(massive_server, data_dir, sleeps):
    massive_server.set_mode("server_error", times=1)
    got = client_for(settings_for(massive_server, data_dir, failures=3), sleeps).fetch(START, END)
    assert _seen(got.trades) == EXPECTED
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize("mode", ["malformed", "wrong_types", "rate_limit", "auth", "empty"])
def test_only_transient_failures_are_retried(massive_server, data_dir, sleeps, mode):
    massive_server.set_mode(mode)
    s = settings_for(massive_server, data_dir, failures=3, attempts=4)
    with pytest.raises(mo.MassiveError):
        client_for(s, sleeps).fetch(START, END)
    assert sleeps.waits == []


def test_a_wrong_key_never_shows(massive_server, data_dir, sleeps, caplog):
    wrong = "ms-wrongKey-SHOULD-NOT-LEAK-42"
    caplog.set_level(logging.DEBUG)
    s = settings_for(massive_server, data_dir, api_key=wrong)
    with pytest.raises(mo.MassiveError, match="IFD_MASSIVE__API_KEY") as info:
        client_for(s, sleeps).fetch(START, END)
    assert massive_server.requests[0].authorization == f"Bearer {wrong}"  # sent, to the server
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert "GET /v3/reference/options/contracts" in caplog.text  # urllib3 did log the request


def test_an_unreachable_host_is_transient_and_keyless(data_dir, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(settings_for(None, data_dir, failures=3), sleeps)
    with pytest.raises(mo.MassiveTransient, match="cannot reach 127.0.0.1:1") as info:
        client.fetch(START, END)
    assert TEST_API_KEY not in str(info.value) and TEST_API_KEY not in caplog.text
    assert len(sleeps.waits) == 1  # retried once (max_attempts 2)
    assert breakers().snapshot()[0]["consecutive_failures"] == 2


def test_a_slow_answer_times_out(massive_server, data_dir, sleeps):
    massive_server.set_mode("slow")
    massive_server.delay_s = 1.0
    s = settings_for(massive_server, data_dir, timeout_s=0.2, attempts=1)
    with pytest.raises(mo.MassiveTransient, match="timed out after 0.2 s"):
        client_for(s, sleeps).fetch(START, END)


def test_no_key_sends_nothing(massive_server, data_dir, sleeps):
    client = client_for(settings_for(massive_server, data_dir, api_key=""), sleeps)
    assert not client.enabled
    with pytest.raises(mo.MassiveError, match="no Massive API key"):
        client.fetch(START, END)
    assert massive_server.count() == 0


def test_scrub_removes_the_key_and_bearer_tokens():
    text = "GET /v3/trades/X?apiKey=s3cret&limit=1; Authorization: Bearer other; key s3cret"
    assert mo.scrub(text, "s3cret") == (
        "GET /v3/trades/X?apiKey=***&limit=1; Authorization: Bearer ***; key ***"
    )


def test_a_profile_may_not_hold_the_massive_key(tmp_path, monkeypatch):
    from ifd_core import settings as st

    (tmp_path / "leaky.toml").write_text('[massive]\napi_key = "ms-in-a-file"\n')
    monkeypatch.setattr(st, "PROFILES_DIR", tmp_path)
    with pytest.raises(st.ProfileError, match=r"massive\.api_key"):
        st.load_profile("leaky")
    s = st.get_settings(massive={"api_key": "k"})
    assert s.masked()["massive"]["api_key"] == "**********"
    # Where a cross-check comes from is not what a detector computes.
    assert s.config_version() == st.get_settings().config_version()


def test_sign_trades_by_hand():
    """SYNTHETIC: the quote in force is the contract's last at or before the trade; at/above
    the ask B, at/below the bid S; inside, crossed or without a quote N."""
    trades = pl.DataFrame(
        {
            "underlying": ["QQQ"] * 6,
            "ticker": ["A", "A", "A", "B", "B", "C"],
            "expiration": [None] * 6,
            "strike": [1.0] * 6,
            "right": ["C"] * 6,
            "shares_per_contract": [100.0] * 6,
            "ts": [10, 20, 30, 10, 25, 5],
            "sequence": [1, 2, 3, 1, 2, 1],
            "exchange": [None] * 6,
            "correction": [None] * 6,
            "price": [1.0, 0.9, 0.95, 2.0, 2.0, 3.0],
            "size": [1.0, 2.0, 3.0, 1.0, 1.0, 1.0],
        }
    )
    quotes = pl.DataFrame(
        {
            "ticker": ["A", "A", "B", "B"],
            "quote_ts": [10, 25, 5, 20],
            "bid": [0.9, 0.9, 1.9, 2.1],  # B at 20: crossed (bid 2.1 > ask 2.0)
            "ask": [1.0, 1.0, 2.0, 2.0],
        }
    )
    out = mo.sign_trades(trades, quotes)
    got = {(r["ticker"], r["ts"]): r["aggressor"] for r in out.iter_rows(named=True)}
    assert got == {
        ("A", 10): "B",  # quote at the same instant counts
        ("A", 20): "S",
        ("A", 30): "N",
        ("B", 10): "B",
        ("B", 25): "N",
        ("C", 5): "N",
    }
    assert out.filter(pl.col("ticker") == "A")["premium"].to_list() == pytest.approx(
        [100.0, 180.0, 285.0]
    )


def test_the_quote_lookback_decides_which_first_trades_are_signed(massive_server, data_dir, sleeps):
    """The QQQ 480 call's first trade (+10 s) is signed by the quote at -30 s; with a 10 s
    lookback that quote is never asked for and the trade stays unsigned."""
    s = settings_for(massive_server, data_dir, quote_lookback_s=10.0)
    got = client_for(s, sleeps).fetch(START, END)
    first = got.trades.filter(pl.col("ticker") == "O:QQQ260320C00480000").row(0, named=True)
    assert (first["bid"], first["ask"], first["aggressor"]) == (None, None, "N")
    asked = [r for r in massive_server.requests if r.path.startswith("/v3/quotes/")]
    assert {int(r.params["timestamp.gte"]) for r in asked} == {START - 10 * S}


def test_requests_beyond_the_minute_limit_wait(massive_server, data_dir):
    # The free tier's 5 a minute: a fetch costs more than 5 requests (contracts per underlying,
    # trades and quotes per contract); every one is booked and no minute holds more than 5.
    clock = FakeClock(T0 / 1e9)
    s = settings_for(massive_server, data_dir, requests_per_minute=5)
    client = mo.make_client(s, clock=clock, sleep=clock.sleep)
    got = client.fetch(START, END)
    sent = client.limiter.count_today()
    assert sent == got.requests == massive_server.count() > 5
    assert clock.waits and all(0 < w <= 60.0 for w in clock.waits)
    stamps = [
        float(line.split()[0])
        for line in next((data_dir / "massive" / "requests").glob("*.log")).read_text().splitlines()
    ]
    assert len(stamps) == sent
    for t in stamps:
        assert sum(1 for u in stamps if t - 60.0 < u <= t) <= 5


def test_clients_share_the_minute(massive_server, data_dir):
    # Each request from a new client (another process): the sixth waits for the first to age out.
    clock = FakeClock(T0 / 1e9)
    s = settings_for(massive_server, data_dir, requests_per_minute=5)
    for i in range(6):
        mo.make_client(s, clock=clock, sleep=clock.sleep).last_trade_price("QQQ", END)
        clock.now += 1.0
        assert len(clock.waits) == (1 if i == 5 else 0)
    assert clock.waits[0] == pytest.approx(55.0)  # first sent at t, sixth asked at t + 5 s
    assert massive_server.count() == 6


def test_the_throttle_is_shared_code():
    from ifd_core.marketdata import barchart
    from ifd_core.ops.request_limits import RequestLimiter

    assert type(mo.make_client(get_settings()).limiter) is RequestLimiter
    assert not hasattr(barchart, "RequestLimiter") or barchart.RequestLimiter is RequestLimiter
