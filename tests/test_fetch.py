"""Budget-gated Historical downloads with the real databento client over loopback TLS."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

import databento
import pytest

from ifd_core.marketdata.historical import (
    BudgetRefused,
    HistoricalError,
    add_breaker_sink,
    fetch_historical,
    file_name,
)
from ifd_core.ops.budget import Decision
from ifd_core.settings import Settings, get_settings
from tests.servers.historical_http import (
    BILLABLE_SIZE,
    COST,
    GET_RANGE,
    RECORD_COUNT,
    TEST_API_KEY,
    HistoricalServer,
    RecordedRequest,
    historical_server_fixture,  # noqa: F401 - provides the `historical_server` fixture
    samples_available,
)
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake
from warehouse.ops_events import BreakerIncidents

KEY = TEST_API_KEY  # 32 characters starting with "db-", like a real key
REQUEST = dict(start="2020-12-28", end="2020-12-29", schema="mbo", symbols=["ESH1"])
EXPECTED_NAME = "glbx-mdp3-20201228-20201228.mbo.dbn.zst"

pytestmark = pytest.mark.skipif(
    not samples_available(), reason="Databento sample DBN files are not on this machine"
)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No IFD_* variable, DATABENTO_API_KEY or .env of the developer may leak into a test."""
    for name in list(os.environ):
        if name.startswith("IFD_") or name == "DATABENTO_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server(historical_server: HistoricalServer) -> HistoricalServer:
    """The loopback Databento (its fixture trusts the cert via REQUESTS_CA_BUNDLE, this test only)."""
    assert len(KEY) == 32 and historical_server.api_key == KEY
    return historical_server


def make_settings(tmp_path: Path, gateway: str, key: str = KEY) -> Settings:
    return get_settings(
        warehouse={"data_dir": tmp_path / "data"},
        databento={"api_key": key, "historical_gateway": gateway},
        resilience={"retry": {"base_s": 0.01, "cap_s": 0.05}},  # fast retries in tests
    )


@pytest.fixture
def settings(tmp_path: Path, server: HistoricalServer) -> Settings:
    return make_settings(tmp_path, server.url)


@pytest.fixture
def ledger(settings: Settings) -> LakeCostLedger:
    return LakeCostLedger(Lake(settings.data_dir))


@pytest.fixture
def out_dir(settings: Settings) -> Path:
    return settings.data_dir / "raw" / "GLBX.MDP3"


def this_month() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m")


def book_spend(ledger: LakeCostLedger, amount: float) -> None:
    ledger.append([{"entry_type": "historical_spend", "amount_usd": amount, "status": "spent"}])


# -- approved downloads -------------------------------------------------------------------------


def test_quote_3_downloads_and_books_quote_and_spend(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    result = fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)

    assert result.decision is Decision.APPROVE
    assert result.quote_usd == 3.0 and result.record_count == 4
    assert result.billable_bytes == server.billable_size
    assert result.path == out_dir / EXPECTED_NAME and result.path.is_file()
    assert sorted(p.name for p in out_dir.iterdir()) == [EXPECTED_NAME]  # no partial left

    store = databento.DBNStore.from_bytes(result.path.read_bytes())
    assert store.schema == databento.Schema.MBO
    assert store.dataset == "GLBX.MDP3"
    assert len(store.to_ndarray()) == 4

    rows = ledger.entries(this_month())
    assert rows["entry_type"].to_list() == ["historical_quote", "historical_spend"]
    quote, spend = rows.to_dicts()
    assert quote["status"] == "quoted" and quote["amount_usd"] == 3.0
    assert quote["decision"] == "approve" and "auto-approved" in quote["reason"]
    assert quote["record_count"] == 4 and quote["billable_bytes"] == server.billable_size
    assert (quote["dataset"], quote["schema"], quote["symbols"]) == ("GLBX.MDP3", "mbo", "ESH1")
    assert quote["stype_in"] == "raw_symbol"
    assert quote["range_start"] == "2020-12-28T00:00:00+00:00"
    assert quote["range_end"] == "2020-12-29T00:00:00+00:00"
    assert spend["status"] == "spent" and spend["amount_usd"] == 3.0
    assert quote["request_id"] == spend["request_id"] == result.request_id
    assert ledger.spent_in_month(this_month()) == 3.0

    # The quote priced exactly the request that was downloaded.
    assert server.paths() == [COST, RECORD_COUNT, BILLABLE_SIZE, GET_RANGE]
    keys = ("dataset", "start", "end", "symbols", "schema", "stype_in")
    fields = [{k: r.fields.get(k) for k in keys} for r in server.requests]
    assert all(f == fields[0] for f in fields)
    assert fields[0]["start"] == "2020-12-28T00:00:00+00:00"
    assert all(r.user == KEY for r in server.requests)
    assert server.requests[-1].fields["encoding"] == "dbn"
    assert server.requests[-1].fields["compression"] == "zstd"


def test_schema_picks_the_served_file(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    server.record_count = 2
    result = fetch_historical(
        settings, ledger, out_dir=out_dir, **{**REQUEST, "schema": "definition"}
    )
    assert result.path.name == "glbx-mdp3-20201228-20201228.definition.dbn.zst"
    store = databento.DBNStore.from_bytes(result.path.read_bytes())
    assert store.schema == databento.Schema.DEFINITION


def test_explicit_client_is_used(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    client = databento.Historical(KEY, gateway=server.url)
    result = fetch_historical(settings, ledger, out_dir=out_dir, client=client, **REQUEST)
    assert result.path.is_file()


# -- the gate refuses before any download -------------------------------------------------------


def test_quote_12_without_approval_is_refused_and_nothing_downloads(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    server.cost = 12.0
    with pytest.raises(BudgetRefused) as info:
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)

    message = str(info.value)
    assert "\n" not in message
    assert "$12.00" in message and "4 records" in message
    assert "require_approval" in message and "--approve" in message
    assert info.value.decision is Decision.REQUIRE_APPROVAL
    assert GET_RANGE not in server.paths()
    assert not (out_dir / EXPECTED_NAME).exists()

    rows = ledger.entries()
    assert rows["entry_type"].to_list() == ["historical_quote"]
    assert rows["decision"].to_list() == ["require_approval"]
    assert rows["amount_usd"].to_list() == [12.0]
    assert ledger.spent_in_month(this_month()) == 0.0


def test_quote_12_with_approval_downloads(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    server.cost = 12.0
    result = fetch_historical(settings, ledger, out_dir=out_dir, approve=True, **REQUEST)
    assert result.decision is Decision.APPROVE and result.path.is_file()
    assert server.paths().count(GET_RANGE) == 1
    rows = ledger.entries()
    assert rows["decision"].to_list() == ["approve", "approve"]
    assert "approved explicitly" in rows["reason"][0]
    assert ledger.spent_in_month(this_month()) == 12.0


@pytest.mark.parametrize("approve", [False, True])
def test_month_spent_170_defers_a_4_dollar_quote(
    server: HistoricalServer,
    settings: Settings,
    ledger: LakeCostLedger,
    out_dir: Path,
    approve: bool,
) -> None:
    book_spend(ledger, 170.0)
    server.cost = 4.0
    with pytest.raises(BudgetRefused) as info:
        fetch_historical(settings, ledger, out_dir=out_dir, approve=approve, **REQUEST)
    message = str(info.value)
    assert info.value.decision is Decision.DEFER
    assert "$4.00" in message and "$170.00 of $175.00" in message and "next month" in message
    assert GET_RANGE not in server.paths()
    quote = ledger.entries().filter(entry_type="historical_quote").row(0, named=True)
    assert quote["decision"] == "defer" and quote["amount_usd"] == 4.0
    assert ledger.spent_in_month(this_month()) == 170.0


def test_quote_above_remaining_is_denied(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    book_spend(ledger, 170.0)
    server.cost = 6.0
    with pytest.raises(BudgetRefused) as info:
        fetch_historical(settings, ledger, out_dir=out_dir, approve=True, **REQUEST)
    assert info.value.decision is Decision.DENY
    assert "$6.00" in str(info.value) and "$5.00" in str(info.value)
    assert GET_RANGE not in server.paths()


def test_crossing_80_percent_reports_the_alert(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    book_spend(ledger, 138.0)
    server.cost = 3.0  # $141 of $175 = 80.6 %: needs approval, and crosses the 80 % alert
    with pytest.raises(BudgetRefused):
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    result = fetch_historical(settings, ledger, out_dir=out_dir, approve=True, **REQUEST)
    assert result.alerts == [0.8]


# -- failures -----------------------------------------------------------------------------------


def test_wrong_key_is_an_authentication_error(
    server: HistoricalServer, tmp_path: Path, out_dir: Path
) -> None:
    settings = make_settings(tmp_path, server.url, key="db-" + "Z" * 29)
    ledger = LakeCostLedger(Lake(settings.data_dir))
    with pytest.raises(HistoricalError) as info:
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    message = str(info.value)
    assert "\n" not in message
    assert "authentication" in message.lower() and "IFD_DATABENTO__API_KEY" in message
    assert info.value.http_status == 401 and info.value.request_id
    assert server.paths() == [COST]  # a 4xx quote is not retried, and nothing else is asked
    assert ledger.entries().height == 0


def test_missing_key_names_the_setting(server: HistoricalServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server.url, key="")
    ledger = LakeCostLedger(Lake(settings.data_dir))
    with pytest.raises(HistoricalError, match="IFD_DATABENTO__API_KEY"):
        fetch_historical(settings, ledger, out_dir=tmp_path / "raw", **REQUEST)
    assert server.requests == []


def test_existing_file_is_refused_before_quoting(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    out_dir.mkdir(parents=True)
    (out_dir / EXPECTED_NAME).write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="immutable"):
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert server.requests == []
    assert (out_dir / EXPECTED_NAME).read_bytes() == b"keep me"


def test_quote_server_error_is_retried_once(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    server.fail(COST, 503, "Data gateway is offline or overloaded.", times=1)
    result = fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert result.path.is_file()
    assert server.paths()[:2] == [COST, COST]


def test_persistent_quote_server_error_opens_the_breaker_after_three(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    # Retries with full jitter (max 5 attempts), but the breaker opens after 3 consecutive
    # failures and the 4th attempt is refused without calling the server (docs/operations.md §Breakers and retries).
    server.fail(COST, 500, "Unexpected condition.")
    add_breaker_sink("test", BreakerIncidents(ledger.lake, "fetch-test"))
    with pytest.raises(HistoricalError, match="not attempted.*HTTP 500") as info:
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert "\n" not in str(info.value)
    assert server.paths() == [COST, COST, COST]
    assert ledger.entries().height == 0
    with pytest.raises(HistoricalError, match="not attempted"):
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert server.paths() == [COST, COST, COST]
    # The opening is an incident in the lake (critical), with the last error in its detail.
    inc = ledger.lake.scan("incidents").collect()
    assert len(inc["kind"]) == 1 and inc["kind"][0].startswith("breaker:databento_historical:")
    assert inc["severity"][0] == "critical" and "HTTP 500" in inc["detail"][0]


def test_download_error_is_not_retried_and_books_a_failed_spend(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    server.fail(GET_RANGE, 500, "Unexpected condition encountered in our system.")
    with pytest.raises(HistoricalError, match="download failed with HTTP 500"):
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert server.paths().count(GET_RANGE) == 1
    assert list(out_dir.iterdir()) == []  # no final file, no partial file
    failed = ledger.entries().filter(entry_type="historical_spend").row(0, named=True)
    assert failed["status"] == "failed" and failed["amount_usd"] == 0.0
    assert "HTTP 500" in failed["reason"]
    assert ledger.spent_in_month(this_month()) == 0.0


def test_file_appearing_during_download_keeps_the_paid_data(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    target = out_dir / EXPECTED_NAME

    def race(request: RecordedRequest) -> None:
        if request.path == GET_RANGE:
            target.write_bytes(b"someone else's")

    server.before_reply = race
    with pytest.raises(FileExistsError, match="paid-for data is kept in") as info:
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert target.read_bytes() == b"someone else's"
    (partial,) = [p for p in out_dir.iterdir() if p.name.endswith(".partial")]
    assert str(partial) in str(info.value)
    assert len(databento.DBNStore.from_bytes(partial.read_bytes()).to_ndarray()) == 4
    assert ledger.spent_in_month(this_month()) == 3.0  # the stream completed: it was billed


def test_bad_request_is_a_one_line_error(
    server: HistoricalServer, settings: Settings, ledger: LakeCostLedger, out_dir: Path
) -> None:
    server.fail(COST, 422, "Symbol 'NOPE' was not found.", case="symbology_invalid_symbol")
    with pytest.raises(HistoricalError, match="HTTP 422.*fix its parameters.*NOPE"):
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)


def test_unreachable_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(tmp_path, f"https://127.0.0.1:{port}")
    ledger = LakeCostLedger(Lake(settings.data_dir))
    with pytest.raises(HistoricalError, match="cannot reach https://127.0.0.1"):
        fetch_historical(settings, ledger, out_dir=tmp_path / "raw", **REQUEST)


def test_untrusted_certificate_is_a_tls_error(
    server: HistoricalServer,
    settings: Settings,
    ledger: LakeCostLedger,
    out_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without our CA bundle the real client verifies against the system store and refuses:
    # proof that the tests really speak TLS and that verification is on.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(HistoricalError, match="TLS error .*CERTIFICATE_VERIFY_FAILED"):
        fetch_historical(settings, ledger, out_dir=out_dir, **REQUEST)
    assert ledger.entries().height == 0


def test_gateway_without_scheme_is_rejected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "localhost:8000")  # databento would call https://8000
    ledger = LakeCostLedger(Lake(settings.data_dir))
    with pytest.raises(HistoricalError, match="not a URL"):
        fetch_historical(settings, ledger, out_dir=tmp_path / "raw", **REQUEST)


def test_bad_request_arguments(settings: Settings, ledger: LakeCostLedger, out_dir: Path) -> None:
    with pytest.raises(ValueError, match="must be after"):
        fetch_historical(settings, ledger, out_dir=out_dir, **{**REQUEST, "end": "2020-12-27"})
    with pytest.raises(ValueError, match="invalid Databento request"):
        fetch_historical(settings, ledger, out_dir=out_dir, **{**REQUEST, "schema": "mbo-9"})
    with pytest.raises(ValueError, match="symbols"):
        fetch_historical(settings, ledger, out_dir=out_dir, **{**REQUEST, "symbols": []})


def test_file_name_uses_the_last_day_of_the_range() -> None:
    import pandas as pd

    def ts(s: str) -> pd.Timestamp:
        return pd.Timestamp(s, tz="UTC")

    assert file_name("GLBX.MDP3", "mbo", ts("2023-12-25"), ts("2023-12-26")) == (
        "glbx-mdp3-20231225-20231225.mbo.dbn.zst"
    )
    assert file_name("GLBX.MDP3", "trades", ts("2023-12-25"), ts("2023-12-29T14:30")) == (
        "glbx-mdp3-20231225-20231229.trades.dbn.zst"
    )
