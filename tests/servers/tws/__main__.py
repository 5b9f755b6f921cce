"""``python -m tests.servers.tws --port N``: the TWS test server on loopback, by hand.

Starts with a small NQ book (``--no-demo`` for none) and prints the port it listens on, so a
developer can point ib_async, ib_insync or ``ifd`` at it; SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from tests.servers.tws.protocol import DEFAULT_SERVER_VERSION
from tests.servers.tws.server import TwsTestServer
from tests.servers.tws.state import TwsServerError

DEMO_FUTURE_CON_ID = 100_001
DEMO_OPTION_CON_ID0 = 200_001


def add_demo_nq(server: TwsTestServer) -> None:
    """A small NQ book for trying clients by hand: the June 2026 future and the 20260417
    18000/18250/18500 calls and puts (conIds 200001..), all quoted."""
    server.add_future(DEMO_FUTURE_CON_ID, "NQ", "20260619")
    server.set_quote(DEMO_FUTURE_CON_ID, 18249.75, 18250.25, 5, 5)
    con_id = DEMO_OPTION_CON_ID0
    for strike in (18000.0, 18250.0, 18500.0):
        for right in ("C", "P"):
            server.add_contract(con_id, strike=strike, right=right, under_con_id=DEMO_FUTURE_CON_ID)
            intrinsic = max(18250.0 - strike, 0.0) if right == "C" else max(strike - 18250.0, 0.0)
            mid = intrinsic + 150.0
            server.set_quote(con_id, mid - 1.0, mid + 1.0)
            con_id += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.servers.tws",
        description="A TWS-protocol test server on loopback (see tests/servers/tws/__init__.py).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=7497, help="0 picks a free port")
    parser.add_argument("--server-version", type=int, default=DEFAULT_SERVER_VERSION)
    parser.add_argument("--account", action="append", dest="accounts", help="repeatable")
    parser.add_argument("--commission", type=float, default=2.25, help="USD per contract")
    parser.add_argument("--no-demo", action="store_true", help="start without the NQ demo book")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = TwsTestServer(
            args.host,
            args.port,
            server_version=args.server_version,
            accounts=tuple(args.accounts or ("DU1234567",)),
            commission_per_contract=args.commission,
        )
    except TwsServerError as exc:
        parser.error(str(exc))
    if not args.no_demo:
        add_demo_nq(server)

    def ready(port: int) -> None:
        print(
            f"TWS test server listening on {args.host}:{port} (server version "
            f"{server.server_version}, accounts {','.join(server.accounts)}); Ctrl-C stops",
            flush=True,
        )

    server.serve_forever(ready)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
