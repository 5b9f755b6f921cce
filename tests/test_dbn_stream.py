"""Cutting a live DBN byte stream into batches, and removing the replayed overlap at a reconnect
seam exactly (SYNTHETIC simulated records)."""

from __future__ import annotations

import numpy as np
import pytest
from databento_dbn import SType, SymbolMappingMsg, SystemCode, SystemMsg

from ifd_core.marketdata.dbn_files import RTYPE_SCHEMA
from ifd_core.marketdata.dbn_stream import DbnStreamError, parse_records, ts_recv_of
from ifd_core.marketdata.live_source import LiveParams, LiveSource, Subscription
from ifd_core.marketdata.record_source import FileReplaySource, RecordBatch
from ifd_core.simulator.market import simulate_market


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> list[RecordBatch]:
    out = tmp_path_factory.mktemp("sim")
    summary = simulate_market(out, 1, 3, scale=0.05)
    return list(FileReplaySource(summary.files, batch_records=50_000).batches())


def as_bytes(batches: list[RecordBatch]) -> bytes:
    return b"".join(b.records.tobytes() for b in batches)


def records_of(batches: list[RecordBatch]) -> list[tuple[str, bytes]]:
    return [(b.schema, b.records[i : i + 1].tobytes()) for b in batches for i in range(len(b))]


def test_a_stream_cut_anywhere_parses_back_to_the_same_records(stream):
    data = as_bytes(stream)
    rng = np.random.default_rng(5)
    cuts = sorted(rng.choice(len(data), 40, replace=False).tolist())
    got: list[RecordBatch] = []
    pending = b""
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        buf = pending + data[a:b]
        parsed = parse_records(buf, "live")
        pending = buf[parsed.consumed :]
        got += parsed.batches
    assert pending == b""
    assert records_of(got) == records_of(stream)


def test_control_records_are_decoded_not_mixed_with_data(stream):
    hb = SystemMsg(ts_event=5, msg="Heartbeat", code=SystemCode.HEARTBEAT)
    sm = SymbolMappingMsg(
        publisher_id=1,
        instrument_id=42,
        ts_event=6,
        stype_in=SType.PARENT,
        stype_in_symbol="NQ.OPT",
        stype_out=SType.INSTRUMENT_ID,
        stype_out_symbol="NQM6 C20000",
        start_ts=0,
        end_ts=0,
    )
    first = stream[0].records[:3].tobytes()
    parsed = parse_records(bytes(hb) + first + bytes(sm), "live")
    assert [len(b) for b in parsed.batches] == [3]
    kinds = [(c.kind, c.text or c.symbol_out) for c in parsed.control]
    assert kinds == [("system", "Heartbeat"), ("symbol_mapping", "NQM6 C20000")]


def test_the_rtype_table_from_databento_dbn_matches_the_dbn_record_types():
    # The table is built from databento_dbn.RType; the DBN spec's record-type bytes, written out
    # here independently, catch a library change or a schema dropped from the list.
    assert RTYPE_SCHEMA == {
        0xA0: "mbo",
        0x00: "trades",
        0x01: "mbp-1",  # tbbo shares the MBP-1 record type; mbp-1 names it
        0x0A: "mbp-10",
        0xC3: "bbo-1s",
        0xC4: "bbo-1m",
        0x20: "ohlcv-1s",
        0x21: "ohlcv-1m",
        0x22: "ohlcv-1h",
        0x23: "ohlcv-1d",
        0x24: "ohlcv-eod",
        0x13: "definition",
        0x18: "statistics",
        0x12: "status",
        0x16: "symbol_mapping",
        0x15: "error",
        0x17: "system",
    }


def test_a_zero_length_record_is_an_error():
    with pytest.raises(DbnStreamError, match="zero-length"):
        parse_records(b"\x00" * 16, "live")


@pytest.mark.parametrize("margin", [1, 500, 5_000])
def test_the_replayed_overlap_at_a_seam_is_removed_exactly(stream, margin):
    """A drop after record k, then a replay from k - margin: every record comes out once."""
    flat = [(b.schema, b.records[i : i + 1]) for b in stream for i in range(len(b))]
    src = LiveSource(LiveParams("127.0.0.1", 1, "k"), [Subscription("mbo", ("NQ.OPT",))])
    k = len(flat) // 2
    out: list[tuple[str, bytes]] = []

    def consume(rows, catching_up):
        for schema, rec in rows:
            b = RecordBatch(schema, rec, "live")
            if catching_up:
                keep = src._dedup_mask(b)
                if not keep.any():
                    continue
                catching_up = False
            src._advance(b)
            out.append((schema, rec.tobytes()))

    consume(flat[:k], False)
    # Replays start by ts_event, the stream is in ts_recv order: equal ts_recv values at the seam
    # are the case that needs the byte match.
    consume(flat[max(0, k - margin) :], True)
    assert out == [(s, r.tobytes()) for s, r in flat]
    assert int(ts_recv_of(RecordBatch(flat[-1][0], flat[-1][1], "x"))[0]) == src.position[0]
