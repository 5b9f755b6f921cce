"""`ifd ib record-underlying`: the unmodified ib_async client records the NQ future's last-trade
ticks from the loopback TWS server into `underlying_ticks`, and `label_day` labels a signal
with them when the lake holds no Databento trade of the future (Databento unavailable)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import polars as pl
from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.calendar import NEW_YORK, trade_date_of
from jobs.detect import label_day
from tests.servers.tws import TwsTestServer
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.tables import TABLES

FUT, OPT, CON = 7, 11, 500
FUT_EXPIRY = dt.date(2099, 6, 19)


def ns(d: dt.date) -> int:
    return int(dt.datetime.combine(d, dt.time(16), NEW_YORK).timestamp() * 1e9)


def define(lake: Lake, day: dt.date) -> None:
    """The day's future and one option on it, as `instruments` rows."""
    rows = [
        {
            "instrument_id": FUT,
            "raw_symbol": "NQM99",
            "asset": "NQ",
            "instrument_class": "F",
            "expiration": ns(FUT_EXPIRY),
            "underlying_id": 0,
        },
        {
            "instrument_id": OPT,
            "raw_symbol": "QN1M99 C18250",
            "asset": "QN1",
            "instrument_class": "C",
            "strike": 18250.0,
            "expiration": ns(FUT_EXPIRY),
            "underlying_id": FUT,
        },
    ]
    schema = TABLES["instruments"].pl_schema
    df = pl.DataFrame(rows).with_columns(pl.lit(day).alias("date"), pl.lit(1).alias("ts_recv"))
    df = df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in schema.items()
        ]
    )
    lake.write("instruments", df, "test-definitions")


def test_ib_prices_label_a_signal_when_databento_has_none(tmp_path, loop):
    lake = Lake(tmp_path)
    ensure_migrated(lake)
    day = trade_date_of(time.time_ns())
    define(lake, day)
    decided: dict[str, int] = {}
    with TwsTestServer() as srv:
        srv.add_future(CON, "NQ", FUT_EXPIRY.strftime("%Y%m%d"), local_symbol="NQM99")

        def market() -> None:  # prints while the recorder listens
            time.sleep(0.8)
            srv.set_quote(CON, 18249.75, 18250.25, last=18250.0)
            time.sleep(0.3)
            decided["ts"] = time.time_ns()  # the signal's decision, between the two prints
            time.sleep(0.3)
            srv.set_quote(CON, 18279.75, 18280.25, last=18280.0)  # 30 points: past the barrier

        pusher = threading.Thread(target=market)
        pusher.start()
        env = {
            "IFD_WAREHOUSE__DATA_DIR": str(tmp_path),
            "IFD_IB__PORT": str(srv.port),
            "IFD_IB__CONNECT_TIMEOUT_S": "5",
        }
        args = ["ib", "record-underlying", "--date", day.isoformat(), "--seconds", "2.5", "--json"]
        res = CliRunner().invoke(app, args, env=env)
        pusher.join()
        assert srv.orders() == []  # read-only: nothing was placed
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["futures"] == ["NQM99"] and doc["ticks"] == 2
    ticks = lake.scan("underlying_ticks").collect().sort("ts_event")
    assert ticks["price"].to_list() == [18250.0, 18280.0]
    assert set(ticks["instrument_id"]) == {FUT} and set(ticks["source"]) == {"ib"}
    assert ticks["ts_event"][0] < decided["ts"] < ticks["ts_event"][1]
    signal = pl.DataFrame(
        {
            "signal_id": ["s1"],
            "algo": ["v3"],
            "view": ["BULLISH"],
            "decision_ts": [decided["ts"]],
            "underlying_id": [FUT],
        },
        schema_overrides={"decision_ts": pl.UInt64, "underlying_id": pl.UInt32},
    )
    label_day(lake, day, signal)
    (o,) = lake.scan("signal_outcomes").collect().iter_rows(named=True)
    assert (o["label"], o["ref_price"], o["price_source"]) == ("correct", 18250.0, "ib")


def test_record_underlying_says_what_is_missing(tmp_path, loop):
    """No definitions: exit 1 with the reason; no TWS listening: exit 5."""
    env = {
        "IFD_WAREHOUSE__DATA_DIR": str(tmp_path),
        "IFD_IB__PORT": "1",
        "IFD_IB__CONNECT_TIMEOUT_S": "2",
    }
    res = CliRunner().invoke(app, ["ib", "record-underlying", "--seconds", "1"], env=env)
    assert res.exit_code == 1 and "ingest its definitions" in res.output, res.output
    lake = Lake(tmp_path)
    day = trade_date_of(time.time_ns())
    define(lake, day)
    args = ["ib", "record-underlying", "--date", day.isoformat(), "--seconds", "1"]
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 5 and "cannot reach TWS" in res.output, res.output
