"""A loopback HTTPS server answering Massive's (formerly Polygon.io) options REST endpoints.

``/v3/reference/options/contracts``, ``/v3/trades/{optionsTicker}`` and
``/v3/quotes/{optionsTicker}`` in the documented envelope ``{"status": "OK", "request_id": ...,
"results": [...], "next_url": ...}``, filtered by the query parameters the official client sends
(``underlying_ticker``, ``expiration_date.gte/lte``, ``strike_price.gte/lte``,
``timestamp.gte/lt/lte``, ``order``, ``limit``) and paginated: a page holds ``limit`` rows and ``next_url``
carries an opaque ``cursor``. As Massive's does, ``next_url`` names the production host
(``https://api.massive.com``), so a client that followed it blindly would leave the loopback.

The market is SYNTHETIC: five made-up QQQ and NDX contracts of 2026-03-20/23 with a few trades
and quotes around 14:30 UTC chosen so each trade's aggressor is known by hand (tests), and a few
trades of QQQ itself (``/v3/trades/QQQ``).

By ``mode`` the bad answers the client must survive:

====================  =========================================================================
``ok``                the data
``auth``              HTTP 401 ``{"status": "ERROR", "error": "Unknown API Key"}`` (also the
                      answer to any request with another key, whatever the mode)
``not_entitled``      HTTP 403 ``{"status": "NOT_AUTHORIZED", "message": "You are not entitled
                      to this data. ..."}``
``rate_limit``        HTTP 429 ``{"status": "ERROR", "error": "You've exceeded the maximum
                      requests per minute, ..."}``
``empty``             status OK and ``results: []`` everywhere
``malformed``         a cut JSON body
``malformed_page2``   pages after the first (a request with ``cursor``) are cut JSON
``wrong_types``       trades whose ``price`` is the string "n/a"
``server_error``      HTTP 500 ``{"status": "ERROR", "error": "Internal Server Error"}``
``slow``              the data after ``delay_s`` seconds
====================  =========================================================================

The error bodies follow the shapes Massive's (Polygon's) API is known to send; which exact text
comes with which status is inferred (docs/operations.md, "Massive (optional)").
``mode_times`` makes a mode last that many requests, then ``ok`` again. Every request is
recorded (path, query parameters, Authorization header) so a test can count what was sent.
``python -m tests.servers.massive_http --port N`` serves by hand (CA bundle printed).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import pytest

from tests.servers.loopback_tls import (
    ModalServer,
    QuietHandler,
    cli_parser,
    query_fields,
    serve_trusted,
    serve_until_signal,
)

TEST_API_KEY = "ms-ifdTestKey-0123456789abcdef"
"""The one key this fixture accepts."""
PRODUCTION = "https://api.massive.com"
CONTRACTS = "/v3/reference/options/contracts"
DAY = dt.date(2026, 3, 20)
T0 = int(dt.datetime(2026, 3, 20, 14, 30, tzinfo=dt.UTC).timestamp()) * 10**9
"""14:30 UTC (10:30 New York) on DAY, ns: the SYNTHETIC trades are around it."""
S = 10**9
MODES = (
    "ok",
    "auth",
    "not_entitled",
    "rate_limit",
    "empty",
    "malformed",
    "malformed_page2",
    "wrong_types",
    "server_error",
    "slow",
)


def _contract(ticker: str, kind: str, expiry: str, strike: float, underlying: str) -> dict:
    return {
        "cfi": "OCASPS" if kind == "call" else "OPASPS",
        "contract_type": kind,
        "exercise_style": "european" if underlying == "NDX" else "american",
        "expiration_date": expiry,
        "primary_exchange": "BATO",
        "shares_per_contract": 100,
        "strike_price": strike,
        "ticker": ticker,
        "underlying_ticker": underlying,
    }


def synthetic_contracts() -> list[dict[str, Any]]:
    """SYNTHETIC: five contracts, as Massive's contract rows."""
    return [
        _contract("O:QQQ260320C00480000", "call", "2026-03-20", 480.0, "QQQ"),
        _contract("O:QQQ260320P00470000", "put", "2026-03-20", 470.0, "QQQ"),
        _contract("O:QQQ260323C00490000", "call", "2026-03-23", 490.0, "QQQ"),
        _contract("O:NDX260320C19800000", "call", "2026-03-20", 19800.0, "NDX"),
        _contract("O:NDX260320P19500000", "put", "2026-03-20", 19500.0, "NDX"),
    ]


def _trade(ts: int, price: float, size: int, seq: int) -> dict[str, Any]:
    return {
        "conditions": [209],
        "exchange": 302,
        "id": f"t{seq}",
        "participant_timestamp": ts - 1_000,
        "price": price,
        "sequence_number": seq,
        "sip_timestamp": ts,
        "size": size,
    }


def _quote(ts: int, bid: float, ask: float, seq: int) -> dict[str, Any]:
    return {
        "ask_exchange": 302,
        "ask_price": ask,
        "ask_size": 20,
        "bid_exchange": 302,
        "bid_price": bid,
        "bid_size": 20,
        "sequence_number": seq,
        "sip_timestamp": ts,
    }


def synthetic_trades() -> dict[str, list[dict[str, Any]]]:
    """SYNTHETIC trades per ticker (window tests use [T0, T0 + 300 s))."""
    return {
        "O:QQQ260320C00480000": [
            _trade(T0 + 10 * S, 2.50, 10, 1),  # at the ask 2.50: bought
            _trade(T0 + 70 * S, 2.40, 5, 2),  # at the bid 2.40: sold
            _trade(T0 + 130 * S, 2.45, 4, 3),  # inside 2.40/2.50: unsigned
            _trade(T0 + 200 * S, 2.70, 2, 4),  # above the ask 2.60 (quote at +150 s): bought
            _trade(T0 + 400 * S, 2.80, 50, 5),  # after the window
        ],
        "O:QQQ260320P00470000": [
            _trade(T0 + 20 * S, 1.10, 8, 1),  # at the ask 1.10: bought (a put: bearish)
            _trade(T0 + 90 * S, 1.00, 3, 2),  # below the bid 1.05: sold (a put: bullish)
        ],
        "O:QQQ260323C00490000": [],
        "O:NDX260320C19800000": [
            _trade(T0 - 100 * S, 50.0, 1, 1),  # before the window
            _trade(T0 + 30 * S, 61.0, 2, 2),  # at the ask: bought
        ],
        "O:NDX260320P19500000": [
            _trade(T0 + 5 * S, 40.0, 1, 1),  # the first quote is at +50 s: no quote, unsigned
            _trade(T0 + 60 * S, 38.0, 3, 2),  # at the bid 38.0: sold (a put: bullish)
        ],
        # The ETF itself (not an option): its last trade before a window centres the strike band.
        "QQQ": [
            _trade(T0 - 90 * S, 477.90, 100, 1),
            _trade(T0 - 2 * S, 478.10, 200, 2),
            _trade(T0 + 5 * S, 478.30, 100, 3),
        ],
    }


def synthetic_quotes() -> dict[str, list[dict[str, Any]]]:
    """SYNTHETIC quotes per ticker (some before the window: the quote in force at its start)."""
    return {
        "O:QQQ260320C00480000": [
            _quote(T0 - 30 * S, 2.40, 2.50, 1),
            _quote(T0 + 150 * S, 2.50, 2.60, 2),
        ],
        "O:QQQ260320P00470000": [
            _quote(T0 - 5 * S, 1.00, 1.10, 1),
            _quote(T0 + 80 * S, 1.05, 1.15, 2),
        ],
        "O:NDX260320C19800000": [_quote(T0 + 1 * S, 59.0, 61.0, 1)],
        "O:NDX260320P19500000": [_quote(T0 + 50 * S, 38.0, 39.5, 1)],
    }


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    authorization: str | None


class MassiveServer(ModalServer):
    """Massive's REST API on https://127.0.0.1:<port>; use as a context manager."""

    name = "massive"
    MODES = MODES

    def __init__(self, api_key: str = TEST_API_KEY, *, port: int = 0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.contracts = synthetic_contracts()
        self.trades = synthetic_trades()
        self.quotes = synthetic_quotes()
        self.requests: list[RecordedRequest] = []

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # -- the data ---------------------------------------------------------------------------

    def rows(self, path: str, q: dict[str, str]) -> list[dict[str, Any]] | None:
        """The rows a query selects (before pagination); None for an unknown path."""
        if path == CONTRACTS:
            out = [
                c for c in self.contracts if c["underlying_ticker"] == q.get("underlying_ticker")
            ]
            for key, op in (("expiration_date", "expiration_date"), ("strike_price", "strike")):
                lo, hi = q.get(f"{key}.gte"), q.get(f"{key}.lte")
                if op == "strike":
                    out = [c for c in out if lo is None or c[key] >= float(lo)]
                    out = [c for c in out if hi is None or c[key] <= float(hi)]
                else:
                    out = [c for c in out if lo is None or c[key] >= lo]
                    out = [c for c in out if hi is None or c[key] <= hi]
            return sorted(out, key=lambda c: c["ticker"])
        for prefix, table in (("/v3/trades/", self.trades), ("/v3/quotes/", self.quotes)):
            if path.startswith(prefix):
                rows = table.get(unquote(path[len(prefix) :]), [])
                lo, lt = q.get("timestamp.gte"), q.get("timestamp.lt")
                lte = q.get("timestamp.lte")
                rows = [r for r in rows if lo is None or r["sip_timestamp"] >= int(lo)]
                rows = [r for r in rows if lt is None or r["sip_timestamp"] < int(lt)]
                rows = [r for r in rows if lte is None or r["sip_timestamp"] <= int(lte)]
                desc = q.get("order") == "desc"
                return sorted(rows, key=lambda r: r["sip_timestamp"], reverse=desc)
        return None


def _cursor(path: str, query: dict[str, str], offset: int) -> str:
    blob = json.dumps({"p": path, "q": query, "o": offset}, sort_keys=True).encode()
    return base64.urlsafe_b64encode(blob).decode()


def _handler_for(server: MassiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        server_version = "ifd-massive-fixture/1"

        def _error(self, status: int, state: str, text: str, field: str = "error") -> None:
            self._json(status, {"status": state, "request_id": "req-synthetic", field: text})

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            params = query_fields(url.query)
            auth = self.headers.get("Authorization")
            mode = server._take(RecordedRequest("GET", url.path, params, auth))
            key = (auth or "").removeprefix("Bearer ").strip() or params.get("apiKey", "")
            if key != server.api_key or mode == "auth":
                self._error(401, "ERROR", "Unknown API Key")
                return
            if mode == "not_entitled":
                self._error(
                    403,
                    "NOT_AUTHORIZED",
                    "You are not entitled to this data. Please upgrade your plan at "
                    "https://massive.com/pricing",
                    "message",
                )
                return
            if mode == "rate_limit":
                self._error(
                    429,
                    "ERROR",
                    "You've exceeded the maximum requests per minute, please wait or upgrade "
                    "your subscription to continue. https://massive.com/pricing",
                )
                return
            if mode == "server_error":
                self._error(500, "ERROR", "Internal Server Error")
                return
            if "cursor" in params:
                try:
                    state = json.loads(base64.urlsafe_b64decode(params["cursor"]))
                    path, query, offset = state["p"], state["q"], int(state["o"])
                except (ValueError, KeyError):
                    self._error(400, "ERROR", "Invalid cursor")
                    return
                if path != url.path:
                    self._error(400, "ERROR", "cursor is for another endpoint")
                    return
            else:
                path, query, offset = url.path, params, 0
            rows = server.rows(path, query)
            if rows is None:
                self._error(404, "NOT_FOUND", "Not found", "message")
                return
            if mode == "empty":
                rows = []
            if mode == "wrong_types" and path.startswith("/v3/trades/"):
                rows = [{**r, "price": "n/a"} for r in rows]
            limit = max(1, int(query.get("limit", 10)))
            page = rows[offset : offset + limit]
            body: dict[str, Any] = {"results": page, "status": "OK", "request_id": "req-synthetic"}
            if offset + limit < len(rows):
                cursor = urlencode({"cursor": _cursor(path, query, offset + limit)})
                body["next_url"] = f"{PRODUCTION}{path}?{cursor}"
            data = json.dumps(body).encode()
            if mode == "malformed" or (mode == "malformed_page2" and "cursor" in params):
                self._send(200, data[: len(data) // 2])
                return
            if mode == "slow":
                time.sleep(server.delay_s)
            self._send(200, data)

    return Handler


@pytest.fixture(name="massive_server")
def massive_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[MassiveServer]:
    """A running server accepting ``TEST_API_KEY``, trusted via ``REQUESTS_CA_BUNDLE`` (which
    the official client reads) for one test; import this fixture into a test module."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    yield from serve_trusted(MassiveServer(), monkeypatch)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser(
        "python -m tests.servers.massive_http",
        "Massive options REST endpoints on https://127.0.0.1 (see docstring).",
        TEST_API_KEY,
        MODES,
    )
    args = parser.parse_args(argv)
    server = MassiveServer(args.api_key, port=args.port)
    server.set_mode(args.mode)
    return serve_until_signal(server, "Massive test server")


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "CONTRACTS",
    "DAY",
    "MODES",
    "PRODUCTION",
    "S",
    "T0",
    "TEST_API_KEY",
    "MassiveServer",
    "RecordedRequest",
    "massive_server_fixture",
    "synthetic_contracts",
    "synthetic_quotes",
    "synthetic_trades",
]
