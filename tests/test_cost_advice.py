"""`ifd cost advise`: advice from measured usage on hand-computed SYNTHETIC lakes.

Every lake here is SYNTHETIC (source_sha "SYNTHETIC", ledger reasons "SYNTHETIC"): five sessions,
2025-06-02..06, one NQ future at 20,000 and three calls/puts, rows written straight into the
lake so the expected records, bytes, signals and savings can be computed by hand:

* per session, mbo: near C20000 (0 % away) 10 records at 10:00 New York + 2 at 19:00; far
  C22000 (10 % away) 4 at 10:00; far P18000 (10 % away) 3 at 19:00 => 19 records x 56 bytes;
  5 sessions: 95 records, 5,320 bytes of flow.
* ledger: a historical mbo pull of the five days, $53.20 for 5,320 billable bytes; a repeat of
  [06-04, 06-06) ($8.00, 800 bytes) and a pull of [06-05, 06-09) ($12.00, 1,200 bytes), half
  of it new. Over the period: $73.20 / 7,320 bytes = $0.01 a byte. And a trades pull ($3.00) of
  two of the symbols over [06-03, 06-05), which the mbo pull already carries.
* signals: v3 on the near call 06-05 10:00 (recent); v3 on the far call 06-02 10:00, twice, one
  episode (older than the last 3 sessions).

With X = 5 % and N = 3 sessions: far strikes 35 records, 1,960 bytes, $19.60 avoided, costing 2
signals in 1 episode; 19:00 idle: 25 records, 1,400 bytes, $14.00, no signal lost; the repeat
$8.00 (all of it); the partial repeat $12.00 less the get_cost of [06-07, 06-09); the trades pull $3.00.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.ops.cost_advice import (
    SIGNAL_COLUMNS,
    USAGE_COLUMNS,
    AdviceParams,
    advise,
    apply_quotes,
)
from ifd_core.settings import get_settings
from jobs.cost_advice import cost_advice, signals, usage
from tests.servers.historical_http import COST, TEST_API_KEY, HistoricalServer
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake
from warehouse.tables import TABLES

DAYS = [dt.date(2025, 6, d) for d in range(2, 7)]
START, END = DAYS[0], DAYS[-1]
NS = 1_000_000_000
FUT, NEAR, FAR_C, FAR_P = 1, 10, 11, 12
SYMBOLS = {FUT: "NQM5", NEAR: "NQM5 C20000", FAR_C: "NQM5 C22000", FAR_P: "NQM5 P18000"}


def _ns(day: dt.date, hour_utc: int, i: int = 0) -> int:
    t = dt.datetime.combine(day, dt.time(hour_utc), dt.UTC)
    return int(t.timestamp()) * NS + i


NY10, NY19 = 14, 23  # UTC hours of 10:00 and 19:00 New York (EDT) in June


def _frame(table: str, rows: list[dict]) -> pl.DataFrame:
    schema = TABLES[table].pl_schema
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row")


def _write(lake: Lake, table: str, rows: list[dict], key: str) -> None:
    lake.write(table, _frame(table, rows), key=key)


def build_lake(lake: Lake, extra_signals: list[dict] = (), ledger: bool = True) -> None:
    """The SYNTHETIC lake of the module docstring (plus ``extra_signals``)."""
    prov = {"origin": "historical", "source_sha": "SYNTHETIC"}
    defs, mbo, trades = [], [], []
    for d in DAYS:
        for iid, cls, strike in (
            (FUT, "F", None),
            (NEAR, "C", 20_000.0),
            (FAR_C, "C", 22_000.0),
            (FAR_P, "P", 18_000.0),
        ):
            defs.append(
                {
                    "date": d,
                    **prov,
                    "instrument_id": iid,
                    "raw_symbol": SYMBOLS[iid],
                    "asset": "NQ",
                    "instrument_class": cls,
                    "strike": strike,
                    "underlying_id": None if iid == FUT else FUT,
                    "ts_recv": _ns(d, 13),
                    "ts_event": _ns(d, 13),
                }
            )
        for iid, hour, n in ((NEAR, NY10, 10), (NEAR, NY19, 2), (FAR_C, NY10, 4), (FAR_P, NY19, 3)):
            for i in range(n):
                t = _ns(d, hour, iid * 100 + i)
                mbo.append({"date": d, **prov, "instrument_id": iid, "ts_recv": t, "ts_event": t})
        # the future's trade (derived from mbo: not trades-schema bytes) gives the underlying
        t = _ns(d, NY10)
        trades.append(
            {
                "date": d,
                **prov,
                "instrument_id": FUT,
                "ts_recv": t,
                "ts_event": t,
                "price": 20_000 * NS,
                "size": 1,
                "side": "B",
                "schema": "mbo",
            }
        )
    _write(lake, "instruments", defs, "syn-defs")
    _write(lake, "mbo", mbo, "syn-mbo")
    _write(lake, "trades", trades, "syn-trades")
    sig = [
        _signal("s1", "e1", "v3", NEAR, dt.date(2025, 6, 5), NY10),
        _signal("s2", "e2", "v3", FAR_C, dt.date(2025, 6, 2), NY10),
        _signal("s3", "e2", "v3", FAR_C, dt.date(2025, 6, 2), NY10, minute=5),
        *extra_signals,
    ]
    _write(lake, "signals", sig, "syn-signals")
    if ledger:
        _ledger(lake)


def _signal(sid, eid, algo, iid, day, hour_utc, minute=0) -> dict:
    strike = {NEAR: 20_000.0, FAR_C: 22_000.0, FAR_P: 18_000.0}[iid]
    ws = _ns(day, hour_utc) + minute * 60 * NS
    return {
        "date": day,
        "origin": "historical",
        "source_sha": "SYNTHETIC",
        "signal_id": sid,
        "episode_id": eid,
        "algo": algo,
        "instrument_id": iid,
        "raw_symbol": SYMBOLS[iid],
        "root": "NQ",
        "strike": strike,
        "underlying_price": 20_000.0,
        "window_start": ws,
        "window_end": ws + 300 * NS,
        "decision_ts": ws + 300 * NS,
        "confidence": 0.9,
    }


PULL_SYMBOLS = ",".join(SYMBOLS[i] for i in (FUT, NEAR, FAR_C, FAR_P))


def _pull(
    ts_day: int,
    start: str,
    end: str,
    amount: float,
    nbytes: int,
    schema: str = "mbo",
    symbols: str = PULL_SYMBOLS,
) -> dict:
    return {
        "entry_id": f"syn-pull-{ts_day}-{start}",
        "ts": dt.datetime(2025, 6, ts_day, 20, tzinfo=dt.UTC),
        "entry_type": "historical_spend",
        "category": "historical",
        "amount_usd": amount,
        "status": "spent",
        "reason": "SYNTHETIC",
        "dataset": "GLBX.MDP3",
        "schema": schema,
        "symbols": symbols,
        "stype_in": "raw_symbol",
        "range_start": f"{start}T00:00:00+00:00",
        "range_end": f"{end}T00:00:00+00:00",
        "record_count": nbytes // 56,
        "billable_bytes": nbytes,
        "request_id": f"syn-{ts_day}",
    }


def _ledger(lake: Lake, repeats: bool = True) -> None:
    rows = [_pull(2, "2025-06-02", "2025-06-07", 53.20, 5_320)]
    if repeats:
        rows += [
            _pull(4, "2025-06-04", "2025-06-06", 8.00, 800),
            _pull(5, "2025-06-05", "2025-06-09", 12.00, 1_200),
            # trades of two of the symbols, inside the mbo pull: paid twice
            _pull(3, "2025-06-03", "2025-06-05", 3.00, 480, "trades", "NQM5,NQM5 C22000"),
        ]
    LakeCostLedger(lake).append(rows)


def _by_kind(report) -> dict:
    out: dict = {}
    for a in report.advice:
        out.setdefault(a.kind, []).append(a)
    return out


# --------------------------------------------------------------------------- lake reads
def test_usage_reads_records_bytes_band_and_hour(lake) -> None:
    build_lake(lake)
    u = usage(lake, START, END)
    mbo = u.filter(pl.col("schema") == "mbo")
    assert mbo["records"].sum() == 95 and mbo["bytes"].sum() == 5_320
    assert u.filter(pl.col("schema") == "trades").height == 0  # mbo-derived trades not counted
    defs = u.filter(pl.col("schema") == "definition")
    assert defs["records"].sum() == 20 and defs["bytes"].sum() == 20 * 520
    far = mbo.filter(pl.col("instrument_id") == FAR_P)
    assert set(far["hour"].to_list()) == {19} and far["underlying_price"].unique().to_list() == [
        20_000.0
    ]
    assert far["strike"].unique().to_list() == [18_000.0] and far["root"].unique().to_list() == [
        "NQ"
    ]
    s = signals(lake, START, END)
    assert s.sort("signal_id")["hour"].to_list() == [10, 10, 10]


# --------------------------------------------------------------------------- the advice
def test_advice_on_the_synthetic_lake_without_quotes(lake) -> None:
    build_lake(lake)
    s = get_settings(costs={"advice_strike_band_pct": 5.0, "advice_quiet_sessions": 3})
    report = cost_advice(lake, s, START, END)  # no API key: alternatives not quoted
    kinds = _by_kind(report)
    assert sorted(kinds) == ["far_strikes", "idle_hours", "redundant_schema", "repeated_pull"]
    (red,) = kinds["redundant_schema"]
    assert red.saving_usd == pytest.approx(3.00) and not red.alternatives
    assert "derive it from mbo" in red.action and red.bytes == 480

    far = kinds["far_strikes"][0]
    assert (far.records, far.bytes) == (35, 1_960)
    assert far.avoided_usd == pytest.approx(19.60) and far.saving_usd == pytest.approx(19.60)
    assert (far.signals_lost, far.episodes_lost) == (2, 1)
    assert far.share_of_bytes == pytest.approx(1_960 / 5_320)

    idle = kinds["idle_hours"][0]
    assert (idle.records, idle.bytes) == (25, 1_400) and "19:00" in idle.action
    assert idle.saving_usd == pytest.approx(14.00) and idle.signals_lost == 0

    full, part = sorted(kinds["repeated_pull"], key=lambda a: a.avoided_usd)
    assert full.saving_usd == pytest.approx(8.00) and not full.alternatives
    assert part.avoided_usd == pytest.approx(12.00) and part.saving_usd is None
    assert "no Databento API key" in part.quote_error
    (alt,) = part.alternatives
    assert (alt.start, alt.end) == ("2025-06-07T00:00:00+00:00", "2025-06-09T00:00:00+00:00")
    # ordered by saving, unknown savings last
    assert [a.kind for a in report.advice] == [
        "far_strikes",
        "idle_hours",
        "repeated_pull",
        "redundant_schema",
        "repeated_pull",
    ]
    assert report.advice[-1] is part
    rate = report.rates["historical:mbo"]
    assert (rate.amount_usd, rate.billable_bytes) == (pytest.approx(73.2), 7_320)


def test_the_thresholds_drive_the_advice(lake) -> None:
    build_lake(lake, ledger=False)
    # N = 5 sessions reaches back to the far call's signals on 06-02: the far band is not quiet
    s5 = get_settings(costs={"advice_strike_band_pct": 5.0, "advice_quiet_sessions": 5})
    assert "far_strikes" not in _by_kind(cost_advice(lake, s5, START, END))
    # X = 12 %: nothing is far (10 % away), so no far-strike advice either
    s12 = get_settings(costs={"advice_strike_band_pct": 12.0, "advice_quiet_sessions": 3})
    assert "far_strikes" not in _by_kind(cost_advice(lake, s12, START, END))
    # without ledger spend the bytes are measured but no money is invented
    s3 = get_settings(costs={"advice_strike_band_pct": 5.0, "advice_quiet_sessions": 3})
    far = _by_kind(cost_advice(lake, s3, START, END))["far_strikes"][0]
    assert far.bytes == 1_960 and far.avoided_usd is None and far.saving_usd is None
    assert far.unpriced_bytes == 1_960


def test_no_advice_when_nothing_qualifies(lake) -> None:
    # recent v3 signals on the far strikes at both hours; one pull, no repeat
    extra = [
        _signal("s4", "e4", "v3", FAR_P, dt.date(2025, 6, 6), NY19),
        _signal("s5", "e5", "v3", FAR_C, dt.date(2025, 6, 6), NY10),
    ]
    build_lake(lake, extra, ledger=False)
    _ledger(lake, repeats=False)
    s = get_settings(costs={"advice_quiet_sessions": 3})
    report = cost_advice(lake, s, START, END)
    assert report.advice == [] and report.bytes == 5_320 + 20 * 520
    res = CliRunner().invoke(
        app, ["cost", "advise", "--start", "2025-06-02", "--end", "2025-06-06"]
    )
    assert res.exit_code == 0, res.output
    assert "No advice: nothing qualifies" in res.stdout


def test_pure_advice_is_independent_of_row_order() -> None:
    # SYNTHETIC frames: shuffled inputs give the same advice
    lake_rows = pl.DataFrame(
        {
            "date": [START] * 4,
            "schema": ["mbo"] * 4,
            "origin": ["historical"] * 4,
            "instrument_id": [1, 2, 3, 4],
            "raw_symbol": ["a", "b", "c", "d"],
            "root": ["NQ"] * 4,
            "strike": [100.0, 120.0, 80.0, 101.0],
            "underlying_price": [100.0] * 4,
            "hour": [10, 10, 11, 12],
            "records": [5, 6, 7, 8],
            "bytes": [280, 336, 392, 448],
        }
    )
    sig = pl.DataFrame(
        {
            "date": [START],
            "algo": ["v3"],
            "signal_id": ["x"],
            "episode_id": [None],
            "strike": [100.0],
            "underlying_price": [100.0],
            "hour": [10],
        }
    )
    empty = TABLES["cost_ledger"].empty()
    a = advise(lake_rows, sig, empty, AdviceParams(5.0, 1), START, START, "GLBX.MDP3")
    b = advise(lake_rows.reverse(), sig, empty, AdviceParams(5.0, 1), START, START, "GLBX.MDP3")
    assert a.to_dict() == b.to_dict()
    far = _by_kind(a)["far_strikes"][0]
    assert (far.records, far.bytes) == (13, 728)  # strikes 120 and 80: 20 % away


# --------------------------------------------------------------------------- quotes
@pytest.fixture
def server(monkeypatch):
    srv = HistoricalServer(TEST_API_KEY, cost=1.25, record_count=10, billable_size=560)
    srv.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(srv.cert_path))
    monkeypatch.setenv("IFD_DATABENTO__API_KEY", TEST_API_KEY)
    monkeypatch.setenv("IFD_DATABENTO__HISTORICAL_GATEWAY", srv.url)
    try:
        yield srv
    finally:
        srv.stop()


def test_trades_for_far_strikes_is_quoted_with_get_cost_and_booked(lake, server) -> None:
    # a recent v1 signal on the far put keeps the band (v1 reads trades), so the advice is to
    # replace its mbo with trades: $19.60 of mbo less Databento's quote for the trades
    build_lake(lake, [_signal("s6", "e6", "v1", FAR_P, dt.date(2025, 6, 6), NY19)])
    s = get_settings(costs={"advice_strike_band_pct": 5.0, "advice_quiet_sessions": 3})
    today = dt.date(2025, 6, 7)
    report = cost_advice(lake, s, START, END, today=today)
    kinds = _by_kind(report)
    assert "far_strikes" not in kinds and "idle_hours" not in kinds
    (tr,) = kinds["far_strikes_trades"]
    assert (tr.records, tr.bytes) == (35, 1_960) and tr.avoided_usd == pytest.approx(19.60)
    assert tr.alternative_usd == pytest.approx(1.25)
    assert tr.saving_usd == pytest.approx(19.60 - 1.25)
    assert (tr.signals_lost, tr.episodes_lost) == (2, 1)  # v3's far signals need the book
    part = next(a for a in kinds["repeated_pull"] if a.alternatives)
    assert part.saving_usd == pytest.approx(12.00 - 1.25)

    trades_q = [r for r in server.requests_to(COST) if r.fields["schema"] == "trades"]
    assert len(trades_q) == 1
    assert trades_q[0].fields["symbols"] == "NQM5 C22000,NQM5 P18000"
    assert trades_q[0].fields["start"].startswith("2025-06-02")
    assert "timeseries" not in " ".join(server.paths())  # quoted, never downloaded

    quotes = LakeCostLedger(lake).entries().filter(pl.col("category") == "cost_advice")
    assert quotes.height == 2 and set(quotes["entry_type"]) == {"historical_quote"}
    assert quotes["amount_usd"].to_list() == [1.25, 1.25]
    cost_advice(lake, s, START, END, today=today)  # the same day again books nothing new
    again = LakeCostLedger(lake).entries().filter(pl.col("category") == "cost_advice")
    assert again.height == 2


def test_cli_json_shows_the_quoted_figure(lake, server, monkeypatch) -> None:
    build_lake(lake)
    monkeypatch.setenv("IFD_COSTS__ADVICE_QUIET_SESSIONS", "3")
    server.cost = 2.5
    res = CliRunner().invoke(
        app, ["cost", "advise", "--start", "2025-06-02", "--end", "2025-06-06", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    part = next(a for a in doc["advice"] if a["alternatives"])
    assert part["alternative_usd"] == 2.5 and part["saving_usd"] == pytest.approx(12.0 - 2.5)
    far = next(a for a in doc["advice"] if a["kind"] == "far_strikes")
    assert far["saving_usd"] == pytest.approx(19.6) and far["signals_lost"] == 2

    text = CliRunner().invoke(app, ["cost", "advise", "--month", "2025-06", "--no-quote"])
    assert text.exit_code == 0, text.output
    assert "[far_strikes]" in text.stdout and "$19.60" in text.stdout
    assert "not quoted (--no-quote)" in text.stdout


def test_cli_rejects_month_with_range(lake) -> None:
    res = CliRunner().invoke(app, ["cost", "advise", "--month", "2025-06", "--end", "2025-06-03"])
    assert res.exit_code == 2 and "not both" in res.stderr


# --------------------------------------------------------------------------- the cost report
def test_cost_report_carries_the_advice(lake, data_dir, monkeypatch) -> None:
    build_lake(lake)
    monkeypatch.setenv("IFD_COSTS__ADVICE_QUIET_SESSIONS", "3")
    res = CliRunner().invoke(app, ["cost", "report", "--day", "2025-06-06", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    far = next(a for a in doc["advice"] if a["kind"] == "far_strikes")
    assert far["saving_usd"] == pytest.approx(19.6) and far["bytes"] == 1_960
    page = (data_dir / "reports" / "cost-2025-06.html").read_text()
    assert "Cost advice 2025-06-01 to 2025-06-06" in page
    assert "strikes beyond ±5 % of the underlying" in page
    assert "Records and bytes per schema, root, band" in page


def test_partly_redundant_schema_quotes_only_the_range_mbo_misses() -> None:
    # SYNTHETIC ledger: mbo of A,B over [06-02, 06-04); trades of A over [06-03, 06-05)
    ledger = _frame(
        "cost_ledger",
        [
            {**_pull(2, "2025-06-02", "2025-06-04", 5.0, 500, "mbo", "A,B"), "date": START},
            {
                **_pull(3, "2025-06-03", "2025-06-05", 2.0, 200, "trades", "A"),
                "date": dt.date(2025, 6, 3),
            },
        ],
    )
    none = pl.DataFrame(schema=USAGE_COLUMNS)
    nosig = pl.DataFrame(schema=SIGNAL_COLUMNS)
    report = advise(none, nosig, ledger, AdviceParams(), START, END, "GLBX.MDP3")
    (red,) = report.advice
    assert red.kind == "redundant_schema" and red.saving_usd is None
    (alt,) = red.alternatives
    assert (alt.schema, alt.symbols) == ("trades", ("A",))
    assert (alt.start, alt.end) == ("2025-06-04T00:00:00+00:00", "2025-06-05T00:00:00+00:00")
    priced = apply_quotes(report, {alt: 0.4})
    assert priced.advice[0].saving_usd == pytest.approx(1.6)
    # the trades pull of a symbol the mbo pull did not buy is not redundant
    other = ledger.with_columns(
        pl.when(pl.col("schema") == "trades")
        .then(pl.lit("C"))
        .otherwise("symbols")
        .alias("symbols")
    )
    assert advise(none, nosig, other, AdviceParams(), START, END, "GLBX.MDP3").advice == []


def test_without_signals_no_band_or_hour_advice_and_a_note(lake) -> None:
    # SYNTHETIC lake with its signals removed: detection did not run, so nothing is "idle"
    build_lake(lake)
    lake.remove(lake.files("signals"))
    s = get_settings(costs={"advice_quiet_sessions": 3})
    report = cost_advice(lake, s, START, END)
    assert {a.kind for a in report.advice} == {"repeated_pull", "redundant_schema"}
    assert report.notes and "no signals in the period" in report.notes[0]
