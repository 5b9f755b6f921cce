"""The live feed as a RecordSource: the real ``databento.Live`` client, with reconnects that lose
nothing.

``LiveSource.batches()`` yields the same ``RecordBatch``es a file replay yields, in ts_recv order,
so the FlowEngine cannot tell a socket from a file (docs/architecture.md §One engine, three feeds).
Each connection is a fresh client replaying from the last ``ts_event`` seen, the seam is
de-duplicated exactly, a refused replay is backfilled or recorded ``unrecovered``, the sink is
bounded in bytes (TCP pushes back, nothing is dropped), and connection attempts are retried
behind an optional circuit breaker: docs/operations.md §Live run (Gaps and backfill).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ifd_core.marketdata.dbn_files import SYNTHETIC_MARKER
from ifd_core.marketdata.dbn_stream import (
    END_OF_SESSION_MSG,
    SYSTEM_END_OF_INTERVAL,
    SYSTEM_HEARTBEAT,
    ControlRecord,
    DbnStreamError,
    parse_records,
    ts_recv_of,
)
from ifd_core.marketdata.record_source import RecordBatch
from ifd_core.ops.resilience import Breaker, BreakerOpen
from ifd_core.units import NS

log = logging.getLogger(__name__)

_EMPTY = np.empty(0, np.uint8)


class LiveFeedError(RuntimeError):
    """The feed refused us for a reason retrying cannot fix; the message says what to do."""


class _Transient(RuntimeError):
    """A connection that failed or dropped; worth another attempt."""


@dataclass(frozen=True)
class Subscription:
    schema: str
    symbols: tuple[str, ...]
    stype_in: str = "parent"


@dataclass(frozen=True)
class LiveParams:
    """How to reach the feed and how hard to try (``settings.live`` and ``settings.databento``)."""

    host: str
    port: int
    key: str
    dataset: str = "GLBX.MDP3"
    heartbeat_interval_s: int = 10
    reconnect_max_attempts: int = 10
    reconnect_base_delay_s: float = 0.5
    reconnect_max_delay_s: float = 30.0
    replay_margin_s: float = 10.0
    max_buffer_bytes: int = 256 * 1024 * 1024
    raw_tap: bool = True  # bytes from the SDK's protocol (fast) or its add_stream (per record)
    stall_report_s: float = 1.0
    take_timeout_s: float = 0.05
    idle_yield_s: float = 1.0


@dataclass
class Gap:
    """A disconnect: ``[start_ns, end_ns)`` in exchange time, and how it was closed."""

    gap_id: int
    start_ns: int  # ts_event of the last record seen before the drop
    last_ts_recv: int
    disconnected_wall_ns: int
    reason: str
    end_ns: int | None = None  # ts_event of the first new record after the reconnect
    reconnected_wall_ns: int | None = None
    status: str = "open"  # recovered_replay | backfilled | unrecovered | skipped_budget | open
    replay_start_ns: int | None = None
    duplicates_removed: int = 0
    attempts: int = 0
    backfill_records: int = 0
    detail: str = ""


@dataclass
class Stall:
    """The consumer held the feed back (backpressure) for a while: an incident, not a loss."""

    start_wall_ns: int
    end_wall_ns: int
    buffered_bytes: int


@dataclass
class LiveStats:
    connections: int = 0
    records: int = 0
    duplicates_removed: int = 0
    heartbeats: int = 0
    unknown_records: dict[int, int] = field(default_factory=dict)
    system_messages: list[str] = field(default_factory=list)


# A backfill hook: (gap, subscriptions) → ts_recv-ordered batches of the gap; raises to refuse.
Backfiller = Callable[[Gap, Sequence[Subscription]], list[RecordBatch]]


class _Sink:
    """Where the client's bytes land (on the SDK's event-loop thread), for the consumer to take.

    Two feeds: ``write`` (one record per call, the SDK's ``add_stream`` hook) and ``write_raw``
    (whole socket reads from the raw tap, the DBN metadata header first). A deque of byte
    strings is appended to without a lock. The buffer is bounded in bytes: a write that finds
    it full blocks the SDK's loop, so the socket is not read and TCP holds the gateway back;
    a block longer than ``stall_report_s`` becomes a ``Stall``. ``take`` hands everything
    buffered to the consumer with the wall time the oldest of it arrived (the conservative local
    receive time used for decision latency)."""

    def __init__(self, max_bytes: int, stall_report_s: float) -> None:
        self._q: deque[bytes] = deque()
        self._max = max_bytes
        # Bytes written (only the SDK's thread adds) and taken (only the consumer adds): each
        # has a single writer, so their difference is exact without a lock.
        self._in = 0
        self._out = 0
        self._head = b""
        self._room = threading.Event()
        self._room.set()
        self._first_ns: int | None = None
        self._wake = threading.Event()
        self._waiting = False
        self.metadata: bytes | None = None
        self.done = threading.Event()
        self.outcome: BaseException | None = None
        self.stalls: list[Stall] = []
        self.stalls_reported = 0
        self._stall_report_ns = int(stall_report_s * NS)
        self.closed = False

    # -- the io.RawIOBase bits ClientStream checks
    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def write(self, b: bytes) -> int:
        if self.metadata is None and b[:3] == b"DBN":
            self.metadata = bytes(b)
            return len(b)
        if self._in - self._out >= self._max:
            self._wait_for_room()
        if self._first_ns is None:
            self._first_ns = time.time_ns()
        self._q.append(b)
        self._in += len(b)
        if self._waiting:
            self._wake.set()
        return len(b)

    def write_raw(self, data: bytes) -> None:
        """A socket read of the DBN stream: the metadata header (once), then records."""
        if self.metadata is None:
            self._head += data
            if len(self._head) < 8:
                return
            if self._head[:3] != b"DBN":
                raise DbnStreamError("the live stream does not start with a DBN header")
            end = 8 + int.from_bytes(self._head[4:8], "little")
            if len(self._head) < end:
                return
            self.metadata, data, self._head = self._head[:end], self._head[end:], b""
            if not data:
                return
        self.write(data)

    def _wait_for_room(self) -> None:
        t0 = time.time_ns()
        buffered = self._in - self._out
        self._room.clear()
        while self._in - self._out >= self._max and not self.closed:
            self._room.wait(0.1)
        t1 = time.time_ns()
        if t1 - t0 >= self._stall_report_ns:
            self.stalls.append(Stall(t0, t1, buffered))

    def take(self, timeout: float) -> tuple[list[bytes], int]:
        """Everything buffered (possibly nothing after ``timeout``), and its oldest receive time."""
        q = self._q
        if not q and not self.done.is_set():
            self._wake.clear()
            self._waiting = True
            if not q:
                self._wake.wait(timeout)
            self._waiting = False
        n = len(q)
        items = [q.popleft() for _ in range(n)]
        self._out += sum(len(b) for b in items)
        first = self._first_ns or time.time_ns()
        self._first_ns = None if not q else time.time_ns()
        self._room.set()
        return items, first


def _tap(client, sink: _Sink) -> None:
    """Take the session's DBN bytes straight from the SDK's protocol, before it decodes them.

    The SDK turns every record into a Python object (then, for ``add_stream``, back into bytes):
    about 0.5-0.75 M records/s on our machines, below what the engine takes. The connection,
    authentication, subscriptions, session start, heartbeat timeout and close stay the SDK's;
    only ``_process_dbn`` (the method its protocol hands every DBN read to) is replaced on this
    connection's protocol. It is private, so its absence is an error naming the switch back."""
    session = getattr(client, "_session", None)
    proto = getattr(session, "_protocol", None)
    if proto is None or not hasattr(proto, "_process_dbn") or not hasattr(proto, "_loop"):
        raise LiveFeedError(
            "this databento version no longer exposes the protocol hook the raw tap uses; set "
            "IFD_LIVE__RAW_TAP=false to take records through the SDK's add_stream instead"
        )
    loop = proto._loop

    def process_dbn(data: bytes) -> None:
        proto._last_msg_loop_time = loop.time()  # the SDK's heartbeat timeout watches this
        sink.write_raw(data)
        proto._last_msg_loop_time = loop.time()  # a stall (backpressure) is not a silence

    proto._process_dbn = process_dbn


class LiveSource:
    """``batches()`` streams the subscriptions from ``start_ns`` until the gateway ends the
    session (``ended``), ``stop()`` is called, or the feed fails permanently."""

    def __init__(
        self,
        params: LiveParams,
        subscriptions: Sequence[Subscription],
        start_ns: int | None = None,
        *,
        backfiller: Backfiller | None = None,
        min_backfill_gap_s: float = 0.0,
        on_gap: Callable[[Gap], None] | None = None,
        on_stall: Callable[[Stall], None] | None = None,
        on_heartbeat: Callable[[int], None] | None = None,
        client_factory: Callable[..., object] | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        if not subscriptions:
            raise ValueError("a live source needs at least one subscription")
        self.params = params
        self.subscriptions = list(subscriptions)
        self.start_ns = start_ns
        self.backfiller = backfiller
        self.min_backfill_gap_ns = int(min_backfill_gap_s * NS)
        self.on_gap = on_gap or (lambda g: None)
        self.on_stall = on_stall or (lambda s: None)
        self.on_heartbeat = on_heartbeat or (lambda ns: None)
        self._client_factory = client_factory
        self.breaker = breaker
        self.gaps: list[Gap] = []
        self.stats = LiveStats()
        self.symbology: dict[int, str] = {}
        self.not_found: list[str] = []
        self._gateway_errors: list[str] = []
        self.origin = "live"
        self.ended = False
        self.last_receive_ns = 0  # wall time of the oldest record of the last batch handed out
        self._stop = threading.Event()
        self._client = None
        # Stream position: the last record handed out and the records seen at its ts_recv.
        self._last_ts_recv: int | None = None
        self._last_ts_event: int | None = None
        self._seam: Counter[bytes] = Counter()

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Finish after the records already received (SIGTERM, end of the streaming period)."""
        self._stop.set()

    @property
    def position(self) -> tuple[int | None, int | None]:
        return self._last_ts_recv, self._last_ts_event

    def resume_after(self, ts_recv: int, ts_event: int, seam: Sequence[bytes]) -> None:
        """Start as if the records up to ``ts_recv`` (and ``seam``, the ones at it) were seen:
        a restart from a checkpoint replays from there and keeps only what is new."""
        self._last_ts_recv, self._last_ts_event = ts_recv, ts_event
        self._seam = Counter(seam)

    # ------------------------------------------------------------------ stream
    def batches(self) -> Iterator[RecordBatch]:
        try:
            yield from self._batches()
        finally:  # the consumer stopped early (end of its date) or the feed failed
            client, self._client = self._client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    client.terminate()

    def _batches(self) -> Iterator[RecordBatch]:
        gap: Gap | None = None
        replay_refused = False
        failures = 0
        while True:
            if self._last_ts_event is None:
                start = self.start_ns
            elif replay_refused:
                start = None
            else:
                start = max(
                    self._last_ts_event - int(self.params.replay_margin_s * NS),
                    self.start_ns or 0,
                )
            if gap is not None:
                gap.replay_start_ns = start
            client, sink = self._connect(start, gap)
            progressed = False
            for batch in self._drain(sink, catching_up=self._last_ts_recv is not None):
                if len(batch) == 0:  # idle: lets the consumer flush and report while starved
                    yield batch
                    continue
                if gap is not None and gap.end_ns is None:
                    gap.end_ns = int(batch.records["ts_event"][0])
                    gap.reconnected_wall_ns = time.time_ns()
                    if start is not None:
                        gap.status = "recovered_replay"
                    else:
                        yield from self._backfill(gap, batch)
                    self._close_gap(gap)
                    gap = None
                # Only now: a backfill above is cut against the position before this batch.
                self._advance(batch)
                progressed = True
                yield batch
            self._report_stalls(sink)
            outcome = sink.outcome
            if self._gateway_errors:  # the gateway said why it closed: not a mere drop
                text, self._gateway_errors = ", ".join(self._gateway_errors), []
                outcome = LiveFeedError(_explain(text, self.params))
            if self.ended or self._stop.is_set():
                if gap is not None:  # stopped while reconnecting: the gap stays open
                    gap.status = "unrecovered"
                    gap.detail = gap.detail or "stopped before any record arrived after reconnect"
                    self._close_gap(gap)
                return
            # The connection closed without the end-of-session marker: a drop.
            if isinstance(outcome, LiveFeedError):
                if start is not None and gap is not None and not replay_refused:
                    replay_refused = True  # the gateway would not replay from there
                    gap.detail = f"intraday replay refused: {outcome}"
                    continue
                raise outcome
            failures = 0 if progressed else failures + 1
            if failures >= self.params.reconnect_max_attempts:
                raise LiveFeedError(
                    f"the feed at {self.params.host}:{self.params.port} dropped "
                    f"{failures} connections in a row without delivering a record; giving up"
                )
            if gap is None:
                gap = self._open_gap(outcome)
            time.sleep(min(self.params.reconnect_base_delay_s * failures, 5.0))

    def _open_gap(self, outcome: BaseException | None) -> Gap:
        last_event = self._last_ts_event if self._last_ts_event is not None else self.start_ns
        g = Gap(
            gap_id=len(self.gaps) + 1,
            start_ns=int(last_event or 0),
            last_ts_recv=int(self._last_ts_recv or 0),
            disconnected_wall_ns=time.time_ns(),
            reason=_one_line(outcome) if outcome else "connection closed without end of session",
        )
        self.gaps.append(g)
        log.warning("live feed dropped (%s); reconnecting", g.reason)
        return g

    def _close_gap(self, gap: Gap) -> None:
        log.info("gap %d closed: %s", gap.gap_id, gap.status)
        self.on_gap(gap)

    def _backfill(self, gap: Gap, first_live: RecordBatch) -> Iterator[RecordBatch]:
        """Records of ``[gap.start_ns, gap.end_ns)`` from the Historical client, before the live
        records that follow the gap; else the gap is unrecovered."""
        span = (gap.end_ns or 0) - gap.start_ns
        if self.backfiller is None or span < self.min_backfill_gap_ns:
            gap.status = "unrecovered"
            gap.detail = gap.detail or "no replay; below the backfill threshold or no backfiller"
            return
        try:
            got = self.backfiller(gap, self.subscriptions)
        except Exception as exc:  # budget refusals and Historical errors alike end up here
            gap.status = "skipped_budget" if "budget" in str(exc).lower() else "unrecovered"
            gap.detail = f"{gap.detail}; backfill failed: {_one_line(exc)}".lstrip("; ")
            return
        limit = int(ts_recv_of(first_live)[0])
        for batch in got:
            ts = ts_recv_of(batch)
            keep = self._dedup_mask(batch) & (ts < limit)
            if keep.any():
                out = RecordBatch(batch.schema, batch.records[keep], "backfill")
                gap.backfill_records += len(out)
                self._advance(out)
                yield out
        gap.status = "backfilled"

    # ------------------------------------------------------------------ connection
    def _new_client(self):
        if self._client_factory is not None:
            return self._client_factory()
        import databento as db

        p = self.params
        return db.Live(
            key=p.key,
            gateway=p.host,
            port=p.port,
            heartbeat_interval_s=p.heartbeat_interval_s,
        )

    def _connect(self, start: int | None, gap: Gap | None):
        p = self.params
        backoff = wait_exponential_jitter(
            multiplier=p.reconnect_base_delay_s, max=p.reconnect_max_delay_s
        )

        def wait(state) -> float:
            # An open breaker names its next probe time: waiting less only gets refused again.
            exc = state.outcome.exception() if state.outcome else None
            delay = backoff(state)
            if isinstance(exc, BreakerOpen) and exc.retry_at is not None:
                until = (exc.retry_at - datetime.now(UTC)).total_seconds()
                delay = max(delay, until + 0.05)
            return delay

        def attempt():
            if self.breaker is None:
                return self._open(start)
            return self.breaker.call(self._open, start)

        retrying = Retrying(
            stop=stop_after_attempt(max(1, p.reconnect_max_attempts)),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Transient | BreakerOpen)),
            sleep=self._stop.wait,  # stop() ends a wait at once
            reraise=True,
        )
        try:
            client, sink = retrying(attempt)
        except (_Transient, BreakerOpen) as exc:
            raise LiveFeedError(
                f"cannot reach the live feed at {p.host}:{p.port} after "
                f"{p.reconnect_max_attempts} attempts: {exc}"
            ) from None
        if gap is not None:
            gap.attempts += retrying.statistics.get("attempt_number", 1)
        self.stats.connections += 1
        return client, sink

    def _open(self, start: int | None):
        from databento.common.error import BentoError

        p = self.params
        sink = _Sink(p.max_buffer_bytes, p.stall_report_s)
        client = self._new_client()
        try:
            if not p.raw_tap:
                client.add_stream(sink)
            for sub in self.subscriptions:
                client.subscribe(
                    dataset=p.dataset,
                    schema=sub.schema,
                    symbols=list(sub.symbols),
                    stype_in=sub.stype_in,
                    start=start,
                )
            if p.raw_tap:  # connected by the first subscribe; nothing is read before start
                _tap(client, sink)
            client.start()
        except BentoError as exc:
            text = _one_line(exc)
            if "Connection to" in text or "timed out" in text:
                raise _Transient(text) from None
            raise LiveFeedError(_explain(text, p)) from None
        except OSError as exc:
            raise _Transient(_one_line(exc)) from None
        self._client = client

        def watch() -> None:
            try:
                client.block_for_close()
            except BentoError as exc:
                text = _one_line(exc)
                gateway_error = text != "connection lost" and "Gateway timeout" not in text
                sink.outcome = (
                    LiveFeedError(_explain(text, p)) if gateway_error else _Transient(text)
                )
            except BaseException as exc:  # noqa: BLE001 - reported to the consumer, not lost
                sink.outcome = _Transient(_one_line(exc))
            finally:
                sink.done.set()
                sink._wake.set()

        threading.Thread(target=watch, name="ifd-live-watch", daemon=True).start()
        return client, sink

    def _report_stalls(self, sink: _Sink) -> None:
        """Stalls as they end, not when the connection does (a session lasts a day)."""
        while sink.stalls_reported < len(sink.stalls):
            self.on_stall(sink.stalls[sink.stalls_reported])
            sink.stalls_reported += 1

    def _drain(self, sink: _Sink, catching_up: bool) -> Iterator[RecordBatch]:
        pending = b""
        stopping = False
        idle_since = time.monotonic()
        while True:
            items, first_ns = sink.take(self.params.take_timeout_s)
            self._report_stalls(sink)
            if not items and time.monotonic() - idle_since >= self.params.idle_yield_s:
                idle_since = time.monotonic()
                yield RecordBatch("idle", _EMPTY, self.origin)
            marked = sink.metadata is not None and SYNTHETIC_MARKER.encode() in sink.metadata
            if marked and self.origin == "live":
                self.origin = "synthetic"
            if items:
                buf = pending + b"".join(items) if pending else b"".join(items)
                parsed = parse_records(buf, self.origin)
                pending = buf[parsed.consumed :]
                for rtype, n in parsed.unknown.items():
                    self.stats.unknown_records[rtype] = self.stats.unknown_records.get(rtype, 0) + n
                for c in parsed.control:
                    self._on_control(c)
                self.last_receive_ns = first_ns
                idle_since = time.monotonic()
                for batch in parsed.batches:
                    if catching_up:
                        keep = self._dedup_mask(batch)
                        dups = int(len(keep) - keep.sum())
                        self.stats.duplicates_removed += dups
                        if self.gaps and self.gaps[-1].end_ns is None:
                            self.gaps[-1].duplicates_removed += dups
                        if not keep.any():
                            continue
                        batch = RecordBatch(batch.schema, batch.records[keep], batch.origin)
                        catching_up = False
                    self.stats.records += len(batch)
                    yield batch
                continue
            if sink.done.is_set():
                return
            if self._stop.is_set() and not stopping:
                stopping = True
                with contextlib.suppress(Exception):  # already closing
                    self._client.stop()

    def _on_control(self, c: ControlRecord) -> None:
        if c.kind == "symbol_mapping":
            self.symbology[c.instrument_id] = c.symbol_out
        elif c.kind == "system":
            if c.code == SYSTEM_HEARTBEAT:
                self.stats.heartbeats += 1
                self.on_heartbeat(time.time_ns())
            elif c.code == SYSTEM_END_OF_INTERVAL and c.text == END_OF_SESSION_MSG:
                self.ended = True
            else:
                self.stats.system_messages.append(c.text)
                if "not found" in c.text.lower():
                    self.not_found.append(c.text)
        elif c.kind == "error":  # with the raw tap the SDK does not see these: we do
            self._gateway_errors.append(c.text)

    # ------------------------------------------------------------------ seam
    def _dedup_mask(self, batch: RecordBatch) -> np.ndarray:
        """True for records not handed out before (the stream is in ts_recv order)."""
        ts = ts_recv_of(batch)
        last = self._last_ts_recv
        if last is None:
            return np.ones(len(ts), bool)
        keep = ts > last
        at = np.flatnonzero(ts == last)
        if len(at):
            seam = Counter(self._seam)
            for i in at.tolist():
                b = batch.records[i : i + 1].tobytes()
                if seam[b] > 0:
                    seam[b] -= 1
                else:
                    keep[i] = True
        return keep

    def _advance(self, batch: RecordBatch) -> None:
        ts = ts_recv_of(batch)
        last = int(ts[-1])
        at = np.flatnonzero(ts == last)
        seam = Counter(batch.records[i : i + 1].tobytes() for i in at.tolist())
        if last == self._last_ts_recv:
            seam.update(self._seam)
        self._seam = seam
        self._last_ts_recv = last
        self._last_ts_event = int(batch.records["ts_event"][-1])

    @property
    def seam(self) -> list[bytes]:
        return list(self._seam.elements())


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _explain(text: str, p: LiveParams) -> str:
    low = text.lower()
    if "dataset" in low:
        return (
            f"the live gateway {p.host}:{p.port} does not serve dataset {p.dataset} ({text}); "
            "check IFD_DATABENTO__DATASET"
        )
    if "auth" in low:
        return (
            f"the live gateway {p.host}:{p.port} refused the API key ({text}); check "
            "IFD_DATABENTO__API_KEY"
        )
    return f"the live gateway {p.host}:{p.port} refused the session: {text}"
