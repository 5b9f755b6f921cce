"""The TWS test server's sockets: handshake, one session per client, request dispatch.

``TwsTestServer`` owns an asyncio loop (a background thread after ``start()``, the foreground in
``serve_forever()``); every request handler runs on it, asks the book (``state.TwsState``) and
writes the replies ``protocol`` builds. Public methods may be called from any thread: they run on
the loop and return once the resulting messages are written to the sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import logging
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.servers.tws import protocol as p
from tests.servers.tws.protocol import Incoming, Outgoing
from tests.servers.tws.state import (
    EPS,
    ExecutionRecord,
    Fill,
    OrderRecord,
    PositionRecord,
    Quote,
    Reject,
    TwsContract,
    TwsServerError,
    TwsState,
    contract_from,
    order_problem,
)

log = logging.getLogger(__name__)


@dataclass
class ServerStats:
    connections: int = 0  # handshakes accepted
    refused: int = 0  # bad handshakes, unsupported versions, client id in use
    disconnects: int = 0  # connections the client closed
    drops: int = 0  # connections closed by drop_connections()
    messages_in: int = 0
    messages_out: int = 0


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    version: int
    peer: str
    client_id: int | None = None
    closed: bool = False
    positions_sub: bool = False
    account_sub: str | None = None
    mkt: dict[int, int] = field(default_factory=dict)  # reqId -> conId (streaming)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TwsTestServer:
    """The server; ``start()`` (or ``with``) serves from a background thread,
    ``serve_forever()`` in the foreground (``python -m tests.servers.tws``).

    Every public method may be called from any thread: state changes run on the server's event
    loop and the call returns once the resulting messages are written to the sockets.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        server_version: int = p.DEFAULT_SERVER_VERSION,
        accounts: Sequence[str] = ("DU1234567",),
        commission_per_contract: float = 2.25,
        account_values: Mapping[str, float] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise TwsServerError(f"{host}: the TWS test server listens on loopback only")
        if not p.MIN_SERVER_VERSION <= server_version <= p.MAX_SERVER_VERSION:
            raise TwsServerError(
                f"server_version {server_version}: supported are "
                f"{p.MIN_SERVER_VERSION}..{p.MAX_SERVER_VERSION}"
            )
        accounts = tuple(a for a in accounts if a)
        if not accounts:
            raise TwsServerError("the server needs at least one account")
        self.host = host
        self.port = port
        self.server_version = server_version
        self.clock = clock or time.time
        self.stats = ServerStats()
        self.received: list[tuple[int, tuple[str, ...]]] = []
        self.unhandled: list[tuple[int, tuple[str, ...]]] = []
        values = (
            {"NetLiquidation": 1_000_000.0, "AvailableFunds": 1_000_000.0}
            if account_values is None
            else dict(account_values)
        )
        self.state = TwsState(accounts, commission_per_contract, values, self.clock)
        self._conns: set[_Conn] = set()
        self._handlers: dict[int, Callable[[_Conn, list[str]], None]] = {
            Incoming.START_API: self._on_start_api,
            Incoming.REQ_POSITIONS: self._on_req_positions,
            Incoming.CANCEL_POSITIONS: self._on_cancel_positions,
            Incoming.REQ_OPEN_ORDERS: self._on_req_open_orders,
            Incoming.REQ_ALL_OPEN_ORDERS: self._on_req_all_open_orders,
            Incoming.REQ_AUTO_OPEN_ORDERS: self._ignore,
            Incoming.REQ_COMPLETED_ORDERS: self._on_req_completed_orders,
            Incoming.REQ_ACCOUNT_UPDATES: self._on_req_account_updates,
            Incoming.REQ_ACCOUNT_UPDATES_MULTI: self._on_req_account_updates_multi,
            Incoming.CANCEL_ACCOUNT_UPDATES_MULTI: self._ignore,
            Incoming.REQ_ACCOUNT_SUMMARY: self._on_req_account_summary,
            Incoming.CANCEL_ACCOUNT_SUMMARY: self._ignore,
            Incoming.REQ_EXECUTIONS: self._on_req_executions,
            Incoming.REQ_CURRENT_TIME: self._on_req_current_time,
            Incoming.REQ_IDS: self._on_req_ids,
            Incoming.REQ_MANAGED_ACCTS: self._on_req_managed_accts,
            Incoming.REQ_CONTRACT_DETAILS: self._on_req_contract_details,
            Incoming.PLACE_ORDER: self._on_place_order,
            Incoming.CANCEL_ORDER: self._on_cancel_order,
            Incoming.REQ_GLOBAL_CANCEL: self._on_req_global_cancel,
            Incoming.REQ_MKT_DATA: self._on_req_mkt_data,
            Incoming.CANCEL_MKT_DATA: self._on_cancel_mkt_data,
            Incoming.REQ_MARKET_DATA_TYPE: self._ignore,
            Incoming.SET_SERVER_LOG_LEVEL: self._ignore,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def accounts(self) -> tuple[str, ...]:
        return self.state.accounts

    @property
    def commission_per_contract(self) -> float:
        return self.state.commission_per_contract

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> TwsTestServer:
        if self._thread is not None:
            return self
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(
            target=self._thread_main, name="tws-test-server", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._start_error
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> TwsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        asyncio.run(self._main(on_ready, install_signals=True))

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main(None, install_signals=False))
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._start_error = exc
            self._ready.set()

    async def _main(self, on_ready: Callable[[int], None] | None, install_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stopping.set)
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            log.info(
                "TWS test server on %s:%d (version %d)", self.host, self.port, self.server_version
            )
            self._ready.set()
            if on_ready is not None:
                on_ready(self.port)
            async with self._server:
                await self._stopping.wait()
                self._server.close()
                for conn in list(self._conns):
                    self._close(conn, abort=True)
                await asyncio.sleep(0)
        finally:
            self._loop = None
            self._loop_thread = None

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the server's loop (directly when not serving or already there)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return fn(*args, **kwargs)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                fut.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop has closed: nobody is connected
            return fn(*args, **kwargs)
        return fut.result(timeout=30)

    # ------------------------------------------------------------------ configuration / control
    def add_contract(
        self,
        con_id: int,
        symbol: str = "NQ",
        sec_type: str = "FOP",
        exchange: str = "CME",
        currency: str = "USD",
        multiplier: str = "20",
        last_trade_date: str = "20260417",
        strike: float = 18250.0,
        right: str = "C",
        local_symbol: str | None = None,
        trading_class: str | None = None,
        *,
        min_tick: float = 0.25,
        long_name: str | None = None,
        under_con_id: int = 0,
    ) -> TwsContract:
        """A contract the server serves. ``strike`` and ``right`` apply to options (FOP, OPT)
        only; other types get strike 0 and no right. ``local_symbol`` defaults to IB's style
        (``NQM6`` for a future, ``NQJ6 C18250`` for an option), ``trading_class`` to ``symbol``.
        """
        contract = contract_from(
            con_id,
            symbol,
            sec_type,
            exchange,
            currency,
            multiplier,
            last_trade_date,
            strike,
            right,
            local_symbol,
            trading_class,
            min_tick=min_tick,
            long_name=long_name,
            under_con_id=under_con_id,
        )
        return self._call(self.state.add_contract, contract)

    def add_future(
        self,
        con_id: int,
        symbol: str = "NQ",
        last_trade_date: str = "20260619",
        exchange: str = "CME",
        currency: str = "USD",
        multiplier: str = "20",
        local_symbol: str | None = None,
        trading_class: str | None = None,
    ) -> TwsContract:
        return self.add_contract(
            con_id,
            symbol=symbol,
            sec_type="FUT",
            exchange=exchange,
            currency=currency,
            multiplier=multiplier,
            last_trade_date=last_trade_date,
            local_symbol=local_symbol,
            trading_class=trading_class,
        )

    def contracts(self) -> list[TwsContract]:
        return self._call(lambda: list(self.state.contracts.values()))

    def set_quote(
        self,
        con_id: int,
        bid: float | None,
        ask: float | None,
        bid_size: float | None = None,
        ask_size: float | None = None,
        *,
        last: float | None = None,
        last_size: float = 1.0,
    ) -> None:
        """The market for ``con_id``; streams to reqMktData subscribers and fills every
        marketable working order (sizes, when given, cap what fills at this quote). ``last``:
        a trade printed at that price, streamed as a LAST tick (fills nothing)."""

        def apply() -> None:
            self.state.set_quote(con_id, Quote(bid, ask, bid_size, ask_size, last, last_size))
            for conn in list(self._conns):
                for req_id, cid in conn.mkt.items():
                    if cid == con_id:
                        self._send_quote(conn, req_id, con_id)
            for order in self.state.orders_by_seq():
                if order.contract.con_id == con_id and order.is_working:
                    self._match(order)

        self._call(apply)

    def reject_next(self, code: int = 201, reason: str = p.DEFAULT_REJECT_REASON) -> None:
        """The next new order (each call queues one) is rejected with error ``code``."""
        self._call(self.state.rejects.append, Reject(int(code), reason))

    def fill_in_parts(self, n: int) -> None:
        """Split every following fill into ``n`` executions (1: one execution per fill)."""
        if n < 1:
            raise TwsServerError("fill_in_parts needs n >= 1")

        def apply() -> None:
            self.state.fill_parts = int(n)

        self._call(apply)

    def set_account_value(
        self, tag: str, value: float | str, currency: str = "USD", account: str | None = None
    ) -> None:
        acct = account or self.accounts[0]
        kept = value if isinstance(value, str) else float(value)
        self._call(self.state.account_values.__setitem__, (acct, tag, currency), kept)

    def preload_position(
        self, con_id: int, quantity: float, avg_cost: float = 0.0, account: str | None = None
    ) -> PositionRecord:
        """A position the account holds before any client connects (``avg_cost`` per contract,
        multiplier included, as IB reports it)."""

        def apply() -> PositionRecord:
            acct = self.state.account(account)
            contract = self.state.contract(con_id)
            pos = PositionRecord(acct, contract, float(quantity), float(avg_cost))
            self.state.positions[(acct, con_id)] = pos
            self._push_position(pos)
            return dataclasses.replace(pos)

        return self._call(apply)

    def preload_open_order(
        self,
        con_id: int,
        action: str,
        quantity: float,
        order_type: str = "LMT",
        lmt_price: float | None = None,
        *,
        order_id: int | None = None,
        client_id: int = 1,
        account: str | None = None,
        tif: str = "DAY",
        order_ref: str = "",
    ) -> OrderRecord:
        """A working order placed earlier (by ``client_id``): reqOpenOrders of that client and
        reqAllOpenOrders return it, and quotes fill it like any other order."""

        def apply() -> OrderRecord:
            st = self.state
            oid = st.next_order_id if order_id is None else int(order_id)
            if (client_id, oid) in st.orders:
                raise TwsServerError(f"order {oid} of client {client_id} already exists")
            problem = order_problem(action.upper(), quantity, order_type.upper(), lmt_price)
            if problem or tif.upper() not in ("DAY", "GTC"):
                raise TwsServerError(f"preloaded order: {problem or 'tif must be DAY or GTC'}")
            order = st.new_order(
                oid,
                client_id,
                st.contract(con_id),
                st.account(account),
                action.upper(),
                float(quantity),
                order_type.upper(),
                lmt_price,
                tif.upper(),
                order_ref,
            )
            self._match(order)
            return dataclasses.replace(order)

        return self._call(apply)

    def drop_connections(self) -> int:
        """Close every client socket now (TWS / IB Gateway dropping us); state is kept."""

        def apply() -> int:
            conns = [c for c in self._conns if not c.closed]
            for conn in conns:
                self._close(conn, abort=True)
            self.stats.drops += len(conns)
            return len(conns)

        return self._call(apply)

    # ------------------------------------------------------------------ inspection (copies)
    def orders(self) -> list[OrderRecord]:
        return self._call(lambda: [dataclasses.replace(o) for o in self.state.orders_by_seq()])

    def open_orders(self) -> list[OrderRecord]:
        return [o for o in self.orders() if o.is_working]

    def executions(self) -> list[ExecutionRecord]:
        return self._call(lambda: list(self.state.executions))

    def positions(self, account: str | None = None) -> list[PositionRecord]:
        return self._call(
            lambda: [
                dataclasses.replace(pos)
                for pos in self.state.positions.values()
                if account is None or pos.account == account
            ]
        )

    def quote(self, con_id: int) -> Quote | None:
        def get() -> Quote | None:
            q = self.state.quotes.get(con_id)
            return None if q is None else dataclasses.replace(q)

        return self._call(get)

    def connected_client_ids(self) -> list[int]:
        return self._call(
            lambda: sorted(c.client_id for c in self._conns if c.client_id is not None)
        )

    def received_ids(self) -> list[int]:
        return [msg_id for msg_id, _ in list(self.received)]

    # ------------------------------------------------------------------ connections
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        conn: _Conn | None = None
        try:
            version = await self._handshake(reader, writer)
            if version is None:
                return
            conn = _Conn(writer, version, peer)
            self._conns.add(conn)
            self.stats.connections += 1
            while not conn.closed:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                if n > p.MAX_MESSAGE:
                    log.warning("%s: message of %d bytes; closing", peer, n)
                    return
                payload = await reader.readexactly(n)
                if not conn.closed:
                    self._dispatch(conn, payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:  # noqa: BLE001 - one bad connection must not stop the server
            log.exception("TWS test server: connection %s failed", peer)
        finally:
            if conn is not None:
                if not conn.closed:
                    self.stats.disconnects += 1
                self._close(conn, abort=False)
            elif not writer.transport.is_closing():
                writer.close()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> int | None:
        prefix = await reader.readexactly(4)
        if prefix != p.API_PREFIX:
            log.warning("TWS test server: not an API client (%r); closing", prefix)
            self.stats.refused += 1
            writer.close()
            return None
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        text = (await reader.readexactly(n)).decode(errors="replace") if n <= 1024 else ""
        versions = p.parse_version_range(text)
        if versions is None:
            log.warning("TWS test server: bad version string %r; closing", text)
            self.stats.refused += 1
            writer.close()
            return None
        client_min, client_max = versions
        version = min(self.server_version, client_max)
        if version < client_min or version < p.MIN_SERVER_VERSION:
            log.warning(
                "TWS test server: client speaks v%d..%d, server %d; closing",
                client_min,
                client_max,
                self.server_version,
            )
            self.stats.refused += 1
            writer.write(p.encode(self.server_version, p.tws_time(self.clock())))
            writer.close()
            return None
        writer.write(p.encode(version, p.tws_time(self.clock())))
        return version

    def _close(self, conn: _Conn, abort: bool) -> None:
        conn.closed = True
        self._conns.discard(conn)
        transport = conn.writer.transport
        if not transport.is_closing():
            if abort:
                transport.abort()
            else:
                conn.writer.close()

    def _dispatch(self, conn: _Conn, payload: bytes) -> None:
        fields = p.decode(payload)
        self.stats.messages_in += 1
        try:
            msg_id = int(fields[0])
        except (IndexError, ValueError):
            log.warning("TWS test server: message without a msgId: %r", fields[:5])
            self.unhandled.append((-1, tuple(fields)))
            return
        args = fields[1:]
        self.received.append((msg_id, tuple(args)))
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.warning("TWS test server: unhandled request %d %s", msg_id, args[:8])
            self.unhandled.append((msg_id, tuple(args)))
            return
        try:
            handler(conn, args)
        except Exception as exc:  # noqa: BLE001 - answered as TWS does, connection kept
            log.exception("TWS test server: request %d failed", msg_id)
            self._error(conn, -1, 320, f"Error reading request: {exc}")

    def _send(self, conn: _Conn, *fields: Any) -> None:
        if conn.closed or conn.writer.transport.is_closing():
            return
        conn.writer.write(p.encode(*fields))
        self.stats.messages_out += 1

    def _error(self, conn: _Conn, req_id: int, code: int, text: str) -> None:
        self._send(conn, *p.error(conn.version, req_id, code, text))

    def _client_conns(self, client_id: int) -> list[_Conn]:
        return [c for c in self._conns if c.client_id == client_id and not c.closed]

    # ------------------------------------------------------------------ session requests
    def _ignore(self, conn: _Conn, f: list[str]) -> None:
        pass

    def _on_start_api(self, conn: _Conn, f: list[str]) -> None:
        client_id = p.parse_int(f[1]) if len(f) > 1 else 0
        if any(c.client_id == client_id for c in self._conns if c is not conn):
            log.warning("TWS test server: client id %d already connected; refusing", client_id)
            self._error(conn, -1, 326, p.CLIENT_ID_IN_USE)
            self.stats.refused += 1
            self._close(conn, abort=False)
            return
        conn.client_id = client_id
        self._send(conn, Outgoing.NEXT_VALID_ID, 1, self.state.next_order_id)
        self._send(conn, Outgoing.MANAGED_ACCTS, 1, ",".join(self.accounts))

    def _on_req_ids(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.NEXT_VALID_ID, 1, self.state.next_order_id)

    def _on_req_managed_accts(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.MANAGED_ACCTS, 1, ",".join(self.accounts))

    def _on_req_current_time(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.CURRENT_TIME, 1, int(self.clock()))

    def _on_req_completed_orders(self, conn: _Conn, f: list[str]) -> None:
        self._send(conn, Outgoing.COMPLETED_ORDERS_END)

    def _on_req_positions(self, conn: _Conn, f: list[str]) -> None:
        conn.positions_sub = True
        for pos in self.state.positions.values():
            self._send(conn, *p.position(pos))
        self._send(conn, Outgoing.POSITION_END, 1)

    def _on_cancel_positions(self, conn: _Conn, f: list[str]) -> None:
        conn.positions_sub = False

    def _push_position(self, pos: PositionRecord) -> None:
        for conn in list(self._conns):
            if conn.positions_sub:
                self._send(conn, *p.position(pos))
            if conn.account_sub == pos.account:
                self._send(conn, *p.portfolio(pos, self.state.mark(pos)))

    def _on_req_account_updates(self, conn: _Conn, f: list[str]) -> None:
        subscribe = f[1] == "1" if len(f) > 1 else True
        account = (f[2] if len(f) > 2 else "") or self.accounts[0]
        if not subscribe:
            conn.account_sub = None
            return
        conn.account_sub = account
        for (acct, tag, cur), value in self.state.account_values.items():
            if acct == account:
                self._send(conn, Outgoing.ACCT_VALUE, 2, tag, value, cur, acct)
        for pos in self.state.positions.values():
            if pos.account == account:
                self._send(conn, *p.portfolio(pos, self.state.mark(pos)))
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%H:%M")
        self._send(conn, Outgoing.ACCT_UPDATE_TIME, 1, now)
        self._send(conn, Outgoing.ACCT_DOWNLOAD_END, 1, account)

    def _on_req_account_updates_multi(self, conn: _Conn, f: list[str]) -> None:
        req_id, account, model = p.parse_int(f[1]), f[2], f[3] if len(f) > 3 else ""
        for (acct, tag, cur), value in self.state.account_values.items():
            if not account or acct == account:
                self._send(
                    conn, Outgoing.ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, tag, value, cur
                )
        self._send(conn, Outgoing.ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _on_req_account_summary(self, conn: _Conn, f: list[str]) -> None:
        req_id, tags = p.parse_int(f[1]), set((f[3] if len(f) > 3 else "").split(","))
        for (acct, tag, cur), value in self.state.account_values.items():
            if tag in tags:
                self._send(conn, Outgoing.ACCOUNT_SUMMARY, 1, req_id, acct, tag, value, cur)
        self._send(conn, Outgoing.ACCOUNT_SUMMARY_END, 1, req_id)

    # ------------------------------------------------------------------ contracts, market data
    def _find(self, query: p.ContractQuery) -> list[TwsContract]:
        return self.state.find_contracts(query.matches)

    def _on_req_contract_details(self, conn: _Conn, f: list[str]) -> None:
        req_id = p.parse_int(f[1])
        found = self._find(p.ContractQuery.from_fields(f[2:14]))
        if not found:
            self._error(conn, req_id, 200, p.NO_SECURITY)
            return
        for c in found:
            self._send(conn, *p.contract_details(conn.version, req_id, c))
        self._send(conn, Outgoing.CONTRACT_DATA_END, 1, req_id)

    def _on_req_mkt_data(self, conn: _Conn, f: list[str]) -> None:
        req_id = p.parse_int(f[1])
        found = self._find(p.ContractQuery.from_fields(f[2:14]))
        if len(found) != 1:
            self._error(conn, req_id, 200, p.NO_SECURITY)
            return
        snapshot = p.is_snapshot_request(f)
        con_id = found[0].con_id
        self._send(conn, Outgoing.MARKET_DATA_TYPE, 1, req_id, 1)
        if con_id in self.state.quotes:
            self._send_quote(conn, req_id, con_id)
        if snapshot:
            self._send(conn, Outgoing.TICK_SNAPSHOT_END, 1, req_id)
        else:
            conn.mkt[req_id] = con_id

    def _on_cancel_mkt_data(self, conn: _Conn, f: list[str]) -> None:
        conn.mkt.pop(p.parse_int(f[1]) if len(f) > 1 else -1, None)

    def _send_quote(self, conn: _Conn, req_id: int, con_id: int) -> None:
        for msg in p.tick_prices(req_id, self.state.quotes[con_id]):
            self._send(conn, *msg)

    # ------------------------------------------------------------------ orders
    def _on_place_order(self, conn: _Conn, f: list[str]) -> None:
        st = self.state
        req = p.parse_place_order(f, conn.version)
        client_id = conn.client_id if conn.client_id is not None else 0
        found = self._find(req.contract)
        if req.what_if:
            self._answer_what_if(conn, req, client_id, found)
            return
        existing = st.orders.get((client_id, req.order_id))
        if existing is not None:
            self._modify(conn, existing, req)
            return
        st.next_order_id = max(st.next_order_id, req.order_id + 1)
        if st.rejects:
            reject = st.rejects.pop(0)
            contract = found[0] if len(found) == 1 else req.contract.as_contract()
            self._reject(conn, req, client_id, contract, reject.code, reject.reason)
            return
        if len(found) != 1:
            self._error(conn, req.order_id, 200, p.NO_SECURITY)
            return
        contract = found[0]
        account = req.account
        problem = order_problem(req.action, req.quantity, req.order_type, req.lmt_price)
        if not problem and req.tif not in ("DAY", "GTC", "IOC"):
            problem = f"time in force {req.tif!r} is not supported (DAY, GTC, IOC)"
        if not problem and not account:
            if len(self.accounts) == 1:
                account = self.accounts[0]
            else:
                problem = (
                    "You must specify an allocation (either a single account, group, or profile)."
                )
        if not problem and account not in self.accounts:
            problem = f"account {account} is not managed by this login"
        if problem:
            self._reject(conn, req, client_id, contract, 201, f"Order rejected - reason:{problem}")
            return
        order = st.new_order(
            req.order_id,
            client_id,
            contract,
            account,
            req.action,
            float(req.quantity or 0),
            req.order_type,
            req.lmt_price,
            req.tif,
            req.order_ref,
        )
        for c in self._client_conns(client_id):
            self._send(c, *p.open_order(c.version, order))
            self._send(c, *p.order_status(order))
        self._match(order)
        if order.tif == "IOC" and order.is_working:
            self._cancel(order)

    def _reject(
        self,
        conn: _Conn,
        req: p.PlaceOrderRequest,
        client_id: int,
        contract: TwsContract,
        code: int,
        reason: str,
    ) -> None:
        """As TWS rejects: the error first, then openOrder and orderStatus Inactive."""
        order = self.state.new_order(
            req.order_id,
            client_id,
            contract,
            req.account or self.accounts[0],
            req.action,
            float(req.quantity or 0),
            req.order_type,
            req.lmt_price,
            req.tif,
            req.order_ref,
            status="Inactive",
        )
        self._error(conn, req.order_id, code, reason)
        self._send(conn, *p.open_order(conn.version, order))
        self._send(conn, *p.order_status(order))

    def _modify(self, conn: _Conn, order: OrderRecord, req: p.PlaceOrderRequest) -> None:
        if not order.is_working:
            self._error(conn, req.order_id, 103, "Duplicate order id")
            return
        problem = order_problem(req.action, req.quantity, req.order_type, req.lmt_price)
        if not problem and (req.quantity or 0) < order.filled - EPS:
            problem = "the new quantity is below the filled quantity"
        if not problem and req.action != order.action:
            problem = "the action of a working order cannot change"
        if problem:
            self._error(
                conn, req.order_id, 321, f"Error validating request:-'modify' : cause - {problem}"
            )
            return
        order.quantity = float(req.quantity or 0)
        order.order_type = req.order_type
        order.lmt_price = req.lmt_price if req.order_type == "LMT" else None
        order.tif = req.tif if req.tif in ("DAY", "GTC") else order.tif
        order.order_ref = req.order_ref
        if order.remaining <= EPS:
            order.status = "Filled"
        for c in self._client_conns(order.client_id):
            self._send(c, *p.open_order(c.version, order))
            self._send(c, *p.order_status(order))
        self._match(order)

    def _answer_what_if(
        self, conn: _Conn, req: p.PlaceOrderRequest, client_id: int, found: list[TwsContract]
    ) -> None:
        if len(found) != 1:
            self._error(conn, req.order_id, 200, p.NO_SECURITY)
            return
        contract = found[0]
        account = req.account or self.accounts[0]
        qty = float(req.quantity or 0)
        q = self.state.quotes.get(contract.con_id)
        px = (q.ask if req.action == "BUY" else q.bid) if q is not None else None
        order = OrderRecord(
            order_id=req.order_id,
            client_id=client_id,
            perm_id=0,
            seq=0,
            contract=contract,
            account=account,
            action=req.action,
            quantity=qty,
            order_type=req.order_type,
            lmt_price=req.lmt_price,
            tif=req.tif,
            order_ref=req.order_ref,
            status="PreSubmitted",
        )
        what_if = p.WhatIf(
            margin_before=0.0,
            margin_change=(px or 0.0) * contract.multiplier_value * qty,
            equity=self.state.account_value(account, "NetLiquidation") or 0.0,
            commission=self.commission_per_contract * qty,
        )
        self._send(conn, *p.open_order(conn.version, order, what_if))

    def _on_cancel_order(self, conn: _Conn, f: list[str]) -> None:
        order_id = p.parse_int(f[1])
        client_id = conn.client_id if conn.client_id is not None else 0
        order = self.state.orders.get((client_id, order_id))
        if order is None:
            self._error(
                conn,
                order_id,
                10147,
                f"OrderId {order_id} that needs to be cancelled is not found.",
            )
        elif not order.is_working:
            self._error(
                conn,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status}.",
            )
        else:
            self._cancel(order)

    def _on_req_global_cancel(self, conn: _Conn, f: list[str]) -> None:
        for order in self.state.working_orders(None):
            self._cancel(order)

    def _cancel(self, order: OrderRecord) -> None:
        order.status = "Cancelled"
        for c in self._client_conns(order.client_id):
            self._send(c, *p.order_status(order))
            self._error(c, order.order_id, 202, p.ORDER_CANCELED)

    def _on_req_open_orders(self, conn: _Conn, f: list[str]) -> None:
        client_id = conn.client_id if conn.client_id is not None else 0
        self._send_open_orders(conn, self.state.working_orders(client_id))

    def _on_req_all_open_orders(self, conn: _Conn, f: list[str]) -> None:
        self._send_open_orders(conn, self.state.working_orders(None))

    def _send_open_orders(self, conn: _Conn, orders: Iterable[OrderRecord]) -> None:
        for order in orders:
            self._send(conn, *p.open_order(conn.version, order))
            self._send(conn, *p.order_status(order))
        self._send(conn, Outgoing.OPEN_ORDER_END, 1)

    # ------------------------------------------------------------------ fills
    def _match(self, order: OrderRecord) -> None:
        """Fill what the quote allows and tell the order's client and the position watchers."""
        for fill in self.state.match(order):
            self._report_fill(fill)

    def _report_fill(self, fill: Fill) -> None:
        ex = fill.execution
        log.info(
            "TWS test server: %s %g %s @ %g (%s)",
            ex.side,
            ex.shares,
            ex.contract.local_symbol,
            ex.price,
            ex.exec_id,
        )
        for c in self._client_conns(ex.client_id):
            self._send(c, *p.execution_details(c.version, -1, ex))
            self._send(c, *p.order_status(fill.order))
            self._send(c, *p.commission_report(ex))
        self._push_position(fill.position)

    def _on_req_executions(self, conn: _Conn, f: list[str]) -> None:
        req_id = p.parse_int(f[1])
        client, acct, since, symbol, sec_type, exchange, side = (list(f[2:9]) + [""] * 7)[:7]
        client_id = p.parse_int(client)
        since_ts = p.parse_filter_time(since)
        side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        for ex in self.state.executions:
            c = ex.contract
            if (
                (client_id and ex.client_id != client_id)
                or (acct and ex.account != acct)
                or (since_ts is not None and ex.time < since_ts)
                or (symbol and c.symbol.upper() != symbol.upper())
                or (sec_type and c.sec_type != sec_type.upper())
                or (exchange and c.exchange.upper() != exchange.upper())
                or (side and ex.side != side)
            ):
                continue
            self._send(conn, *p.execution_details(conn.version, req_id, ex))
            self._send(conn, *p.commission_report(ex))
        self._send(conn, Outgoing.EXECUTION_DATA_END, 1, req_id)
