"""Tests of the deterministic market simulator (ifd_core.simulator.market).

The simulator's output is checked the way a consumer would read it: DBN files decoded with the
databento client, MBO replayed through an independent dict-based L3 book written here, and the
ground truth recomputed from the trades in the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
import pytest

from ifd_core.calendar import et_to_ns, previous_trading_day
from ifd_core.simulator import contracts, pricing
from ifd_core.simulator.market import DEFAULT_START, SimulationSummary, simulate_market
from ifd_core.simulator.noise import MEAN_OPTION_NOISE_SIZE, option_sizes
from ifd_core.simulator.params import SimParams
from ifd_core.simulator.plant import BASELINE_SESSIONS, plants_on

F_LAST = 0x80
F_SNAPSHOT = 0x20
SEED = 11
DAYS = 3
SCALE = 0.25
NAME = re.compile(r"^glbx-mdp3-(\d{8})\.(definition|statistics|mbo)\.dbn\.zst$")


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> SimulationSummary:
    out = tmp_path_factory.mktemp("sim")
    calls: list[tuple[int, int]] = []
    summary = simulate_market(
        out, DAYS, SEED, scale=SCALE, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(i + 1, DAYS) for i in range(DAYS)]
    return summary


def _utc_midnight(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9


def _file(sim: SimulationSummary, day: dt.date, schema: str) -> Path:
    return sim.out_dir / f"glbx-mdp3-{day:%Y%m%d}.{schema}.dbn.zst"


def _load(sim: SimulationSummary, day: dt.date, schema: str) -> np.ndarray:
    return db.DBNStore.from_file(_file(sim, day, schema)).to_ndarray()


@pytest.fixture(scope="module")
def days_data(sim: SimulationSummary) -> dict[dt.date, dict[str, np.ndarray]]:
    return {
        day: {schema: _load(sim, day, schema) for schema in ("definition", "statistics", "mbo")}
        for day in sim.days
    }


@pytest.fixture(scope="module")
def truth(sim: SimulationSummary) -> dict:
    return json.loads(sim.truth_path.read_text())


def _option_ids(defs: np.ndarray) -> np.ndarray:
    return defs["instrument_id"][np.isin(defs["instrument_class"], [b"C", b"P"])]


def _future_ids(defs: np.ndarray) -> np.ndarray:
    return defs["instrument_id"][defs["instrument_class"] == b"F"]


# --- reproducibility -----------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = simulate_market(tmp_path / "a", 2, 5, scale=0.1)
    b = simulate_market(tmp_path / "b", 2, 5, scale=0.1)
    c = simulate_market(tmp_path / "c", 2, 6, scale=0.1)
    da, db_, dc = _digests(a.out_dir), _digests(b.out_dir), _digests(c.out_dir)
    assert da == db_
    assert set(da) == set(dc)
    for name in da:
        if name.endswith(".dbn.zst") and ".definition." not in name:
            assert da[name] != dc[name], name
    assert not any(p.name.endswith(".tmp") for p in a.out_dir.iterdir())


def test_summary_and_provenance(sim: SimulationSummary) -> None:
    assert sim.days[0] == DEFAULT_START
    assert len(sim.days) == DAYS
    assert len(sim.files) == 3 * DAYS
    assert all(p.exists() and NAME.match(p.name) for p in sim.files)
    assert sim.planted >= 2 and 2 <= sim.decoys <= 4  # straddle, churn, 0-2 large prints
    prov = json.loads((sim.out_dir / "IFD_SYNTHETIC.json").read_text())
    assert prov["origin"] == "synthetic" and prov["generator"] == "ifd simulate"
    assert prov["seed"] == SEED and prov["scale"] == SCALE
    assert prov["params"] == SimParams().to_dict()
    assert prov["params"]["flows_per_day"] == [2, 4]
    for p in sim.files:
        assert prov["files"][p.name] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days"):
        simulate_market(tmp_path, 0, 1)
    with pytest.raises(ValueError, match="scale"):
        simulate_market(tmp_path, 1, 1, scale=0)


def test_refuses_to_mix_with_another_run(tmp_path: Path) -> None:
    stale = tmp_path / "glbx-mdp3-20250102.mbo.dbn.zst"
    stale.write_bytes(b"")
    with pytest.raises(FileExistsError, match="another simulation"):
        simulate_market(tmp_path, 1, 1, scale=0.05)
    stale.unlink()
    first = simulate_market(tmp_path, 1, 1, scale=0.05)
    again = simulate_market(tmp_path, 1, 1, scale=0.05)  # the same files may be rewritten
    assert first.files == again.files


# --- DBN files -----------------------------------------------------------------------------------


def test_files_decode_with_expected_metadata(sim: SimulationSummary) -> None:
    schemas = {"definition": "definition", "statistics": "statistics", "mbo": "mbo"}
    for day in sim.days:
        defs = _load(sim, day, "definition")
        ids = {
            raw.decode(): str(i)
            for raw, i in zip(defs["raw_symbol"], defs["instrument_id"], strict=True)
        }
        for schema in schemas:
            store = db.DBNStore.from_file(_file(sim, day, schema))
            assert store.dataset == "GLBX.MDP3"
            assert str(store.schema) == schema
            assert str(store.stype_in) == "parent"
            assert store.metadata.version == 3
            assert store.metadata.symbols == ["NQ.FUT", "NQ.OPT", "IFD.SYNTHETIC"]
            assert store.start.value == _utc_midnight(day)
            assert store.end.value == _utc_midnight(day + dt.timedelta(days=1))
            mapped = {raw: iv[0]["symbol"] for raw, iv in store.mappings.items()}
            assert mapped == ids
            assert len(store.to_ndarray()) > 0


def test_mbo_records_are_in_ts_recv_order_with_channel_sequences(days_data: dict) -> None:
    for data in days_data.values():
        mbo = data["mbo"]
        assert np.all(np.diff(mbo["ts_recv"].astype(np.int64)) >= 0)
        assert np.all(mbo["ts_recv"] >= mbo["ts_event"])
        assert set(np.unique(mbo["rtype"])) == {0xA0} and set(np.unique(mbo["length"])) == {14}
        for ch in np.unique(mbo["channel_id"]):
            seq = mbo["sequence"][mbo["channel_id"] == ch].astype(np.int64)
            assert seq[0] == 1 and np.all(np.diff(seq) == 1)
        defs = data["definition"]
        fut = np.isin(mbo["instrument_id"], _future_ids(defs))
        assert np.all(mbo["channel_id"][fut] == 0)
        assert np.all(mbo["channel_id"][~fut] >= 1)


def _events(mbo: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of events, cut after every F_LAST record."""
    ends = np.flatnonzero(mbo["flags"] & F_LAST) + 1
    assert ends[-1] == len(mbo), "the last record must carry F_LAST"
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def test_events_share_time_and_instrument_and_trades_are_well_formed(days_data: dict) -> None:
    trade = re.compile(r"^(TF+)+[CM]+$")
    for data in days_data.values():
        mbo = data["mbo"]
        ev_id = np.zeros(len(mbo), dtype=np.int64)
        ev_id[np.flatnonzero(mbo["flags"] & F_LAST)[:-1] + 1] = 1
        ev_id = np.cumsum(ev_id)
        for field in ("ts_event", "ts_recv", "instrument_id"):
            same = mbo[field][1:] == mbo[field][:-1]
            assert np.all(same | (ev_id[1:] != ev_id[:-1])), field
        actions = mbo["action"].tobytes().decode()
        n_trades = 0
        for start, stop in _events(mbo):
            if actions[start] == "T":
                n_trades += 1
                assert trade.match(actions[start:stop]), actions[start:stop]
            else:
                assert "T" not in actions[start:stop] and "F" not in actions[start:stop]
        assert n_trades > 100
        assert np.all(mbo["order_id"][mbo["action"] == b"T"] == 0)


class L3Book:
    """A minimal order book keyed by order id, written independently of the simulator.

    Fills do not change the book (the C/M records that follow them do), but the C/M of a filled
    order must match what was filled: C only for a complete fill, M to the remaining size.
    """

    def __init__(self) -> None:
        self.orders: dict[int, tuple[bytes, int, int]] = {}
        self.filled: dict[int, int] = {}

    def fill(self, oid: int, price: int, size: int) -> bool:
        """Record a fill; False for an order the book never saw (a hidden/iceberg fill)."""
        if oid not in self.orders:
            return False
        _, px, resting = self.orders[oid]
        self.filled[oid] = self.filled.get(oid, 0) + size
        assert px == price and self.filled[oid] <= resting
        return True

    def apply(self, action: bytes, side: bytes, oid: int, price: int, size: int) -> None:
        if action == b"R":
            self.orders.clear()
        elif action == b"A":
            assert oid not in self.orders, f"duplicate add {oid}"
            assert size > 0
            self.orders[oid] = (side, price, size)
        elif action == b"C":
            old = self.orders.pop(oid)
            assert old[1] == price and old[2] == size, (old, price, size)
            done = self.filled.pop(oid, None)
            assert done is None or done == size
        elif action == b"M":
            old = self.orders[oid]
            assert old[0] == side and size > 0
            done = self.filled.pop(oid, None)
            assert done is None or (size == old[2] - done and price == old[1])
            self.orders[oid] = (side, price, size)

    def end_event(self) -> None:
        assert not self.filled, "a filled order was neither cancelled nor modified"

    def crossed(self) -> bool:
        bids = [p for s, p, _ in self.orders.values() if s == b"B"]
        asks = [p for s, p, _ in self.orders.values() if s == b"A"]
        return bool(bids and asks and max(bids) >= min(asks))


def replay(mbo: np.ndarray) -> tuple[int, int]:
    """Replay a day; assert the book rules at every F_LAST. Returns (fills, hidden fills)."""
    books: dict[int, L3Book] = defaultdict(L3Book)
    hidden_fills = fills = 0
    touched: set[int] = set()
    rows = zip(
        mbo["action"].tolist(),
        mbo["side"].tolist(),
        mbo["order_id"].tolist(),
        mbo["price"].tolist(),
        mbo["size"].tolist(),
        mbo["flags"].tolist(),
        mbo["instrument_id"].tolist(),
        strict=True,
    )
    for action, side, oid, price, size, flags, iid in rows:
        book = books[iid]
        if action == b"F":
            fills += 1
            hidden_fills += not book.fill(oid, price, size)
        elif action != b"T":
            book.apply(action, side, oid, price, size)
        touched.add(iid)
        if flags & F_LAST:
            for i in touched:
                books[i].end_event()
                assert not books[i].crossed(), f"crossed book for {i}"
            touched.clear()
    return fills, hidden_fills


def test_replayed_books_never_cross_or_go_negative(days_data: dict) -> None:
    for data in days_data.values():
        fills, hidden_fills = replay(data["mbo"])
        assert fills > 0 and 0 < hidden_fills < 0.05 * fills


@pytest.mark.slow
def test_replay_busier_days(tmp_path: Path) -> None:
    summary = simulate_market(tmp_path, 2, 7, scale=2.0)
    for day in summary.days:
        replay(db.DBNStore.from_file(_file(summary, day, "mbo")).to_ndarray())


def test_snapshot_starts_each_book(days_data: dict) -> None:
    for day, data in days_data.items():
        mbo = data["mbo"]
        snap = (mbo["flags"] & F_SNAPSHOT) > 0
        n_snap = int(np.argmin(snap))
        assert np.all(snap[:n_snap]) and not np.any(snap[n_snap:])
        head = mbo[:n_snap]
        clears = head["action"] == b"R"
        assert set(head["instrument_id"][clears]) == set(data["definition"]["instrument_id"])
        assert set(np.unique(head["action"])) == {b"R", b"A"}
        assert np.all(head["ts_event"] == head["ts_recv"])
        assert np.all(head["ts_event"] < et_to_ns(day, 9, 30))
        assert np.all(mbo["ts_event"][n_snap:] >= et_to_ns(day, 9, 30))
        assert np.all(mbo["ts_event"][n_snap:] <= et_to_ns(day, 16, 0))


def test_option_prices_respect_the_tick_grid(days_data: dict) -> None:
    for data in days_data.values():
        mbo = data["mbo"]
        opt = np.isin(mbo["instrument_id"], _option_ids(data["definition"]))
        priced = opt & np.isin(mbo["action"], [b"A", b"C", b"M", b"T", b"F"])
        prices = mbo["price"][priced]
        assert np.all(prices > 0)
        assert np.all(pricing.is_on_option_grid(prices))
        trades = opt & (mbo["action"] == b"T")
        assert trades.sum() > 20
        fut_trades = ~opt & (mbo["action"] == b"T")
        assert np.all(mbo["price"][fut_trades] % 250_000_000 == 0)
        sides = mbo["side"][mbo["action"] == b"T"]
        buys, sells = (sides == b"B").sum(), (sides == b"A").sum()
        assert 0.4 < buys / (buys + sells) < 0.6


def test_every_instrument_in_mbo_and_statistics_is_defined(days_data: dict) -> None:
    for data in days_data.values():
        defined = set(data["definition"]["instrument_id"].tolist())
        assert set(np.unique(data["mbo"]["instrument_id"]).tolist()) <= defined
        assert set(np.unique(data["statistics"]["instrument_id"]).tolist()) <= defined


def test_definitions_describe_futures_and_options(days_data: dict) -> None:
    for day, data in days_data.items():
        defs = data["definition"]
        assert np.all(defs["ts_event"] == _utc_midnight(day))
        fut = defs[defs["instrument_class"] == b"F"]
        opt = defs[np.isin(defs["instrument_class"], [b"C", b"P"])]
        assert len(fut) >= 1 and np.all(fut["security_type"] == b"FUT")
        assert np.all(fut["min_price_increment"] == 250_000_000)
        assert np.all(fut["unit_of_measure_qty"] == 20 * 10**9)
        assert np.all(defs["contract_multiplier"] == 20)
        assert np.all(opt["security_type"] == b"OOF") and np.all(opt["group"] == b"NQ")
        assert np.all(opt["min_price_increment"] == 50_000_000)
        assert np.all(opt["strike_price"] % (50 * 10**9) == 0)
        assert np.all(opt["expiration"] > et_to_ns(day, 9, 30))
        front = contracts.front_future(day).raw_symbol.encode()
        assert front in fut["raw_symbol"]
        for exp in np.unique(opt["expiration"]):  # >= 41 strikes per expiry, both rights
            series = opt[opt["expiration"] == exp]
            assert len(np.unique(series["strike_price"])) >= 41
            assert (series["instrument_class"] == b"C").sum() == (
                series["instrument_class"] == b"P"
            ).sum()


def test_weeklies_use_their_own_roots_and_point_at_the_future(days_data: dict) -> None:
    for data in days_data.values():
        defs = data["definition"]
        fut = defs[defs["instrument_class"] == b"F"]
        fut_id = dict(zip(fut["raw_symbol"].tolist(), fut["instrument_id"].tolist(), strict=True))
        opt = defs[np.isin(defs["instrument_class"], [b"C", b"P"])]
        roots = set(opt["asset"].tolist())
        assert b"NQ" in roots
        weekly = [r for r in roots if r != b"NQ"]
        assert weekly and all(re.fullmatch(rb"QN[1-5]", r) for r in weekly)
        for row in opt:
            assert row["underlying_id"] == fut_id[row["underlying"]]
            prefix = row["raw_symbol"].split(b" ")[0]
            assert prefix.startswith(row["asset"])
        fut_exp = dict(zip(fut["instrument_id"].tolist(), fut["expiration"].tolist(), strict=True))
        for row in opt[opt["asset"] == b"NQ"]:  # quarterlies expire with their future
            assert row["expiration"] == fut_exp[row["underlying_id"]]


def test_instrument_ids_are_stable_across_days(days_data: dict) -> None:
    seen: dict[bytes, int] = {}
    for data in days_data.values():
        for raw, iid in zip(
            data["definition"]["raw_symbol"].tolist(),
            data["definition"]["instrument_id"].tolist(),
            strict=True,
        ):
            assert seen.setdefault(raw, iid) == iid
    assert len(set(seen.values())) == len(seen)


def test_open_interest_refers_to_the_previous_session(days_data: dict) -> None:
    days = sorted(days_data)
    for n, day in enumerate(days):
        stats = days_data[day]["statistics"]
        oi = stats[stats["stat_type"] == 9]
        prev = days[n - 1] if n else previous_trading_day(day)
        assert len(oi) > 0
        assert np.all(oi["ts_ref"] == _utc_midnight(prev))
        assert np.all(oi["ts_event"] == et_to_ns(day, 6, 0)) and np.all(
            oi["ts_recv"] == oi["ts_event"]
        )
        assert np.all(oi["price"] == dbn.UNDEF_PRICE) and np.all(oi["quantity"] >= 0)
        assert np.all(oi["update_action"] == 1)
        today = set(_option_ids(days_data[day]["definition"]).tolist())
        if n:
            listed_before = set(_option_ids(days_data[days[n - 1]]["definition"]).tolist())
            assert set(oi["instrument_id"].tolist()) == today & listed_before
        else:
            assert set(oi["instrument_id"].tolist()) == today
            assert oi["quantity"].max() >= 1_000 and oi["quantity"].min() >= 50
        settle = stats[stats["stat_type"] == 3]
        assert set(settle["instrument_id"].tolist()) == set(
            days_data[day]["definition"]["instrument_id"].tolist()
        )
        assert np.all(settle["ts_ref"] == _utc_midnight(day))
        assert np.all(settle["ts_event"] == et_to_ns(day, 16, 0))
        assert np.all(settle["stat_flags"] == 1)
        opt = np.isin(settle["instrument_id"], _option_ids(days_data[day]["definition"]))
        assert np.all(pricing.is_on_option_grid(settle["price"][opt]))
        assert np.all(np.diff(stats["ts_recv"].astype(np.int64)) >= 0)


# --- ground truth --------------------------------------------------------------------------------


def test_planting_rule() -> None:
    assert BASELINE_SESSIONS == 20
    assert [plants_on(i, 30) for i in range(30)] == [False] * 20 + [True] * 10
    assert [plants_on(i, 3) for i in range(3)] == [False, False, True]


def test_ground_truth_fields(sim: SimulationSummary, truth: dict) -> None:
    assert truth["origin"] == "synthetic" and truth["seed"] == SEED and truth["scale"] == SCALE
    assert truth["start"] == sim.days[0].isoformat()
    assert truth["days"] == [d.isoformat() for d in sim.days]
    assert truth["params"] == SimParams().to_dict()
    events = truth["events"]
    assert {e["date"] for e in events} == {sim.days[-1].isoformat()}  # only the last of 3 days
    kinds = [e["kind"] for e in events]
    flows = [e for e in events if e["kind"] == "institutional"]
    shaped = [e for e in flows if e["shape"] != "low_oi_block"]
    assert 2 <= len(shaped) <= 4 and len(flows) - len(shaped) <= 2
    assert kinds.count("decoy_straddle") == 1 and kinds.count("decoy_churn") == 1
    assert kinds.count("decoy_large_print") <= 2
    assert {e["direction"] for e in shaped} == {"BUY", "SELL"}
    assert {e["option_type"] for e in shaped} == {"C", "P"}
    for e in events:
        assert set(e) >= {
            "kind",
            "date",
            "root",
            "raw_symbols",
            "instrument_ids",
            "expiration",
            "strike",
            "option_type",
            "direction",
            "view",
            "start",
            "end",
            "contracts",
            "trades",
        }
        start = dt.datetime.fromisoformat(e["start"])
        end = dt.datetime.fromisoformat(e["end"])
        assert start.tzinfo is not None
        assert start == end if e["kind"] == "decoy_large_print" else start < end
        minutes = (end - start).total_seconds() / 60
        assert e["series"] == {"NQ": "quarterly", "QN3": "monthly"}.get(e["root"], "weekly")
        if e["kind"] == "institutional":
            assert e["option_type"] in "CP" and isinstance(e["informed"], bool)
            bullish = (e["option_type"] == "C") == (e["direction"] == "BUY")
            assert e["view"] == ("BULLISH" if bullish else "BEARISH")
            side = e["direction"].lower()
            for leg in e["legs"]:
                assert leg[f"{side}_contracts"] >= 6 * leg["expected_normal_contracts"]
            if e["shape"] == "burst":
                assert minutes <= 4.1 and 10 <= e["trades"] <= 20
                assert (start.timestamp() // 300) == (end.timestamp() // 300)  # one 5-min window
            elif e["shape"] == "multi_window":
                assert 6 <= minutes <= 21 and 15 <= e["trades"] <= 40
            elif e["shape"] == "sweep":
                assert 2 <= len(e["legs"]) <= 4 and minutes <= 4.1
                strikes = sorted(leg["strike"] for leg in e["legs"])
                assert np.all(np.diff(strikes) == 50)  # adjacent strikes of one expiry
                assert len({r.split()[0] for r in e["raw_symbols"]}) == 1
                assert {r.split()[1][0] for r in e["raw_symbols"]} == {e["option_type"]}
            else:
                assert e["shape"] == "low_oi_block" and e["contracts"] >= 600
            if len(e["legs"]) == 1:
                assert e["trades"] >= 10 and e["legs"][0][f"{side}_contracts"] == e["contracts"]
            if e["informed"]:
                assert (e["move_points"] > 0) == (e["view"] == "BULLISH")
                assert 25 <= abs(e["move_points"]) <= 50
                delay = (e["move_start_ns"] - e["end_ns"]) / 1e9
                ramp = (e["move_end_ns"] - e["move_start_ns"]) / 1e9
                assert 60 <= delay <= 301 and 300 <= ramp <= 900  # + up to 1 s of nudging
                assert e["move_start"] < e["move_end"]
            else:
                assert "move_points" not in e
        else:
            assert e["view"] == "NEUTRAL" and not e["informed"]
        if e["kind"] == "decoy_large_print":
            assert e["trades"] == 1 and 80 <= e["contracts"] <= 150 and start == end
        if e["kind"] == "decoy_straddle":
            assert e["option_type"] == "CP" and e["direction"] == "BUY"
            assert len(e["instrument_ids"]) == 2 and minutes <= 16
            call, put = e["legs"]
            assert call["buy_contracts"] == put["buy_contracts"]
            assert (
                call["raw_symbol"].split()[1][0] == "C" and put["raw_symbol"].split()[1][0] == "P"
            )
        if e["kind"] == "decoy_churn":
            assert e["direction"] == "BOTH"
        assert e["raw_symbols"][0].split()[1][1:] == str(int(e["strike"]))


def test_ground_truth_matches_the_trades_in_the_file(
    sim: SimulationSummary, truth: dict, days_data: dict
) -> None:
    for e in truth["events"]:
        day = dt.date.fromisoformat(e["date"])
        data = days_data[day]
        mbo, defs = data["mbo"], data["definition"]
        start = int(np.datetime64(e["start"].rstrip("Z"), "ns").astype(np.int64))
        end = int(np.datetime64(e["end"].rstrip("Z"), "ns").astype(np.int64))
        buy = sell = 0
        for iid, raw in zip(e["instrument_ids"], e["raw_symbols"], strict=True):
            row = defs[defs["instrument_id"] == iid]
            assert row["raw_symbol"][0].decode() == raw
            assert row["asset"][0].decode() == e["root"]
            leg = e["legs"][e["instrument_ids"].index(iid)]
            assert row["strike_price"][0] == int(leg["strike"] * 1e9)
            exp = dt.datetime.fromtimestamp(row["expiration"][0] / 1e9, tz=dt.UTC).date()
            assert exp.isoformat() == e["expiration"]
            sel = (
                (mbo["instrument_id"] == iid)
                & (mbo["action"] == b"T")
                & (mbo["ts_event"] >= start)
                & (mbo["ts_event"] <= end)
            )
            buy += int(mbo["size"][sel & (mbo["side"] == b"B")].sum())
            sell += int(mbo["size"][sel & (mbo["side"] == b"A")].sum())
        if e["kind"] == "institutional":
            mine = buy if e["direction"] == "BUY" else sell
            assert mine == e["contracts"]
            assert mine >= 0.9 * (buy + sell)
        elif e["kind"] == "decoy_straddle":
            assert buy == e["contracts"] and sell == 0
        elif e["kind"] == "decoy_large_print":  # noise trades on around it, not at the print
            assert (buy if e["direction"] == "BUY" else sell) == e["contracts"]
            assert min(buy, sell) == 0
        else:
            assert buy + sell == e["contracts"]
            assert 0.45 <= buy / (buy + sell) <= 0.55


# --- building blocks -----------------------------------------------------------------------------


def test_contract_calendar() -> None:
    assert contracts.front_future(dt.date(2026, 3, 11)).raw_symbol == "NQH6"
    assert contracts.front_future(dt.date(2026, 3, 12)).raw_symbol == "NQM6"
    assert contracts.third_friday(2026, 3) == dt.date(2026, 3, 20)
    assert contracts.quarterly_future(2026, 3).expiration_ns == et_to_ns(
        dt.date(2026, 3, 20), 9, 30
    )
    monday = contracts.new_expiries(dt.date(2026, 3, 2))
    assert [e.symbol_prefix for e in monday] == ["NQH6", "QN1H6", "QN2H6"]
    roll_week = contracts.new_expiries(dt.date(2026, 3, 16))
    assert [e.symbol_prefix for e in roll_week] == ["NQM6", "QN4H6", "QN1J6"]  # skips Mar 20
    assert roll_week[1].underlying.raw_symbol == "NQM6"
    good_friday = contracts.weekly_expiry(dt.date(2026, 4, 3))
    assert good_friday.expiration_ns == et_to_ns(dt.date(2026, 4, 2), 16, 0)
    assert good_friday.root == "QN1"


def test_option_grid() -> None:
    idx = np.arange(0, 140)
    px = pricing.option_grid_price_fixed(idx)
    assert px[0] == 50_000_000 and px[99] == 5 * 10**9 and px[100] == 5_250_000_000
    assert np.all(pricing.option_grid_index_of_fixed(px) == idx)
    assert np.all(pricing.is_on_option_grid(px))
    assert not pricing.is_on_option_grid(np.array([5_050_000_000]))[0]
    assert not pricing.is_on_option_grid(np.array([0]))[0]
    assert pricing.round_premium_fixed(np.array([0.001]))[0] == 50_000_000
    tau = 30 / 365.25
    value = float(pricing.black76(21000.0, 21000.0, tau, True))
    approx = (
        0.3989 * 21000.0 * 0.21 * tau**0.5 * np.exp(-0.04 * tau)
    )  # ATM: F*vol*sqrt(T)/sqrt(2pi)
    assert abs(value - approx) / approx < 0.01
    put = float(pricing.black76(21000.0, 20000.0, tau, False))
    call = float(pricing.black76(21000.0, 20000.0, tau, True))
    assert abs((call - put) - np.exp(-0.04 * tau) * 1000.0) < 1e-6  # put-call parity


def test_noise_size_mean_matches_constant() -> None:
    sizes = option_sizes(np.random.default_rng(0), 400_000)
    assert abs(sizes.mean() - MEAN_OPTION_NOISE_SIZE) < 0.05
    assert sizes.min() >= 1 and sizes.max() <= 100


# --- long runs -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_baseline_days_then_planted(tmp_path: Path) -> None:
    summary = simulate_market(tmp_path, 22, 3, scale=0.2)
    truth = json.loads(summary.truth_path.read_text())
    planted_days = sorted({e["date"] for e in truth["events"]})
    assert planted_days == [d.isoformat() for d in summary.days[20:]]


def test_scale_one_day_volume(tmp_path: Path) -> None:
    summary = simulate_market(tmp_path, 1, 2)
    assert 150_000 <= summary.records_by_schema["mbo"] <= 450_000


@pytest.mark.slow
def test_scale_20_day_volume(tmp_path: Path) -> None:
    summary = simulate_market(tmp_path, 1, 1, scale=20.0)
    assert summary.records_by_schema["mbo"] >= 5_000_000
