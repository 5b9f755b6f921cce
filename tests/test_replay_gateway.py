"""The replay gateway speaks the live protocol to the unmodified databento.Live client: the
stream it serves is the batch stream record for record (real CME sample files and a SYNTHETIC
simulated day), parent symbols resolve through definitions, intraday replay starts at ts_event,
faults are injected where asked, and refusals say why."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import time

import databento as db
import numpy as np
import pytest

from ifd_core.marketdata.dbn_stream import (
    END_OF_SESSION_MSG,
    SYSTEM_END_OF_INTERVAL,
    SYSTEM_HEARTBEAT,
    parse_records,
)
from ifd_core.marketdata.live_source import LiveFeedError, LiveParams, LiveSource, Subscription
from ifd_core.marketdata.record_source import FileReplaySource
from ifd_core.marketdata.replay_gateway import GatewayError, ReplayGateway
from ifd_core.settings import get_settings
from ifd_core.simulator.market import simulate_market

KEY = "db-IFDREPLAYTESTKEY0000000000000"
SUBS = ("definition", "statistics", "mbo")


@pytest.fixture(scope="module")
def sim_day(tmp_path_factory):
    """One SYNTHETIC simulated trade date (definition, statistics, mbo files)."""
    root = tmp_path_factory.mktemp("gw")
    simulate_market(root, 1, 11, scale=0.2)
    return root


def file_stream(paths) -> list[tuple[str, bytes]]:
    return [(b.schema, b.records.tobytes()) for b in FileReplaySource(list(paths)).batches()]


def joined(batches) -> bytes:
    return b"".join(b.records.tobytes() for b in batches if len(b))


def live_source(port: int, symbols=("QN1.OPT", "QN2.OPT", "NQ.OPT", "NQ.FUT"), **kw):
    params = {k: kw.pop(k) for k in list(kw) if k in LiveParams.__dataclass_fields__}
    subs = [Subscription(s, tuple(symbols)) for s in SUBS]
    return LiveSource(LiveParams("127.0.0.1", port, KEY, **params), subs, **kw)


def test_real_cme_sample_files_stream_exactly_as_stored(samples, tmp_path):
    src = samples / "databento-python" / "tests" / "data" / "GLBX.MDP3"
    for schema in SUBS:
        shutil.copy(src / f"test_data.{schema}.dbn.zst", tmp_path)
    expected = b"".join(b for _, b in file_stream(sorted(tmp_path.glob("*.dbn.zst"))))
    with ReplayGateway(tmp_path, [KEY]) as gw:
        source = live_source(gw.port, symbols=("ES.FUT",))
        got = list(source.batches())
    assert joined(got) == expected
    assert source.ended and source.origin == "live"  # real files: not marked synthetic
    assert set(source.symbology.values()) == {"ESH1"}


def test_the_sdk_client_sees_metadata_mappings_and_every_record(sim_day):
    """The SDK's own view: metadata with the synthetic marker, a symbol mapping per instrument,
    and as many records as the files hold."""
    with ReplayGateway(sim_day, [KEY]) as gw:
        client = db.Live(KEY, gateway="127.0.0.1", port=gw.port)
        counts: dict[str, int] = {}

        def count(rec) -> None:
            name = type(rec).__name__
            counts[name] = counts.get(name, 0) + 1

        client.add_callback(count)
        raw = io.BytesIO()
        client.add_stream(raw)
        for schema in SUBS:
            client.subscribe(
                "GLBX.MDP3",
                schema,
                symbols=["QN1.OPT", "QN2.OPT", "NQ.OPT", "NQ.FUT"],
                stype_in="parent",
            )
        client.start()
        client.block_for_close(timeout=60)
        meta = db.DBNStore.from_bytes(raw.getvalue()).metadata
        assert "IFD.SYNTHETIC" in meta.symbols and meta.dataset == "GLBX.MDP3"
        mapped = client.symbology_map
    total = sum(len(b) for b in FileReplaySource(list(sim_day.glob("*.dbn.zst"))).batches())
    data = counts["MBOMsg"] + counts["InstrumentDefMsg"] + counts["StatMsg"]
    assert data == total  # every option of QN1/QN2 and the future: the whole simulated chain
    assert counts["SymbolMappingMsg"] == len(mapped) > 10
    assert gw.stats.sessions_completed == 1 and gw.stats.records_sent == total


# Both ways records leave the SDK: the raw tap (bytes from its protocol, the default) and
# add_stream (one SDK object per record, re-encoded).
TAPS = pytest.mark.parametrize("raw_tap", [True, False], ids=["raw-tap", "add-stream"])


@TAPS
def test_a_simulated_day_streams_in_batch_order_and_is_marked_synthetic(sim_day, raw_tap):
    expected = b"".join(b for _, b in file_stream(sim_day.glob("*.dbn.zst")))
    with ReplayGateway(sim_day, [KEY]) as gw:
        source = live_source(gw.port, raw_tap=raw_tap)
        got = list(source.batches())
    assert joined(got) == expected
    assert source.origin == "synthetic" and all(b.origin == "synthetic" for b in got)
    assert source.gaps == [] and source.ended


def test_intraday_replay_serves_records_from_the_start_ts_event(sim_day):
    batches = list(FileReplaySource(list(sim_day.glob("*.dbn.zst"))).batches())
    mbo = np.concatenate([b.records for b in batches if b.schema == "mbo"])
    start = int(np.median(mbo["ts_event"]))
    with ReplayGateway(sim_day, [KEY]) as gw:
        got = list(live_source(gw.port, start_ns=start).batches())
    recs = [b.records for b in got if len(b)]
    assert all((r["ts_event"] >= start).all() for r in recs)
    want = sum(int((b.records["ts_event"] >= start).sum()) for b in batches)
    assert sum(len(r) for r in recs) == want > 0


@TAPS
@pytest.mark.parametrize("every", [9_000, 20_000])
def test_drops_are_injected_and_the_client_recovers_every_record(sim_day, every, raw_tap):
    expected = b"".join(b for _, b in file_stream(sim_day.glob("*.dbn.zst")))
    total = sum(len(b) for b in FileReplaySource(list(sim_day.glob("*.dbn.zst"))).batches())
    with ReplayGateway(sim_day, [KEY], drop_every=every) as gw:
        source = live_source(gw.port, reconnect_base_delay_s=0.01, raw_tap=raw_tap)
        got = list(source.batches())
        assert gw.stats.drops == (total - 1) // every
        assert gw.stats.drop_indices == [every * k for k in range(1, gw.stats.drops + 1)]
    assert joined(got) == expected  # nothing lost, nothing twice
    assert [g.status for g in source.gaps] == ["recovered_replay"] * gw.stats.drops
    assert sum(g.duplicates_removed for g in source.gaps) == source.stats.duplicates_removed > 0


def test_drop_after_drops_once(sim_day):
    with ReplayGateway(sim_day, [KEY], drop_after=5_000) as gw:
        source = live_source(gw.port, reconnect_base_delay_s=0.01)
        n = sum(len(b) for b in source.batches())
    assert gw.stats.drop_indices == [5_000] and gw.stats.connections == 2
    assert len(source.gaps) == 1 and n == gw.catalog.total


def test_a_refused_replay_leaves_an_unrecovered_gap_not_a_silent_hole(sim_day):
    """With replay refused (outside the window) and the reconnect missing an outage, the gap is
    recorded unrecovered with its bounds; the records after it still arrive."""
    with ReplayGateway(
        sim_day, [KEY], drop_after=30_000, replay_window_s=0.000_001, outage_s=60.0
    ) as gw:
        source = live_source(gw.port, reconnect_base_delay_s=0.01)
        n = sum(len(b) for b in source.batches())
    (gap,) = source.gaps
    assert gap.status == "unrecovered" and "replay" in gap.detail
    assert gap.end_ns - gap.start_ns >= 60 * 10**9
    assert 0 < n < gw.catalog.total
    assert any("replay window" in r for r in gw.stats.refusals)


@TAPS
def test_a_stalled_consumer_gets_backpressure_and_loses_nothing(sim_day, raw_tap):
    """The consumer sleeps; the bounded buffer fills, the SDK's reader blocks, TCP pushes back
    on the gateway. Every record still arrives, in order, and the stall is reported."""
    expected = b"".join(b for _, b in file_stream(sim_day.glob("*.dbn.zst")))
    stalls = []
    with ReplayGateway(sim_day, [KEY]) as gw:
        source = live_source(
            gw.port,
            max_buffer_bytes=500 * 56,
            stall_report_s=0.2,
            on_stall=stalls.append,
            raw_tap=raw_tap,
        )
        got = []
        for i, batch in enumerate(source.batches()):
            if i < 3:
                time.sleep(0.6)  # a consumer busy elsewhere
            got.append(batch)
    assert joined(got) == expected
    assert stalls and all(s.end_wall_ns - s.start_wall_ns >= 0.2e9 for s in stalls)
    assert source.gaps == []


def test_speed_paces_the_stream_by_ts_recv(sim_day):
    """At 50x, the last 100 s of market time take about 2 s of wall time."""
    batches = list(FileReplaySource(list(sim_day.glob("*.dbn.zst"))).batches())
    last = max(int(b.records["ts_recv"].max()) for b in batches)
    start = last - 100 * 10**9
    with ReplayGateway(sim_day, [KEY], speed=50.0) as gw:
        t0 = time.monotonic()
        got = list(live_source(gw.port, start_ns=start).batches())
        elapsed = time.monotonic() - t0
    ts = np.concatenate([b.records["ts_recv"] for b in got if len(b)])
    span_s = (ts.max() - ts.min()) / 1e9
    assert span_s > 20  # enough market time to measure the pace on
    assert span_s / 50 * 0.8 <= elapsed <= span_s / 50 + 5


# ---------------------------------------------------------------------- protocol and refusals
def raw_session(port: int, key: str, lines: list[str], heartbeat_s: int = 1, read_s=3.0):
    """Speak the protocol by hand (what the SDK does), return (auth reply, records bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_s)
    f = s.makefile("rb")
    assert f.readline().startswith(b"lsg_version=")
    challenge = f.readline().decode().strip().removeprefix("cram=")
    auth = hashlib.sha256(f"{challenge}|{key}".encode()).hexdigest() + "-" + key[-5:]
    s.sendall(
        f"auth={auth}|dataset=GLBX.MDP3|encoding=dbn|ts_out=0|compression=none|"
        f"heartbeat_interval_s={heartbeat_s}|client=ifd-test\n".encode()
    )
    reply = f.readline().decode()
    if not reply.startswith("success=1"):
        s.close()
        return reply, b""
    s.sendall("".join(lines).encode() + b"start_session=0\n")
    data = b""
    deadline = time.monotonic() + read_s
    while time.monotonic() < deadline:
        try:
            chunk = f.read1(1 << 16)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    head = 8 + int.from_bytes(data[4:8], "little")
    return reply, data[head:]


def test_heartbeats_flow_while_the_market_is_quiet(sim_day):
    """At real-time speed starting in a quiet stretch, the gateway sends heartbeats at the
    client's interval; the session ends with the end-of-session message only when done."""
    batches = list(FileReplaySource(list(sim_day.glob("*.dbn.zst"))).batches())
    ts = np.sort(np.concatenate([b.records["ts_recv"] for b in batches]))
    quiet = int(np.argmax(np.diff(ts)))  # the longest silence in the day
    assert (ts[quiet + 1] - ts[quiet]) > 5e9
    with ReplayGateway(sim_day, [KEY], speed=1.0) as gw:
        line = f"schema=mbo|stype_in=parent|symbols=QN1.OPT,QN2.OPT|start={ts[quiet]}|is_last=1\n"
        reply, body = raw_session(gw.port, KEY, [line], heartbeat_s=1, read_s=3.5)
    assert reply.startswith("success=1|session_id=")
    control = parse_records(body, "t").control
    beats = [c for c in control if c.kind == "system" and c.code == SYSTEM_HEARTBEAT]
    assert 2 <= len(beats) <= 4
    assert not any(c.code == SYSTEM_END_OF_INTERVAL for c in control if c.kind == "system")


def test_end_of_session_is_announced(sim_day):
    with ReplayGateway(sim_day, [KEY]) as gw:
        line = "schema=definition|stype_in=parent|symbols=NQ.FUT|start=0|is_last=1\n"
        _, body = raw_session(gw.port, KEY, [line])
    control = parse_records(body, "t").control
    texts = [c.text for c in control if c.kind == "system"]
    assert texts[-2:] == ["Finished definition replay", END_OF_SESSION_MSG]
    assert {c.symbol_in for c in control if c.kind == "symbol_mapping"} == {"NQ.FUT"}


def test_a_wrong_key_is_refused(sim_day):
    with ReplayGateway(sim_day, [KEY]) as gw:
        reply, _ = raw_session(gw.port, "db-WRONGKEY00000000000000000000000", [])
        assert gw.stats.auth_failures == 1
    assert reply.startswith("success=0|error=Authentication failed")


def test_the_live_source_explains_a_refused_key_and_an_unknown_dataset(sim_day):
    with ReplayGateway(sim_day, [KEY]) as gw:
        bad = LiveSource(
            LiveParams("127.0.0.1", gw.port, "db-WRONGKEY00000000000000000000000"),
            [Subscription("mbo", ("NQ.FUT",))],
        )
        with pytest.raises(LiveFeedError, match="refused the API key.*IFD_DATABENTO__API_KEY"):
            list(bad.batches())
        other = LiveSource(
            LiveParams("127.0.0.1", gw.port, KEY, dataset="XNAS.ITCH"),
            [Subscription("mbo", ("NQ.FUT",))],
        )
        with pytest.raises(LiveFeedError, match="XNAS.ITCH.*IFD_DATABENTO__DATASET"):
            list(other.batches())


@TAPS
def test_unknown_symbols_refuse_the_session_or_are_reported(sim_day, raw_tap):
    with ReplayGateway(sim_day, [KEY]) as gw:
        nothing = live_source(gw.port, symbols=("ZZZ.OPT", "ESZ9"), raw_tap=raw_tap)
        with pytest.raises(LiveFeedError, match="ZZZ.OPT, ESZ9|ESZ9, ZZZ.OPT"):
            list(nothing.batches())
        some = live_source(gw.port, symbols=("ZZZ.OPT", "NQ.FUT"))
        n = sum(len(b) for b in some.batches())
    assert n > 0 and some.ended
    assert some.not_found == ["symbols not found in GLBX.MDP3: ZZZ.OPT"]


def test_the_gateway_refuses_to_start_without_data_or_keys(tmp_path, sim_day):
    with pytest.raises(GatewayError, match="no DBN files"):
        ReplayGateway(tmp_path, [KEY])
    with pytest.raises(GatewayError, match="API key"):
        ReplayGateway(sim_day, [""])


def test_a_gap_replay_cannot_cover_is_backfilled_through_historical(sim_day, tmp_path, monkeypatch):
    """Replay refused and a minute missed on reconnect: the real Historical client (against the
    loopback Historical server, behind the budget gate, booked in the cost ledger) fills exactly
    the records between the last one seen and the first live one after the gap."""
    from jobs.live.backfill import HistoricalBackfiller
    from tests.servers.historical_http import HistoricalServer
    from warehouse.lake import Lake

    served = tmp_path / "historical"
    served.mkdir()
    for p in sim_day.glob("*.dbn.zst"):  # the Historical fixture serves test_data.<schema>...
        (served / f"test_data.{p.name.split('.')[1]}.dbn.zst").symlink_to(p)
    expected = b"".join(b for _, b in file_stream(sim_day.glob("*.dbn.zst")))
    with HistoricalServer(KEY, samples_dir=served) as hist:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(hist.cert_path))
        settings = get_settings(
            warehouse={"data_dir": tmp_path / "data"},
            databento={"api_key": KEY, "historical_gateway": hist.url},
        )
        lake = Lake(settings.data_dir)
        with ReplayGateway(
            sim_day, [KEY], drop_after=30_000, replay_window_s=0.000_001, outage_s=60.0
        ) as gw:
            source = live_source(
                gw.port,
                reconnect_base_delay_s=0.01,
                backfiller=HistoricalBackfiller(lake, settings),
            )
            got = list(source.batches())
    (gap,) = source.gaps
    assert gap.status == "backfilled" and gap.backfill_records > 0
    assert joined(got) == expected  # nothing lost, nothing twice
    assert any(b.origin == "backfill" for b in got)
    spend = lake.scan("cost_ledger").collect()
    assert spend.height > 0  # quotes and spend booked for each backfill request
