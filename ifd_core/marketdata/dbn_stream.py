"""A DBN record byte stream (what the Live client hands over, what a capture file holds) cut
into ``RecordBatch``es without one Python object per record.

The stream mixes record types (definitions, statistics, MBO, and the gateway's control records:
symbol mappings, system and error messages). Record boundaries come from each record's length
byte, walked by a compiled loop; consecutive records of one type are contiguous bytes, so each run
becomes a numpy structured array with ``np.frombuffer``. Control records are few and are decoded
one by one for the caller (heartbeats, end of session, symbol mappings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
from databento.common.constants import SCHEMA_STRUCT_MAP
from databento_dbn import ErrorMsg, RType, SymbolMappingMsg, SystemCode, SystemMsg

from ifd_core.marketdata.dbn_files import RTYPE_SCHEMA
from ifd_core.marketdata.record_source import RecordBatch

_RTYPE_SYMBOL_MAPPING = int(RType.SYMBOL_MAPPING.value)
_RTYPE_SYSTEM = int(RType.SYSTEM.value)
CONTROL_DTYPES = {
    _RTYPE_SYMBOL_MAPPING: np.dtype(SymbolMappingMsg._dtypes),
    _RTYPE_SYSTEM: np.dtype(SystemMsg._dtypes),
    int(RType.ERROR.value): np.dtype(ErrorMsg._dtypes),
}
# SystemMsg codes the live path acts on.
SYSTEM_HEARTBEAT = int(SystemCode.HEARTBEAT.value)
SYSTEM_REPLAY_COMPLETED = int(SystemCode.REPLAY_COMPLETED.value)
SYSTEM_END_OF_INTERVAL = int(SystemCode.END_OF_INTERVAL.value)
# What the replay gateway says (an END_OF_INTERVAL system message) when a stored session has been
# served to its end; a live consumer run with --exit-on-end stops on it.
END_OF_SESSION_MSG = "ifd-replay: end of session"
DATA_SCHEMAS = ("mbo", "definition", "statistics", "trades", "status")
DATA_DTYPES = {
    rtype: (schema, np.dtype(SCHEMA_STRUCT_MAP[schema]._dtypes))
    for rtype, schema in RTYPE_SCHEMA.items()
    if schema in DATA_SCHEMAS
}


class DbnStreamError(ValueError):
    """Bytes that are not a whole DBN record stream of known record types."""


@numba.njit(cache=True)
def _walk(buf: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """Offsets of whole records in ``buf``, and how many bytes they cover (a cut-off record at
    the end is left for the next chunk)."""
    n = buf.shape[0]
    out = np.empty(n // 16 + 1, np.int64)
    k = 0
    pos = 0
    while pos < n:
        length = np.int64(buf[pos]) * 4
        if length == 0:
            return out[:k], -1 - pos  # corrupt: a zero-length record
        if pos + length > n:
            break
        out[k] = pos
        k += 1
        pos += length
    return out[:k], pos


@dataclass
class ControlRecord:
    """A gateway control record, decoded: ``kind`` is symbol_mapping, system or error."""

    kind: str
    ts_event: int
    instrument_id: int
    text: str
    code: int = 0
    symbol_in: str = ""
    symbol_out: str = ""


@dataclass
class ParsedChunk:
    batches: list[RecordBatch] = field(default_factory=list)
    control: list[ControlRecord] = field(default_factory=list)
    consumed: int = 0  # bytes of whole records; the rest is a partial record
    unknown: dict[int, int] = field(default_factory=dict)  # rtype → count (never silently lost)


def parse_records(buf: bytes | bytearray | memoryview, origin: str) -> ParsedChunk:
    """Cut whole records of ``buf`` into batches of consecutive same-type data records (stream
    order kept) and decoded control records."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    offsets, consumed = _walk(arr)
    if consumed < 0:
        raise DbnStreamError(f"corrupt DBN stream: zero-length record at byte {-1 - consumed}")
    out = ParsedChunk(consumed=consumed)
    if len(offsets) == 0:
        return out
    rtypes = arr[offsets + 1]
    breaks = np.flatnonzero(np.diff(rtypes)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(offsets)]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        rtype = int(rtypes[s])
        lo = int(offsets[s])
        hi = int(offsets[e]) if e < len(offsets) else consumed
        if rtype in DATA_DTYPES:
            schema, dtype = DATA_DTYPES[rtype]
            if (hi - lo) != (e - s) * dtype.itemsize:
                raise DbnStreamError(
                    f"{schema} records of unexpected size at byte {lo}: a DBN version other than "
                    "3, or ts_out records, which IFD does not request"
                )
            out.batches.append(RecordBatch(schema, np.frombuffer(buf[lo:hi], dtype=dtype), origin))
        elif rtype in CONTROL_DTYPES:
            dtype = CONTROL_DTYPES[rtype]
            for i in range(s, e):
                o = int(offsets[i])
                out.control.append(
                    _control(rtype, np.frombuffer(buf[o : o + dtype.itemsize], dtype))
                )
        else:
            out.unknown[rtype] = out.unknown.get(rtype, 0) + (e - s)
    return out


def _control(rtype: int, rec: np.ndarray) -> ControlRecord:
    r = rec[0]
    base = {"ts_event": int(r["ts_event"]), "instrument_id": int(r["instrument_id"])}
    if rtype == _RTYPE_SYMBOL_MAPPING:
        return ControlRecord(
            "symbol_mapping",
            text="",
            symbol_in=_text(r["stype_in_symbol"]),
            symbol_out=_text(r["stype_out_symbol"]),
            **base,
        )
    if rtype == _RTYPE_SYSTEM:
        return ControlRecord("system", text=_text(r["msg"]), code=int(r["code"]), **base)
    return ControlRecord("error", text=_text(r["err"]), code=int(r["code"]), **base)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def ts_recv_of(batch: RecordBatch) -> np.ndarray:
    names = batch.records.dtype.names
    return batch.records["ts_recv" if "ts_recv" in names else "ts_event"]
