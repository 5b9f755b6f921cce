"""The Barchart OnDemand client against a loopback HTTPS server (tests/servers/barchart_http.py).

Each bad answer must end as one BarchartError with a one-line message, no rows and no cached
file; failures of the dependency move its breaker, mistakes of ours (a rejected key, an empty
chain) do not. Throttling is checked by counting requests and waits on a fake clock, never by
timing. The chain served is SYNTHETIC.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from pathlib import Path

import polars as pl
import pytest

from ifd_core.marketdata import barchart as bc
from ifd_core.marketdata.historical import breakers
from tests.helpers import FakeClock, client_resilience, loopback_settings
from tests.servers.barchart_http import (
    DAY,
    PATH,
    TEST_API_KEY,
    BarchartServer,
    barchart_server_fixture,  # noqa: F401 - provides the `barchart_server` fixture
)

CLOCK_START = dt.datetime(2026, 3, 20, 22, 0, tzinfo=dt.UTC).timestamp()  # after the close


def settings_for(
    server: BarchartServer | None,
    data_dir: Path,
    *,
    failures: int = 1,
    attempts: int = 2,
    **barchart,
):
    resilience = client_resilience(failures, attempts)
    return loopback_settings(
        "barchart", TEST_API_KEY, server, data_dir, resilience=resilience, **barchart
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CLOCK_START)


def client_for(settings, clock: FakeClock) -> bc.BarchartClient:
    return bc.make_client(settings, clock=clock, sleep=clock.sleep)


# The SYNTHETIC chain of tests/servers/barchart_http.py, typed by hand.
EXPECTED = pl.DataFrame(
    {
        "date": [DAY] * 6,
        "root": ["NQ"] * 6,
        "symbol": [
            "NQH26|20750C",
            "NQH26|20750P",
            "NQM26|21000C",
            "NQM26|21000P",
            "NQM26|21500C",
            "NQM26|22000C",
        ],
        "expiration": [dt.date(2026, 3, 20)] * 2 + [dt.date(2026, 6, 18)] * 4,
        "strike": [20750.0, 20750.0, 21000.0, 21000.0, 21500.0, 22000.0],
        "right": ["C", "P", "C", "P", "C", "C"],
        "open_interest": [None, 4105, 1520, 2210, 980, 0],
        "volume": [12, 2230, 87, 143, 0, None],
        "settlement": [None, 3.5, 812.25, 640.5, 575.75, 301.0],
        "origin": ["barchart"] * 6,
    },
    schema=bc.SCHEMA,
)


def test_parses_the_documented_chain_exactly(barchart_server, data_dir, clock):
    client = client_for(settings_for(barchart_server, data_dir), clock)
    frame = client.chain(DAY)
    assert frame.schema == pl.Schema(bc.SCHEMA)
    assert frame.to_dicts() == EXPECTED.to_dicts()
    [req] = barchart_server.requests
    assert req.path == PATH
    assert req.params["apikey"] == TEST_API_KEY and req.params["root"] == "NQ"
    assert {"openInterest", "volume"} <= set(req.params["fields"].split(","))
    assert client.limiter.count_today() == 1


def test_a_cached_day_is_not_asked_again(barchart_server, data_dir, clock):
    s = settings_for(barchart_server, data_dir)
    first = client_for(s, clock).chain(DAY)
    again = client_for(s, clock).chain(DAY)  # a new client: another process, the same lake
    assert barchart_server.count() == 1
    assert again.to_dicts() == first.to_dicts() == EXPECTED.to_dicts()
    cached = data_dir / "barchart" / "raw" / "NQ" / f"{DAY}.json"
    assert cached.is_file() and TEST_API_KEY not in cached.read_text()


def test_without_the_cache_each_call_asks(barchart_server, data_dir, clock):
    client = client_for(settings_for(barchart_server, data_dir, cache=False), clock)
    client.chain(DAY)
    client.chain(DAY)
    assert barchart_server.count() == 2
    assert not (data_dir / "barchart" / "raw").exists()


# mode, error class, does it count against Barchart's breaker, words of the message
BAD = [
    ("auth", bc.BarchartError, False, "authentication failed"),
    ("rate_limit", bc.BarchartRateLimited, True, "rate limited"),
    ("rate_limit_body", bc.BarchartRateLimited, True, "rate limited"),
    ("empty", bc.BarchartEmpty, False, "returned no options"),
    ("no_content", bc.BarchartEmpty, False, "returned no options"),
    ("malformed", bc.BarchartBadAnswer, True, "malformed JSON"),
    ("wrong_types", bc.BarchartBadAnswer, True, "strike 'n/a' is not a number"),
    ("server_error", bc.BarchartTransient, True, "server error"),
]


@pytest.mark.parametrize(("mode", "error", "counted", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_answer_is_one_error_and_no_rows(
    barchart_server, data_dir, clock, transitions, mode, error, counted, words
):
    barchart_server.set_mode(mode)
    # One failure opens the breaker; no retries here (test_a_server_error_is_retried...).
    client = client_for(settings_for(barchart_server, data_dir, attempts=1), clock)
    with pytest.raises(bc.BarchartError) as info:
        client.chain(DAY)
    exc = info.value
    assert type(exc) is error
    message = str(exc)
    assert words in message and "\n" not in message and TEST_API_KEY not in message
    assert TEST_API_KEY not in "".join(traceback.format_exception(exc))  # nor in its chain
    assert not (data_dir / "barchart" / "raw").exists()  # nothing cached, no rows
    name = f"barchart:{client.host}"
    if counted:
        assert [(t.breaker, t.from_state, t.to_state) for t in transitions] == [
            (name, "closed", "open")
        ]
        sent = barchart_server.count()
        with pytest.raises(bc.BarchartError, match="not attempted"):
            client.chain(DAY)
        assert barchart_server.count() == sent  # an open breaker sends nothing
    else:
        assert transitions == []
        assert breakers().get(name).state == "closed"
    assert barchart_server.count() == 1


def test_a_server_error_is_retried_and_then_served(barchart_server, data_dir, clock):
    barchart_server.set_mode("server_error", times=1)
    client = client_for(settings_for(barchart_server, data_dir, failures=3), clock)
    assert client.chain(DAY).to_dicts() == EXPECTED.to_dicts()
    assert barchart_server.count() == 2 and len(clock.waits) == 1


@pytest.mark.parametrize("mode", ["malformed", "wrong_types", "rate_limit", "auth", "empty"])
def test_only_transient_failures_are_retried(barchart_server, data_dir, clock, mode):
    """Each retry is a request against the plan: a bad answer or a refusal is asked once."""
    barchart_server.set_mode(mode)
    client = client_for(settings_for(barchart_server, data_dir, failures=3, attempts=4), clock)
    with pytest.raises(bc.BarchartError):
        client.chain(DAY)
    assert barchart_server.count() == 1 and clock.waits == []


def test_a_wrong_key_never_shows(barchart_server, data_dir, clock, caplog):
    wrong = "bc-wrongKey-SHOULD-NOT-LEAK-42"
    caplog.set_level(logging.DEBUG)  # urllib3 logs request URLs at DEBUG
    client = client_for(settings_for(barchart_server, data_dir, api_key=wrong), clock)
    with pytest.raises(bc.BarchartError, match="IFD_BARCHART__API_KEY") as info:
        client.chain(DAY)
    assert barchart_server.requests[0].params["apikey"] == wrong  # it was sent, to the server
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert "apikey=***" in caplog.text  # the redacted URL was logged: the filter ran


def test_an_unreachable_host_is_transient_and_keyless(data_dir, clock, caplog, transitions):
    caplog.set_level(logging.DEBUG)
    client = client_for(settings_for(None, data_dir, failures=3), clock)
    with pytest.raises(bc.BarchartTransient, match="cannot reach 127.0.0.1:1") as info:
        client.chain(DAY)
    assert TEST_API_KEY not in str(info.value) and TEST_API_KEY not in caplog.text
    assert len(clock.waits) == 1  # retried once (max_attempts 2)
    assert breakers().snapshot()[0]["consecutive_failures"] == 2
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files and all(TEST_API_KEY not in p.read_text() for p in files)


def test_a_slow_answer_times_out(barchart_server, data_dir, clock):
    barchart_server.set_mode("slow")
    barchart_server.delay_s = 1.0
    client = client_for(settings_for(barchart_server, data_dir, timeout_s=0.2), clock)
    with pytest.raises(bc.BarchartTransient, match="timed out after 0.2 s"):
        client.chain(DAY)


def test_another_day_is_refused_but_kept_under_its_own_date(barchart_server, data_dir, clock):
    barchart_server.set_mode("other_day")
    client = client_for(settings_for(barchart_server, data_dir), clock)
    with pytest.raises(bc.BarchartError, match="latest session only"):
        client.chain(DAY)
    later = DAY + dt.timedelta(days=1)
    frame = client.chain(later)  # from the cache: no second request
    assert barchart_server.count() == 1
    assert frame["date"].unique().to_list() == [later] and frame.height == 6


def test_no_key_sends_nothing(barchart_server, data_dir, clock):
    client = client_for(settings_for(barchart_server, data_dir, api_key=""), clock)
    assert not client.enabled
    with pytest.raises(bc.BarchartError, match="no Barchart API key"):
        client.chain(DAY)
    assert barchart_server.count() == 0


def test_requests_beyond_the_minute_limit_wait(barchart_server, data_dir, clock):
    s = settings_for(barchart_server, data_dir, cache=False, requests_per_minute=2)
    client = client_for(s, clock)
    sent_at = []
    for _ in range(5):
        client.chain(DAY)
        sent_at.append(clock())
    assert barchart_server.count() == 5
    # Two requests in the first minute, then each third one waits for the window to slide.
    assert len(clock.waits) == 2 and all(w == pytest.approx(60.0) for w in clock.waits)
    for t in sent_at:
        assert sum(1 for u in sent_at if t - 60.0 < u <= t) <= 2


def test_requests_beyond_the_day_limit_are_refused(barchart_server, data_dir, clock, transitions):
    s = settings_for(barchart_server, data_dir, cache=False, requests_per_day=3)
    for _ in range(3):
        client_for(s, clock).chain(DAY)
    with pytest.raises(bc.BarchartQuotaExhausted, match="3 of 3 requests today"):
        client_for(s, clock).chain(DAY)  # a new client: the count is on disk, shared
    assert barchart_server.count() == 3
    assert transitions == []  # our budget, not Barchart's failure
    clock.now += 86_400  # the next UTC day has a fresh budget
    client_for(s, clock).chain(DAY)
    assert barchart_server.count() == 4


def test_scrub_removes_the_key_and_any_apikey_parameter():
    text = "GET /getFuturesOptions.json?apikey=s3cret&root=NQ failed; key s3cret; apikey=other"
    assert bc.scrub(text, "s3cret") == (
        "GET /getFuturesOptions.json?apikey=***&root=NQ failed; key ***; apikey=***"
    )


def test_a_profile_may_not_hold_the_barchart_key(tmp_path, monkeypatch):
    from ifd_core import settings as st

    (tmp_path / "leaky.toml").write_text('[barchart]\napi_key = "bc-in-a-file"\n')
    monkeypatch.setattr(st, "PROFILES_DIR", tmp_path)
    with pytest.raises(st.ProfileError, match=r"barchart\.api_key"):
        st.load_profile("leaky")
    assert (
        st.get_settings(barchart={"api_key": "k"}).masked()["barchart"]["api_key"] == "**********"
    )
