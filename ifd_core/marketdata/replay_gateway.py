"""A replay gateway: stored DBN files served over the Databento live protocol on loopback.

Databento cannot be reached from test machines, and users want to push a stored day through the
live path; so this server (``ifd gateway``) speaks enough of the live subscription gateway
protocol for the unmodified ``databento.Live`` client, building and parsing its control lines with
the SDK's own ``databento.live.gateway`` classes and checking the challenge with
``databento.common.cram``, so the two sides cannot drift apart. It serves the stored records in
``FileReplaySource`` order, filtered by subscription, with market-time clock, replay window, drop
injection and pacing: docs/operations.md §Replay gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import databento as db
import databento_dbn as dbn
import numpy as np
from databento.common import cram
from databento.live.gateway import (
    AuthenticationRequest,
    AuthenticationResponse,
    ChallengeRequest,
    GatewayControl,
    Greeting,
    SessionStart,
    SubscriptionRequest,
    parse_gateway_message,
)

from ifd_core.marketdata.dbn_files import SYNTHETIC_MARKER
from ifd_core.marketdata.dbn_stream import END_OF_SESSION_MSG
from ifd_core.marketdata.record_source import FileReplaySource
from ifd_core.units import NS

log = logging.getLogger(__name__)

LSG_VERSION = "0.7.2-ifd-replay"
DEFAULT_HEARTBEAT_S = 30
SEND_CHUNK = 65_536  # records per write at full speed
ALL_SYMBOLS = "ALL_SYMBOLS"
PUBLISHER_GLBX = 1  # GLBX.MDP3 on CME Globex


class GatewayError(ValueError):
    """The gateway cannot serve what it was given (no files, mixed datasets)."""


@dataclass
class GatewayStats:
    connections: int = 0
    auth_failures: int = 0
    sessions_completed: int = 0
    records_sent: int = 0
    drops: int = 0
    drop_indices: list[int] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Run:
    """Consecutive records of one schema in the merged stream, starting at global index g0."""

    schema: str
    records: np.ndarray
    g0: int
    max_ts_event: int


@dataclass
class _Sub:
    schema: str
    stype_in: str
    symbols: list[str]
    start: int | None


@dataclass
class _Plan:
    """What one session gets: per schema (sorted instrument ids, floor, floor is on ts_recv),
    the symbol mappings (id -> stype_in, requested symbol, raw symbol), the requested symbols
    that resolved to nothing, and the schemas asked to replay from a ``start``."""

    schemas: dict[str, tuple[np.ndarray, int, bool]]
    mappings: dict[int, tuple[str, str, str]]
    missing: list[str]
    replayed: set[str]


class _Refused(Exception):
    """A session the gateway will not serve; the message goes to the client as an ErrorMsg."""


def dbn_files_under(data: Path) -> list[Path]:
    """The DBN files a gateway serves: ``data`` itself, or every *.dbn / *.dbn.zst below it."""
    data = Path(data)
    if data.is_file():
        return [data]
    files = sorted(
        p
        for p in data.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and (p.name.endswith(".dbn") or p.name.endswith(".dbn.zst"))
    )
    if not files:
        raise GatewayError(f"{data}: no DBN files (*.dbn, *.dbn.zst) to serve")
    return files


class _Catalog:
    """The served stream (runs in ts_recv order) and the instruments its definitions name."""

    def __init__(self, files: Sequence[Path], dataset: str) -> None:
        self.synthetic = False
        for path in files:  # the metadata header only: the records are read once, below
            meta = db.DBNStore.from_file(path).metadata
            if meta.dataset != dataset:
                raise GatewayError(f"{path}: dataset {meta.dataset}, this gateway serves {dataset}")
            self.synthetic |= SYNTHETIC_MARKER in meta.symbols
        self.runs: list[_Run] = []
        g = 0
        defs: list[np.ndarray] = []
        for b in FileReplaySource(list(files), batch_records=SEND_CHUNK).batches():
            recs = b.records
            self.runs.append(_Run(b.schema, recs, g, int(recs["ts_event"].max())))
            g += len(recs)
            if b.schema == "definition":
                defs.append(recs[["instrument_id", "raw_symbol", "asset", "instrument_class"]])
        self.total = g
        self.first_ts_recv = int(_ts_recv(self.runs[0].records)[0]) if self.runs else 0
        self.instruments: dict[int, tuple[str, str, str]] = {}
        for d in defs:
            for iid, raw, asset, cls in d.tolist():
                self.instruments[int(iid)] = (
                    raw.decode(errors="replace"),
                    asset.decode(errors="replace"),
                    cls.decode(errors="replace"),
                )

    def resolve(self, stype_in: str, symbol: str) -> dict[int, str]:
        """instrument_id -> raw symbol for one requested symbol (empty when unknown)."""
        if symbol == ALL_SYMBOLS:
            return {i: raw for i, (raw, _, _) in self.instruments.items()}
        if stype_in == "parent":
            root, _, kind = symbol.rpartition(".")
            classes = {"OPT": ("C", "P"), "FUT": ("F",)}.get(kind.upper())
            if not root or classes is None:
                return {}
            return {
                i: raw
                for i, (raw, asset, cls) in self.instruments.items()
                if asset == root and cls in classes
            }
        if stype_in == "raw_symbol":
            return {i: raw for i, (raw, _, _) in self.instruments.items() if raw == symbol}
        if stype_in == "instrument_id" and symbol.isdigit():
            iid = int(symbol)
            return {iid: self.instruments[iid][0]} if iid in self.instruments else {}
        return {}


def _ts_recv(recs: np.ndarray) -> np.ndarray:
    return recs["ts_recv"] if "ts_recv" in recs.dtype.names else recs["ts_event"]


def _read_control(line: bytes) -> GatewayControl | None:
    """One control line from the client as the SDK's message class, or None if it is none."""
    try:
        return parse_gateway_message(line.decode(errors="replace"))
    except ValueError:
        return None


class ReplayGateway:
    """The gateway; ``start()`` serves from a background thread (tests, benchmarks),
    ``serve_forever()`` in the foreground (``ifd gateway``)."""

    def __init__(
        self,
        data: Path | str,
        api_keys: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float | None = None,
        drop_after: int | None = None,
        drop_every: int | None = None,
        replay_window_s: float | None = None,
        outage_s: float = 0.0,
        dataset: str = "GLBX.MDP3",
    ) -> None:
        keys = [k for k in api_keys if k]
        if not keys:
            raise GatewayError("the gateway needs at least one API key to accept")
        if speed is not None and speed <= 0:
            raise GatewayError("speed must be positive (or None for as fast as possible)")
        for name, n in (("drop_after", drop_after), ("drop_every", drop_every)):
            if n is not None and n < 1:
                raise GatewayError(f"{name} must be at least 1")
        self.keys = keys
        self.host = host
        self.port = port
        self.speed = speed
        self.drop_after = drop_after
        self.drop_every = drop_every
        self.replay_window_ns = None if replay_window_s is None else int(replay_window_s * NS)
        self.outage_ns = int(outage_s * NS)
        self.dataset = dataset
        self.catalog = _Catalog(dbn_files_under(Path(data)), dataset)
        self.stats = GatewayStats()
        self._used_drops: set[int] = set()
        self._clock_ns: int | None = None  # ts_recv of the last record sent
        self._dropped = False
        self._session_ids = iter(range(1, 1 << 62))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ReplayGateway:
        self._thread = threading.Thread(target=self._thread_main, name="ifd-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> ReplayGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM."""
        asyncio.run(self._main(on_ready, install_signals=True))

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main(None, install_signals=False))
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._error = exc
            self._ready.set()

    async def _main(self, on_ready: Callable[[int], None] | None, install_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stopping.set)
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("replay gateway on %s:%d", self.host, self.port)
        self._ready.set()
        if on_ready is not None:
            on_ready(self.port)
        async with self._server:
            await self._stopping.wait()
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ one connection
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._writers.add(writer)
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to tell it
        except Exception:  # noqa: BLE001 - one bad session must not stop the gateway
            log.exception("replay gateway session failed")
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        challenge = secrets.token_hex(16)
        writer.write(bytes(Greeting(lsg_version=LSG_VERSION)))
        writer.write(bytes(ChallengeRequest(cram=challenge)))
        auth = _read_control(await reader.readline())
        problem = self._check_auth(challenge, auth)
        if problem or not isinstance(auth, AuthenticationRequest):
            self.stats.auth_failures += 1
            self.stats.refusals.append(problem)
            writer.write(bytes(AuthenticationResponse(success="0", error=problem)))
            await writer.drain()
            writer.close()
            return
        session_id = str(next(self._session_ids))
        writer.write(bytes(AuthenticationResponse(success="1", session_id=session_id)))
        subs: list[_Sub] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            msg = _read_control(line)
            if isinstance(msg, SessionStart):
                break
            if isinstance(msg, SubscriptionRequest):
                start = msg.start
                subs.append(
                    _Sub(
                        str(msg.schema),
                        str(msg.stype_in),
                        [s for s in str(msg.symbols).split(",") if s],
                        int(start) if start not in (None, "") else None,
                    )
                )
            else:
                log.warning("replay gateway: ignoring %r before start_session", line[:200])
        heartbeat_s = int(auth.heartbeat_interval_s or DEFAULT_HEARTBEAT_S)
        watcher = asyncio.ensure_future(_discard_until_eof(reader))
        try:
            await self._serve(writer, subs, heartbeat_s, watcher)
        finally:
            watcher.cancel()

    def _check_auth(self, challenge: str, auth: GatewayControl | None) -> str:
        """Why the authentication request is refused ("" when it is accepted)."""
        if not isinstance(auth, AuthenticationRequest):
            return "Authentication failed: expected an authentication request"
        dataset = str(auth.dataset)
        if dataset != self.dataset:
            return f"Unknown dataset {dataset!r}: this gateway serves {self.dataset} only"
        if str(auth.encoding) != "dbn" or str(auth.compression) != "none":
            return "this gateway sends uncompressed DBN only (encoding=dbn, compression=none)"
        for key in self.keys:
            want = cram.get_challenge_response(challenge, key)
            if secrets.compare_digest(auth.auth, want):
                return ""
        return "Authentication failed: the API key is not valid for this gateway"

    # ------------------------------------------------------------------ streaming
    def _plan(self, subs: list[_Sub]) -> _Plan:
        if not subs:
            raise _Refused("no subscriptions before start_session")
        clock = self._clock_ns if self._clock_ns is not None else self.catalog.first_ts_recv
        ids: dict[str, set[int]] = {}
        floors: dict[str, list[int | None]] = {}
        plan = _Plan({}, {}, [], set())
        missing: set[str] = set()
        for sub in subs:
            if sub.stype_in not in ("parent", "raw_symbol", "instrument_id"):
                raise _Refused(f"stype_in {sub.stype_in!r} is not supported by the replay gateway")
            if sub.start is not None:
                if self.replay_window_ns is not None and sub.start < clock - self.replay_window_ns:
                    raise _Refused(
                        f"intraday replay start {sub.start} is older than the replay window "
                        f"({self.replay_window_ns / NS:g} s before {clock})"
                    )
                plan.replayed.add(sub.schema)
            floors.setdefault(sub.schema, []).append(sub.start)
            chosen = ids.setdefault(sub.schema, set())
            for symbol in sub.symbols:
                found = self.catalog.resolve(sub.stype_in, symbol)
                if not found:
                    missing.add(symbol)
                chosen |= set(found)
                for iid, raw in found.items():
                    plan.mappings.setdefault(iid, (sub.stype_in, symbol, raw))
        if not plan.mappings:
            raise _Refused(f"symbols not found in {self.dataset}: {', '.join(sorted(missing))}")
        plan.missing = sorted(missing)
        for schema, chosen in ids.items():
            starts = floors[schema]
            # One subscription asking for "now" makes the schema live; else the earliest start.
            live = any(x is None for x in starts)
            floor = self._live_floor() if live else min(x for x in starts if x is not None)
            plan.schemas[schema] = (np.array(sorted(chosen), dtype=np.uint32), floor, live)
        return plan

    def _live_floor(self) -> int:
        if self._clock_ns is None:
            return self.catalog.first_ts_recv
        return self._clock_ns + (self.outage_ns if self._dropped else 0)

    def _next_drop(self, first: int) -> int | None:
        """The first unused drop point after the connection's first record ``first``."""
        points = []
        after = self.drop_after
        if after is not None and after > first and after not in self._used_drops:
            points.append(after)
        if self.drop_every is not None:
            k = first // self.drop_every + 1
            while k * self.drop_every in self._used_drops:
                k += 1
            if k * self.drop_every < self.catalog.total:
                points.append(k * self.drop_every)
        return min(points) if points else None

    async def _serve(
        self,
        writer: asyncio.StreamWriter,
        subs: list[_Sub],
        heartbeat_s: int,
        watcher: asyncio.Future,
    ) -> None:
        try:
            plan = self._plan(subs)
        except _Refused as exc:
            self.stats.refusals.append(str(exc))
            writer.write(_metadata(self, subs, None))
            writer.write(bytes(dbn.ErrorMsg(ts_event=self._clock_ns or 0, err=str(exc))))
            await writer.drain()
            writer.close()
            return
        start_ts = min(floor for _, floor, _ in plan.schemas.values())
        writer.write(_metadata(self, subs, start_ts))
        for iid, (stype_in, symbol, raw) in sorted(plan.mappings.items()):
            writer.write(_mapping(iid, stype_in, symbol, raw, start_ts))
        if plan.missing:
            text = f"symbols not found in {self.dataset}: {', '.join(plan.missing)}"
            writer.write(bytes(dbn.SystemMsg(ts_event=start_ts, msg=text[:300])))
        await writer.drain()

        first: int | None = None
        next_drop: int | None = None
        pace: _Pacer | None = None
        last_sent = time.monotonic()
        for run in self.catalog.runs:
            if run.schema not in plan.schemas:
                continue
            ids, floor, by_recv = plan.schemas[run.schema]
            if not by_recv and run.max_ts_event < floor:
                continue
            recs = run.records
            mask = np.isin(recs["instrument_id"], ids, assume_unique=False)
            mask &= (_ts_recv(recs) if by_recv else recs["ts_event"]) >= floor
            idx = np.flatnonzero(mask)
            if len(idx) == 0:
                continue
            if first is None:
                first = run.g0 + int(idx[0])
                next_drop = self._next_drop(first)
                if self.speed is not None:
                    # Market time starts at the requested start: a replay from a quiet moment
                    # is quiet (heartbeats only) until its first record is due.
                    pace = _Pacer(self.speed, min(start_ts, int(_ts_recv(recs[idx[:1]])[0])))
            g = run.g0 + idx
            cut = len(idx)
            if next_drop is not None and g[-1] >= next_drop:
                cut = int(np.searchsorted(g, next_drop))
            sel = recs[idx[:cut]]
            pos = 0
            while pos < len(sel):
                if watcher.done():
                    return  # the client hung up
                end = len(sel)
                if pace is not None:
                    end, wait_s = pace.due(_ts_recv(sel), pos)
                    if end == pos:
                        hb_wait = heartbeat_s - (time.monotonic() - last_sent)
                        if hb_wait <= 0:
                            writer.write(_heartbeat(self._clock_ns or start_ts))
                            last_sent = time.monotonic()
                            await writer.drain()
                            continue
                        await asyncio.sleep(min(wait_s, hb_wait))
                        continue
                elif time.monotonic() - last_sent >= heartbeat_s:
                    writer.write(_heartbeat(self._clock_ns or start_ts))
                part = sel[pos:end]
                writer.write(part.tobytes())
                self.stats.records_sent += len(part)
                self._clock_ns = int(_ts_recv(part)[-1])
                last_sent = time.monotonic()
                pos = end
                await writer.drain()
            if cut < len(idx):
                self._used_drops.add(next_drop)
                self.stats.drops += 1
                self.stats.drop_indices.append(next_drop)
                self._dropped = True
                log.info("replay gateway: dropping the connection before record %d", next_drop)
                writer.transport.abort()
                return
        ts = self._clock_ns or start_ts
        for schema in sorted(plan.replayed):
            writer.write(_system(ts, f"Finished {schema} replay", dbn.SystemCode.REPLAY_COMPLETED))
        writer.write(_system(ts, END_OF_SESSION_MSG, dbn.SystemCode.END_OF_INTERVAL))
        await writer.drain()
        self._dropped = False
        self.stats.sessions_completed += 1
        writer.close()


class _Pacer:
    """Sends records when their ts_recv is due at ``speed`` times real time."""

    def __init__(self, speed: float, ts0: int) -> None:
        self.speed = speed
        self.ts0 = ts0
        self.wall0 = time.monotonic()

    def due(self, ts: np.ndarray, pos: int) -> tuple[int, float]:
        """(end of the records due now, seconds until the next one is due)."""
        now_mkt = self.ts0 + (time.monotonic() - self.wall0) * self.speed * NS
        end = int(np.searchsorted(ts, now_mkt, side="right"))
        end = max(end, pos)
        if end < len(ts):
            wait = (int(ts[end]) - now_mkt) / self.speed / NS
            return end, max(wait, 0.0)
        return end, 0.0


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    """Read (and ignore) what the client sends after start_session; done when it hangs up."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65_536):
            pass


def _metadata(gw: ReplayGateway, subs: list[_Sub], start: int | None) -> bytes:
    symbols = sorted({s for sub in subs for s in sub.symbols})
    if gw.catalog.synthetic:
        symbols.append(SYNTHETIC_MARKER)
    stypes = {sub.stype_in for sub in subs}
    stype_in = dbn.SType(stypes.pop()) if len(stypes) == 1 else None
    meta = dbn.Metadata(
        dataset=gw.dataset,
        start=start or 0,
        stype_in=stype_in,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=None,
        symbols=symbols,
        partial=[],
        not_found=[],
        mappings=[],
    )
    return bytes(meta)


def _mapping(iid: int, stype_in: str, symbol: str, raw: str, ts: int) -> bytes:
    return bytes(
        dbn.SymbolMappingMsg(
            publisher_id=PUBLISHER_GLBX,
            instrument_id=iid,
            ts_event=ts,
            stype_in=dbn.SType(stype_in),
            stype_in_symbol=symbol,
            stype_out=dbn.SType.RAW_SYMBOL,
            stype_out_symbol=raw,
            start_ts=ts,
            end_ts=(1 << 64) - 1,
        )
    )


def _heartbeat(ts: int) -> bytes:
    return _system(ts, "Heartbeat", dbn.SystemCode.HEARTBEAT)


def _system(ts: int, text: str, code: dbn.SystemCode) -> bytes:
    return bytes(dbn.SystemMsg(ts_event=ts, msg=text, code=code))


def run_gateway(
    data: Path,
    api_keys: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 13000,
    speed: float | None = None,
    drop_after: int | None = None,
    drop_every: int | None = None,
    replay_window_s: float | None = None,
    outage_s: float = 0.0,
    on_ready: Callable[[int], None] | None = None,
) -> GatewayStats:
    """``ifd gateway``: serve in the foreground until SIGINT/SIGTERM; return the counts."""
    gw = ReplayGateway(
        data,
        api_keys,
        host=host,
        port=port,
        speed=speed,
        drop_after=drop_after,
        drop_every=drop_every,
        replay_window_s=replay_window_s,
        outage_s=outage_s,
    )
    gw.serve_forever(on_ready)
    return gw.stats
