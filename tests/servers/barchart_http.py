"""A loopback HTTPS server that answers Barchart OnDemand's ``getFuturesOptions.json``.

It serves the documented envelope, ``{"status": {"code": 200, "message": "Success."},
"results": [...]}``, with a small SYNTHETIC NQ chain (made-up strikes, open interest, volume and
settlements; the symbols follow Barchart's ``<root><month><yy>|<strike><C|P>`` pattern, which is
inferred), and, by ``mode``, the bad answers the client must survive:

========================  =====================================================================
``ok``                    the chain (HTTP 200, status 200)
``auth``                  HTTP 401, text body "API key is missing or not valid." (also the
                          answer to any request with another key, whatever the mode)
``rate_limit``            HTTP 429 with the envelope, status code 429
``rate_limit_body``       HTTP 200 with status code 429 in the body
``empty``                 status 200 and ``results: []``
``no_content``            status 204 and ``results: null``
``malformed``             a cut JSON body
``wrong_types``           the chain with a non-numeric strike in one row
``server_error``          HTTP 500 with the envelope, status code 500
``other_day``             the chain with every ``date`` one day later
``slow``                  the chain after ``delay_s`` seconds
========================  =====================================================================

Which of these shapes Barchart really sends for a rate limit, an empty chain or a server error
is inferred (docs/operations.md, "Barchart OnDemand (optional)"); the client accepts each.
``mode_times`` makes a mode last that many requests, then the server answers ``ok`` again.
Every request is recorded (path and query parameters) so a test can count what was sent.
``python -m tests.servers.barchart_http --port N`` serves by hand (CA bundle printed).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers.loopback_tls import (
    ModalServer,
    QuietHandler,
    cli_parser,
    query_fields,
    serve_trusted,
    serve_until_signal,
)

PATH = "/getFuturesOptions.json"
TEST_API_KEY = "bc-ifdTestKey-0123456789abcdef"
"""The one key this fixture accepts."""
DAY = dt.date(2026, 3, 20)
MODES = (
    "ok",
    "auth",
    "rate_limit",
    "rate_limit_body",
    "empty",
    "no_content",
    "malformed",
    "wrong_types",
    "server_error",
    "other_day",
    "slow",
)


# The two futures the SYNTHETIC options are on: Barchart's contract name, month code, expiry.
_FUTURES = {
    "NQM26": ("Nasdaq 100 E-Mini Jun '26", "M", "2026-06-18"),
    "NQH26": ("Nasdaq 100 E-Mini Mar '26", "H", "2026-03-20"),
}


def _row(date: str, contract: str, option: str, strike: Any, **values: Any) -> dict[str, Any]:
    """One Barchart row for ``<contract>|<option>`` (``option`` like ``21000C``); ``values``
    carries the prices, ``openInterest`` and ``volume`` as that row types them."""
    name, month, expiry = _FUTURES[contract]
    return {
        "symbol": f"{contract}|{option}",
        "root": "NQ",
        "contract": contract,
        "contractName": name,
        "contractMonth": month,
        "exchange": "CME",
        "type": "Call" if option.endswith("C") else "Put",
        "strike": strike,
        "expirationDate": expiry,
        "date": date,
        **values,
    }


def synthetic_chain(day: dt.date = DAY) -> list[dict[str, Any]]:
    """SYNTHETIC: six NQ options of two expirations, as Barchart's rows (strings and numbers
    mixed as the documented types allow; settled rows carry ``flag`` "s" and ``last``)."""
    d = day.isoformat()
    return [
        _row(d, "NQM26", "21000C", 21000, last=812.25, flag="s", openInterest=1520, volume=87),
        _row(d, "NQM26", "21000P", 21000, last=640.5, flag="s", openInterest=2210, volume=143),
        _row(d, "NQM26", "21500C", "21500.00", settlement="575.75", openInterest="980", volume="0"),
        _row(d, "NQH26", "20750P", 20750.0, last=3.5, flag="s", openInterest=4105, volume=2230),
        _row(d, "NQH26", "20750C", 20750.0, last=98.0, flag="", openInterest=None, volume=12),
        _row(d, "NQM26", "22000C", 22000, last=301.0, flag="s", openInterest=0, volume=""),
    ]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]


class BarchartServer(ModalServer):
    """Barchart OnDemand on https://127.0.0.1:<port>; use as a context manager."""

    name = "barchart"
    MODES = MODES

    def __init__(self, api_key: str = TEST_API_KEY, *, day: dt.date = DAY, port: int = 0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.day = day
        self.chain: list[dict[str, Any]] = synthetic_chain(day)
        self.requests: list[RecordedRequest] = []

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)


def _envelope(code: int, message: str, results: Any) -> dict[str, Any]:
    return {"status": {"code": code, "message": message}, "results": results}


def _handler_for(server: BarchartServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        server_version = "ifd-barchart-fixture/1"

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            params = query_fields(url.query)
            mode = server._take(RecordedRequest("GET", url.path, params))
            if params.get("apikey") != server.api_key or mode == "auth":
                self._send(401, b"API key is missing or not valid.", "text/html")
                return
            if url.path != PATH:
                self._send(404, b"Not Found", "text/html")
                return
            if not any(params.get(k) for k in ("root", "contract", "symbols", "exchange")):
                self._send(
                    400, b"Input: exchange, root, contract or symbols is required.", "text/html"
                )
                return
            chain = [r for r in server.chain if r["root"] == params.get("root", r["root"])]
            if mode == "rate_limit":
                self._json(429, _envelope(429, "Too Many Requests.", None))
            elif mode == "rate_limit_body":
                self._json(200, _envelope(429, "Query limit exceeded.", None))
            elif mode == "empty":
                self._json(200, _envelope(200, "Success.", []))
            elif mode == "no_content":
                self._json(200, _envelope(204, "Success, but no content.", None))
            elif mode == "malformed":
                body = json.dumps(_envelope(200, "Success.", chain)).encode()
                self._send(200, body[: len(body) // 2], "application/json")
            elif mode == "wrong_types":
                bad = [dict(r) for r in chain]
                bad[len(bad) // 2]["strike"] = "n/a"
                self._json(200, _envelope(200, "Success.", bad))
            elif mode == "server_error":
                self._json(500, _envelope(500, "Internal Server Error.", None))
            elif mode == "other_day":
                later = (server.day + dt.timedelta(days=1)).isoformat()
                self._json(200, _envelope(200, "Success.", [{**r, "date": later} for r in chain]))
            else:
                if mode == "slow":
                    time.sleep(server.delay_s)
                self._json(200, _envelope(200, "Success.", chain))

    return Handler


@pytest.fixture(name="barchart_server")
def barchart_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[BarchartServer]:
    """A running server accepting ``TEST_API_KEY``, trusted via ``REQUESTS_CA_BUNDLE`` for one
    test; import this fixture into a test module to use it."""
    yield from serve_trusted(BarchartServer(), monkeypatch)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_parser(
        "python -m tests.servers.barchart_http",
        "Barchart OnDemand getFuturesOptions on https://127.0.0.1 (see docstring).",
        TEST_API_KEY,
        MODES,
    )
    args = parser.parse_args(argv)
    server = BarchartServer(args.api_key, port=args.port)
    server.set_mode(args.mode)
    return serve_until_signal(server, "Barchart test server")


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "DAY",
    "MODES",
    "PATH",
    "TEST_API_KEY",
    "BarchartServer",
    "RecordedRequest",
    "barchart_server_fixture",
    "synthetic_chain",
]
