"""Columnar MBO events and their assembly into one sorted DBN record array per day.

Generators (snapshot, re-quotes, trades, churn) each emit an :class:`EventBatch`: a list of
events (time, instrument) and their records in order. Assembly stamps receive times, merges all
events by ``ts_recv`` without splitting any event, and only then hands out order ids and channel
sequence numbers. Order ids are assigned after the merge because an order's identity is a *slot*
(or a transient order), and which concrete id a record refers to depends on which add came
before it in the final file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import databento_dbn as dbn
import numpy as np

MBO_DTYPE = np.dtype(dbn.MBOMsg._dtypes)
MBO_LENGTH_WORDS = MBO_DTYPE.itemsize // 4
RTYPE_MBO = int(dbn.RType.MBO.value)
PUBLISHER_GLBX = 1
F_LAST = int(dbn.F_LAST)
F_SNAPSHOT = int(dbn.F_SNAPSHOT)
LATENCY_MIN_NS = 2_000
LATENCY_MAX_NS = 50_000

ADD, CANCEL, MODIFY, TRADE, FILL, CLEAR = (ord(c) for c in "ACMTFR")
SIDE_BID, SIDE_ASK, SIDE_NONE = ord("B"), ord("A"), ord("N")
NO_ORDER = -1


@dataclass
class EventBatch:
    """Events and their records; records are grouped by event, in event order.

    ``okey`` names the order a record refers to (a slot or transient key, ``NO_ORDER`` for T and
    R); ``new_id`` marks records that introduce a new order id (adds, and hidden fills).
    """

    ts: np.ndarray
    inst: np.ndarray
    rec_event: np.ndarray
    action: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    okey: np.ndarray
    new_id: np.ndarray
    flags: np.ndarray
    zero_latency: bool = False

    @property
    def n_events(self) -> int:
        return len(self.ts)

    @property
    def n_records(self) -> int:
        return len(self.rec_event)

    @staticmethod
    def from_cells(
        ev_ts: np.ndarray,
        ev_inst: np.ndarray,
        cell_event: np.ndarray,
        cell_order: np.ndarray,
        **fields: np.ndarray,
    ) -> EventBatch:
        """A batch from unordered cells, sorted by (event, cell_order); empty events dropped."""
        order = np.argsort((cell_event.astype(np.int64) << 16) | cell_order, kind="stable")
        cell_event = cell_event[order]
        used = np.flatnonzero(np.bincount(cell_event, minlength=len(ev_ts)))
        remap = np.full(len(ev_ts), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        n = len(cell_event)
        return EventBatch(
            ts=ev_ts[used],
            inst=ev_inst[used],
            rec_event=remap[cell_event],
            action=fields["action"][order],
            side=fields["side"][order],
            price=fields["price"][order],
            size=fields["size"][order],
            okey=fields.get("okey", np.full(n, NO_ORDER, dtype=np.int64))[order],
            new_id=fields.get("new_id", np.zeros(n, dtype=bool))[order],
            flags=fields.get("flags", np.zeros(n, dtype=np.uint8))[order],
        )


def _concat(batches: list[EventBatch], name: str) -> np.ndarray:
    return np.concatenate([getattr(b, name) for b in batches])


@dataclass
class MboDay:
    """A day's MBO records in file order, produced chunk by chunk.

    Only the event order is fixed up front. Order ids, flags and channel sequences are assigned
    per chunk with state carried over from the previous chunks, and each chunk is filled into a
    small reused buffer, so the day is never held as full 56-byte records (and cache-sized chunks
    are several times faster to fill than one day-sized array).
    """

    n: int
    ev_rank: np.ndarray  # file position -> sorted event
    ev_ts: np.ndarray  # per sorted event: absolute ts_event
    ev_recv: np.ndarray
    ev_latency: np.ndarray
    ev_instrument_id: np.ndarray
    ev_channel: np.ndarray
    perm: np.ndarray  # file position -> index into the src_* arrays (batch order)
    src_price: np.ndarray
    src_okey: np.ndarray
    src_meta: np.ndarray  # (n, 2) uint32: size; action | side << 8 | flags << 16 | new << 24
    order_id_base: int
    single_life_keys_from: int

    def __len__(self) -> int:
        return self.n

    def chunks(self, rows: int = 1 << 16) -> Iterator[bytes]:
        """The encoded records, ``rows`` at a time, in file order."""
        ids = _OrderIds(self.order_id_base, self.single_life_keys_from, self.src_okey)
        seq = np.zeros(256, dtype=np.int64)  # last sequence number per channel
        buf = np.zeros(min(rows, max(self.n, 1)), dtype=MBO_DTYPE)
        for start in range(0, self.n, rows):
            stop = min(start + rows, self.n)
            yield self._fill(start, stop, buf[: stop - start], ids, seq).tobytes()

    def _fill(
        self, start: int, stop: int, out: np.ndarray, ids: _OrderIds, seq: np.ndarray
    ) -> np.ndarray:
        ev = self.ev_rank[start:stop]
        src = self.perm[start:stop]
        # the small fields travel packed in one 8-byte row: one gather instead of five
        meta = self.src_meta.view(np.uint64).ravel()[src].view(np.uint32).reshape(-1, 2)
        small = meta[:, 1]
        nxt = self.ev_rank[start + 1 : stop + 1]
        last = np.ones(stop - start, dtype=bool)  # last record of its event
        last[: len(nxt)] = ev[: len(nxt)] != nxt
        channel = self.ev_channel[ev]
        out["length"] = MBO_LENGTH_WORDS
        out["rtype"] = RTYPE_MBO
        out["publisher_id"] = PUBLISHER_GLBX
        out["instrument_id"] = self.ev_instrument_id[ev]
        out["ts_event"] = self.ev_ts[ev]
        okey = self.src_okey[src]
        out["order_id"] = ids.assign(okey, (small >> 24).astype(bool))
        out["price"] = self.src_price[src]
        out["size"] = meta[:, 0]
        out["flags"] = ((small >> 16) & 0xFF) | np.where(last, F_LAST, 0)
        out["channel_id"] = channel
        out["action"].view(np.uint8)[:] = small & 0xFF
        out["side"].view(np.uint8)[:] = (small >> 8) & 0xFF
        out["ts_recv"] = self.ev_recv[ev]
        out["ts_in_delta"] = self.ev_latency[ev]
        out["sequence"] = _sequences(channel, seq)
        return out


class _OrderIds:
    """Order ids in file order: each add takes the next id; later records reuse their order's.

    Market-maker slots (keys below ``single_from``) hold a sequence of orders over the day, so
    the current id of every slot is carried from chunk to chunk. Keys from ``single_from`` on are
    single orders (transients, hidden fills) and are looked up by key.
    """

    def __init__(self, base: int, single_from: int, all_keys: np.ndarray) -> None:
        self.next_id = base + 1
        self.single_from = single_from
        n_single = int(all_keys.max()) - single_from + 1 if len(all_keys) else 0
        self.single = np.zeros(max(n_single, 0), dtype=np.uint64)
        self.slot = np.zeros(single_from, dtype=np.uint64)
        self.key_type = np.uint16 if single_from <= np.iinfo(np.uint16).max else np.int64

    def assign(self, okey: np.ndarray, new_id: np.ndarray) -> np.ndarray:
        ids = np.zeros(len(okey), dtype=np.uint64)
        fresh = np.uint64(self.next_id) + np.cumsum(new_id, dtype=np.uint64) - np.uint64(1)
        self.next_id += int(new_id.sum())
        ids[new_id] = fresh[new_id]

        single = okey >= self.single_from
        born = single & new_id
        self.single[okey[born] - self.single_from] = ids[born]
        later = single & ~new_id
        ids[later] = self.single[okey[later] - self.single_from]

        slots = np.flatnonzero((okey != NO_ORDER) & ~single)
        key = okey[slots].astype(self.key_type)
        order = np.argsort(key, kind="stable")  # radix sort for 16-bit keys
        pos, key = slots[order], key[order]
        is_new = new_id[pos]
        group = np.ones(len(pos), dtype=bool)
        group[1:] = key[1:] != key[:-1]
        n_new = np.cumsum(is_new)
        before = (n_new - is_new)[group]  # adds seen before each group's first record
        seen = n_new - np.repeat(before, np.diff(np.append(np.flatnonzero(group), len(pos))))
        births = np.append(ids[pos[is_new]], np.uint64(0))  # sentinel: chunks without adds
        ids[pos] = np.where(seen > 0, births[np.maximum(n_new - 1, 0)], self.slot[key])
        group_end = np.append(group[1:], True)
        self.slot[key[group_end]] = ids[pos[group_end]]
        if (ids[okey != NO_ORDER] == 0).any():
            raise AssertionError("simulator bug: an order is referenced before it was added")
        return ids


def _sequences(channel: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Per-channel sequence numbers, +1 per record, continuing from ``last`` (updated)."""
    seq = np.zeros(len(channel), dtype=np.uint32)
    for c in np.unique(channel):
        mask = channel == c
        count = int(mask.sum())
        seq[mask] = np.arange(last[c] + 1, last[c] + count + 1, dtype=np.uint32)
        last[c] += count
    return seq


def _packed_meta(batches: list[EventBatch], n: int) -> np.ndarray:
    """Size and the four one-byte fields of each record as an (n, 2) uint32 array."""
    meta = np.empty((n, 2), dtype=np.uint32)
    start = 0
    for b in batches:
        stop = start + b.n_records
        meta[start:stop, 0] = b.size
        small = b.action.astype(np.uint32)
        small |= b.side.astype(np.uint32) << 8
        small |= b.flags.astype(np.uint32) << 16
        small |= b.new_id.astype(np.uint32) << 24
        meta[start:stop, 1] = small
        start = stop
    return meta


def assemble(
    batches: list[EventBatch],
    instrument_ids: np.ndarray,
    channels: np.ndarray,
    day_start_ns: int,
    order_id_base: int,
    single_life_keys_from: int,
    rng: np.random.Generator,
) -> MboDay:
    """Put a day's events in ts_recv order; records follow their event, never split.

    Order keys below ``single_life_keys_from`` are market-maker slots (many orders over the day);
    keys from there on name one order each (transients, hidden fills).
    """
    batches = [b for b in batches if b.n_events]
    if sum(b.n_records for b in batches) >= 2**31:
        raise ValueError("more than 2**31 records in one day; lower the scale")
    ev_off = np.cumsum([0] + [b.n_events for b in batches])
    latency = rng.integers(LATENCY_MIN_NS, LATENCY_MAX_NS + 1, int(ev_off[-1]))
    for b, off in zip(batches, ev_off, strict=False):
        if b.zero_latency:
            latency[off : off + b.n_events] = 0
    ev_ts = _concat(batches, "ts")
    ev_recv = ev_ts + latency
    counts = np.concatenate([np.bincount(b.rec_event, minlength=b.n_events) for b in batches])
    n = int(counts.sum())

    ev_order = np.argsort(ev_recv, kind="stable")
    n_sorted = counts[ev_order]
    start_sorted = np.cumsum(n_sorted) - n_sorted
    start_src = (np.cumsum(counts) - counts)[ev_order]
    perm = np.repeat((start_src - start_sorted).astype(np.int32), n_sorted)
    perm += np.arange(n, dtype=np.int32)
    inst_sorted = _concat(batches, "inst")[ev_order]
    return MboDay(
        n=n,
        ev_rank=np.repeat(np.arange(len(ev_order), dtype=np.int32), n_sorted),
        ev_ts=(ev_ts[ev_order] + day_start_ns).astype(np.uint64),
        ev_recv=(ev_recv[ev_order] + day_start_ns).astype(np.uint64),
        ev_latency=latency[ev_order].astype(np.int32),
        ev_instrument_id=instrument_ids[inst_sorted],
        ev_channel=channels[inst_sorted],
        perm=perm,
        src_price=_concat(batches, "price"),
        src_okey=_concat(batches, "okey"),
        src_meta=_packed_meta(batches, n),
        order_id_base=order_id_base,
        single_life_keys_from=single_life_keys_from,
    )
