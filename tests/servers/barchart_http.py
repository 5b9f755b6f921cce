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

import argparse
import datetime as dt
import json
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.servers.historical_http import make_self_signed_cert

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


def synthetic_chain(day: dt.date = DAY) -> list[dict[str, Any]]:
    """SYNTHETIC: six NQ options of two expirations, as Barchart's rows (strings and numbers
    mixed as the documented types allow; settled rows carry ``flag`` "s" and ``last``)."""
    d = day.isoformat()
    return [
        {
            "symbol": "NQM26|21000C",
            "root": "NQ",
            "contract": "NQM26",
            "contractName": "Nasdaq 100 E-Mini Jun '26",
            "contractMonth": "M",
            "exchange": "CME",
            "type": "Call",
            "strike": 21000,
            "expirationDate": "2026-06-18",
            "date": d,
            "last": 812.25,
            "flag": "s",
            "openInterest": 1520,
            "volume": 87,
        },
        {
            "symbol": "NQM26|21000P",
            "root": "NQ",
            "contract": "NQM26",
            "contractName": "Nasdaq 100 E-Mini Jun '26",
            "contractMonth": "M",
            "exchange": "CME",
            "type": "Put",
            "strike": 21000,
            "expirationDate": "2026-06-18",
            "date": d,
            "last": 640.5,
            "flag": "s",
            "openInterest": 2210,
            "volume": 143,
        },
        {
            "symbol": "NQM26|21500C",
            "root": "NQ",
            "contract": "NQM26",
            "contractName": "Nasdaq 100 E-Mini Jun '26",
            "contractMonth": "M",
            "exchange": "CME",
            "type": "Call",
            "strike": "21500.00",
            "expirationDate": "2026-06-18",
            "date": d,
            "settlement": "575.75",
            "openInterest": "980",
            "volume": "0",
        },
        {
            "symbol": "NQH26|20750P",
            "root": "NQ",
            "contract": "NQH26",
            "contractName": "Nasdaq 100 E-Mini Mar '26",
            "contractMonth": "H",
            "exchange": "CME",
            "type": "Put",
            "strike": 20750.0,
            "expirationDate": "2026-03-20",
            "date": d,
            "last": 3.5,
            "flag": "s",
            "openInterest": 4105,
            "volume": 2230,
        },
        {
            "symbol": "NQH26|20750C",
            "root": "NQ",
            "contract": "NQH26",
            "contractName": "Nasdaq 100 E-Mini Mar '26",
            "contractMonth": "H",
            "exchange": "CME",
            "type": "Call",
            "strike": 20750.0,
            "expirationDate": "2026-03-20",
            "date": d,
            "last": 98.0,
            "flag": "",
            "openInterest": None,
            "volume": 12,
        },
        {
            "symbol": "NQM26|22000C",
            "root": "NQ",
            "contract": "NQM26",
            "contractName": "Nasdaq 100 E-Mini Jun '26",
            "contractMonth": "M",
            "exchange": "CME",
            "type": "Call",
            "strike": 22000,
            "expirationDate": "2026-06-18",
            "date": d,
            "last": 301.0,
            "flag": "s",
            "openInterest": 0,
            "volume": "",
        },
    ]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]


class BarchartServer:
    """Barchart OnDemand on https://127.0.0.1:<port>; use as a context manager."""

    def __init__(self, api_key: str = TEST_API_KEY, *, day: dt.date = DAY, port: int = 0) -> None:
        self.api_key = api_key
        self.day = day
        self.requested_port = port
        self.mode = "ok"
        self.mode_times: int | None = None
        self.delay_s = 1.0
        self.chain: list[dict[str, Any]] = synthetic_chain(day)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.cert_path: Path | None = None

    def start(self) -> BarchartServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="ifd-barchart-tls-")
        self.cert_path, key_path = make_self_signed_cert(Path(self._tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, key_path)
        httpd = ThreadingHTTPServer(("127.0.0.1", self.requested_port), _handler_for(self))
        httpd.daemon_threads = True
        httpd.socket = ctx.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="barchart-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> BarchartServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def set_mode(self, mode: str, times: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        with self._lock:
            self.mode, self.mode_times = mode, times

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _take(self, request: RecordedRequest) -> str:
        with self._lock:
            self.requests.append(request)
            mode = self.mode
            if self.mode_times is not None:
                self.mode_times -= 1
                if self.mode_times <= 0:
                    self.mode, self.mode_times = "ok", None
            return mode


def _envelope(code: int, message: str, results: Any) -> dict[str, Any]:
    return {"status": {"code": code, "message": message}, "results": results}


def _handler_for(server: BarchartServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ifd-barchart-fixture/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # requests are recorded instead

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
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
    with BarchartServer() as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.cert_path))
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.barchart_http",
        description="Barchart OnDemand getFuturesOptions on https://127.0.0.1 (see docstring).",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=TEST_API_KEY, help="the one key accepted")
    parser.add_argument("--mode", default="ok", choices=MODES)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with BarchartServer(args.api_key, port=args.port) as server:
        server.set_mode(args.mode)
        print(
            f"Barchart test server on {server.url} (REQUESTS_CA_BUNDLE={server.cert_path}); "
            "Ctrl-C stops",
            file=sys.stdout,
            flush=True,
        )
        stop.wait()
    return 0


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
