"""Massive (formerly Polygon.io): QQQ and NDX options trades, signed by the quote in force.

An optional source for the cross-asset confirmation of v3 episodes (issue 21 §2): equity-index
options trade against the same index as NQ, so a bullish NQ flow with bullish QQQ/NDX flow in
the same minutes is better evidence than one alone. This module uses the official ``massive``
client (``RESTClient``: key as ``Authorization: Bearer``, never in a URL) to list the contracts
of a window's day (``/v3/reference/options/contracts``), then each contract's trades
(``/v3/trades/{optionsTicker}``) and, for contracts that traded, its quotes
(``/v3/quotes/{optionsTicker}``), and returns one typed polars frame: every trade with the bid
and ask in force at it and its aggressor (``sign_trades``).

Every request goes through the breaker ``massive:<host>`` of the Historical API's registry (same
transition sinks) and the idempotent-read retry policy; the client's own urllib3 retries are off
so each attempt is seen. Pages are walked here (``next_url``'s cursor, asked again on the
configured host with ``raw=True``) rather than by the client's iterator, which ends silently on
a malformed page. Every bad answer is one ``MassiveError`` with a one-line message and no rows:
a fetch returns all of the window or raises. Formats documented vs inferred: docs/operations.md,
"Massive (optional)".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import polars as pl
import urllib3
from massive import RESTClient
from massive.exceptions import BadResponse
from urllib3.util.retry import Retry

from ifd_core.calendar import NEW_YORK
from ifd_core.marketdata.source_calls import SourceError, breaker_state, guarded_call
from ifd_core.marketdata.source_calls import one_line as _one_line
from ifd_core.marketdata.source_calls import scrub as _scrub
from ifd_core.ops.request_limits import RequestLimiter
from ifd_core.settings import Settings

log = logging.getLogger(__name__)

API_KEY_ENV = "IFD_MASSIVE__API_KEY"
ORIGIN = "massive"
CONTRACTS_PATH = "/v3/reference/options/contracts"
CONTRACTS_PAGE = 1000  # the endpoint's documented maximum per page
_OK_STATUS = ("OK", "DELAYED")  # DELAYED: a plan with delayed data; the rows are still good
_RIGHTS = {"call": "C", "put": "P"}


class MassiveError(SourceError):
    """Massive could not serve the window; the message is one line with what to do."""


class MassiveTransient(MassiveError):
    """A server error, a timeout or an unreachable host: the same read may succeed later."""


class MassiveBadAnswer(MassiveError):
    """Not the documented JSON: counted by the breaker, not retried (it would answer the same)."""


class MassiveRateLimited(MassiveBadAnswer):
    """HTTP 429: the plan's request rate was exceeded; counted, not retried at once."""


class MassiveEmpty(MassiveError):
    """No contract matched the window's day and filters: no rows (a mistake of ours or the plan)."""


# --------------------------------------------------------------------------- secrets
_KEY_PARAM = re.compile(r"((?:apikey|api_key)=|Bearer\s+)[^&\s'\";,]+", re.IGNORECASE)


def scrub(text: str, key: str) -> str:
    """``text`` without the key: the value itself, any ``apiKey=`` parameter or bearer token."""
    return _scrub(text, key, _KEY_PARAM)


class _StatusTap:
    """Wraps the client's urllib3 pool to remember the last HTTP status: the official client
    raises ``BadResponse`` with the body only, and a 401 must not read like a 500."""

    def __init__(self, pool: urllib3.PoolManager) -> None:
        self._pool = pool
        self.last_status: int | None = None

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.last_status = None
        resp = self._pool.request(*args, **kwargs)
        self.last_status = resp.status
        return resp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


# --------------------------------------------------------------------------- parsing
def _num(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number <= 0):
        raise ValueError(f"{what} {value!r} is out of range")
    return number


def _ns(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} {value!r} is not a nanosecond timestamp")
    return value


def _page(body: bytes) -> tuple[list[Any], str | None]:
    """The results and ``next_url`` of one page; ``ValueError`` when not the documented shape."""
    envelope = json.loads(body.decode("utf-8"))
    if not isinstance(envelope, dict):
        raise ValueError(f"the answer is a JSON {type(envelope).__name__}, not an object")
    status = envelope.get("status")
    if status is not None and status not in _OK_STATUS:
        raise ValueError(f"status {status!r} with HTTP 200")
    results = envelope.get("results")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise ValueError(f"results is a JSON {type(results).__name__}, not a list")
    nxt = envelope.get("next_url")
    if nxt is not None and (not isinstance(nxt, str) or not nxt.strip()):
        raise ValueError(f"next_url {nxt!r} is not a URL")
    return results, nxt


def _contract(raw: Any, i: int, underlying: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"contract {i} is {type(raw).__name__}, not an object")
    ticker = raw.get("ticker")
    if not isinstance(ticker, str) or not ticker.startswith("O:"):
        raise ValueError(f"contract {i}: ticker {ticker!r} is not an options ticker")
    right = _RIGHTS.get(str(raw.get("contract_type", "")).lower())
    if right is None:
        raise ValueError(f"contract {ticker}: contract_type {raw.get('contract_type')!r}")
    try:
        expiration = dt.date.fromisoformat(str(raw.get("expiration_date")))
    except ValueError:
        raise ValueError(
            f"contract {ticker}: expiration_date {raw.get('expiration_date')!r} is not a date"
        ) from None
    return {
        "underlying": underlying,
        "ticker": ticker,
        "expiration": expiration,
        "strike": _num(raw.get("strike_price"), f"contract {ticker}: strike_price"),
        "right": right,
        "shares_per_contract": _num(
            raw.get("shares_per_contract", 100),
            f"contract {ticker}: shares_per_contract",
            positive=True,
        ),
    }


def _trade(raw: Any, i: int, ticker: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{ticker} trade {i} is {type(raw).__name__}, not an object")
    seq = raw.get("sequence_number")
    exch = raw.get("exchange")
    corr = raw.get("correction")
    for name, v in (("sequence_number", seq), ("exchange", exch), ("correction", corr)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"{ticker} trade {i}: {name} {v!r} is not an integer")
    return {
        "ticker": ticker,
        "ts": _ns(raw.get("sip_timestamp"), f"{ticker} trade {i}: sip_timestamp"),
        "sequence": seq,
        "exchange": exch,
        "correction": corr,
        "price": _num(raw.get("price"), f"{ticker} trade {i}: price"),
        "size": _num(raw.get("size"), f"{ticker} trade {i}: size", positive=True),
    }


def _quote(raw: Any, i: int, ticker: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{ticker} quote {i} is {type(raw).__name__}, not an object")
    return {
        "ticker": ticker,
        "quote_ts": _ns(raw.get("sip_timestamp"), f"{ticker} quote {i}: sip_timestamp"),
        "bid": _num(raw.get("bid_price", 0.0), f"{ticker} quote {i}: bid_price"),
        "ask": _num(raw.get("ask_price", 0.0), f"{ticker} quote {i}: ask_price"),
    }


# --------------------------------------------------------------------------- the client
@dataclass
class MassiveFetch:
    """One window's signed trades and where they came from."""

    trades: pl.DataFrame
    contracts: int
    requests: int
    source_sha: str
    underlyings: list[str] = field(default_factory=list)


class MassiveOptionsClient:
    """Fetches one window of options trades and quotes; see the module docstring.

    ``rest`` (an official ``RESTClient``), ``clock`` and ``sleep`` are for tests. Every request
    (each page, each attempt) is booked first in ``limiter``: beyond ``requests_per_minute`` in
    the last minute it waits, so the plan's limit is kept here rather than met as a 429.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        rest: RESTClient | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        m = settings.massive
        self.settings = settings
        self._key = m.api_key.get_secret_value().strip()
        self.base_url = m.base_url
        self.underlyings = list(m.underlyings)
        self.expiry_days = m.expiry_days
        self.strike_band_pct = m.strike_band_pct
        self.max_contracts = m.max_contracts
        self.page_limit = m.page_limit
        self.max_pages = m.max_pages
        self.quote_lookback_ns = int(m.quote_lookback_s * 1e9)
        self.timeout_s = m.timeout_s
        self.host = urlsplit(self.base_url).netloc
        self._sleep = sleep
        self._rest = rest
        self._tap: _StatusTap | None = None
        self.requests = 0
        self._digest = hashlib.sha256()
        self.limiter = RequestLimiter(
            Path(settings.warehouse.data_dir) / "massive" / "requests",
            per_minute=m.requests_per_minute,
            source="Massive",
            clock=clock,
            sleep=sleep,
        )

    @property
    def enabled(self) -> bool:
        """False while no key is configured: the source is optional and off by default."""
        return bool(self._key)

    def _client(self) -> RESTClient:
        if self._rest is None:
            self._rest = RESTClient(
                api_key=self._key,
                base=self.base_url,
                connect_timeout=self.timeout_s,
                read_timeout=self.timeout_s,
                retries=0,  # IFD's retry policy sees (and the breaker counts) each attempt
                pagination=False,
                connection_pool_kw={"retries": Retry(total=0, redirect=0, raise_on_status=False)},
            )
        if self._tap is None:
            self._tap = _StatusTap(self._rest.client)
            self._rest.client = self._tap  # type: ignore[assignment]
        return self._rest

    # -- public -------------------------------------------------------------------------------

    def fetch(
        self, start_ns: int, end_ns: int, reference: Mapping[str, float] | None = None
    ) -> MassiveFetch:
        """Signed trades of every configured underlying's options in ``[start_ns, end_ns)``.

        Contracts are those expiring from the window's New York day to ``expiry_days`` after,
        with strikes within ``strike_band_pct`` of ``reference[underlying]`` when given.
        """
        if end_ns <= start_ns:
            raise MassiveError(f"empty window [{start_ns}, {end_ns}): nothing to fetch")
        if not self.enabled:
            raise MassiveError(
                f"no Massive API key: set {API_KEY_ENV} (environment or .env) to enable the "
                "optional cross-asset confirmation"
            )
        self.requests, self._digest = 0, hashlib.sha256()
        day = dt.datetime.fromtimestamp(start_ns / 1e9, NEW_YORK).date()
        contracts: list[dict[str, Any]] = []
        for u in self.underlyings:
            contracts += self._contracts(u, day, (reference or {}).get(u))
        trades: list[dict[str, Any]] = []
        quotes: list[dict[str, Any]] = []
        for c in contracts:
            ticker = c["ticker"]
            got = self._list(
                "trades",
                ticker,
                {"timestamp_gte": start_ns, "timestamp_lt": end_ns},
                lambda r, i, t=ticker: _trade(r, i, t),
            )
            if not got:
                continue
            trades += [{**c, **t} for t in got]
            quotes += self._list(
                "quotes",
                ticker,
                {"timestamp_gte": start_ns - self.quote_lookback_ns, "timestamp_lt": end_ns},
                lambda r, i, t=ticker: _quote(r, i, t),
            )
        signed = sign_trades(
            pl.DataFrame(trades, schema=_RAW_TRADES),
            pl.DataFrame(quotes, schema=QUOTES_SCHEMA),
        )
        log.info(
            "massive: %d trades of %d contracts (%s) in %d requests",
            signed.height,
            len(contracts),
            ",".join(self.underlyings),
            self.requests,
        )
        return MassiveFetch(
            trades=signed,
            contracts=len(contracts),
            requests=self.requests,
            source_sha=self._digest.hexdigest()[:16],
            underlyings=list(self.underlyings),
        )

    def last_trade_price(self, ticker: str, before_ns: int) -> float:
        """The price of ``ticker``'s last trade at or before ``before_ns`` (one request): the
        reference of its options' strike band when the caller has none (QQQ; an index such as
        NDX has no trades, its reference comes from elsewhere)."""
        if not self.enabled:
            raise MassiveError(f"no Massive API key: set {API_KEY_ENV}")
        rows, _ = self._get(
            "last", ticker, {"timestamp_lte": before_ns}, None, lambda r, i: _trade(r, i, ticker), 0
        )
        if not rows:
            raise MassiveEmpty(
                f"Massive has no {ticker} trade at or before {before_ns} ns to centre the strike "
                "band on; give a reference price"
            )
        return float(rows[0]["price"])

    @property
    def breaker(self) -> str:
        """The name of this host's breaker in the process's registry."""
        return f"massive:{self.host}"

    def breaker_state(self) -> str:
        """``closed``, ``open`` or ``half_open``: what an alert on this source observes."""
        return breaker_state(self.settings, self.breaker)

    # -- internals ----------------------------------------------------------------------------

    def _contracts(self, underlying: str, day: dt.date, ref: float | None) -> list[dict]:
        args: dict[str, Any] = {
            "underlying_ticker": underlying,
            "as_of": day.isoformat(),
            "expiration_date_gte": day.isoformat(),
            "expiration_date_lte": (day + dt.timedelta(days=self.expiry_days)).isoformat(),
        }
        if ref is not None:
            band = ref * self.strike_band_pct / 100.0
            args["strike_price_gte"] = ref - band
            args["strike_price_lte"] = ref + band
        rows = self._list("contracts", underlying, args, lambda r, i: _contract(r, i, underlying))
        if not rows:
            raise MassiveEmpty(
                f"Massive listed no {underlying} options expiring {day} to "
                f"{day + dt.timedelta(days=self.expiry_days)}"
                + (f" with strikes within {self.strike_band_pct:g}% of {ref:g}" if ref else "")
                + "; check IFD_MASSIVE__UNDERLYINGS and the plan's options access; nothing was kept"
            )
        if len(rows) > self.max_contracts:
            raise MassiveError(
                f"Massive listed {len(rows)} {underlying} contracts, more than "
                f"IFD_MASSIVE__MAX_CONTRACTS={self.max_contracts} (each costs requests); narrow "
                "IFD_MASSIVE__STRIKE_BAND_PCT or IFD_MASSIVE__EXPIRY_DAYS, or give a reference "
                "price; nothing was fetched"
            )
        return sorted(rows, key=lambda c: c["ticker"])

    def _list(
        self,
        what: str,
        subject: str,
        args: dict[str, Any],
        parse: Callable[[Any, int], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Every row of one listing, page by page; all parsed, or one error."""
        rows: list[dict[str, Any]] = []
        params: dict[str, Any] | None = None  # None: the first page from ``args``
        for n in range(1, self.max_pages + 2):
            if n > self.max_pages:
                raise MassiveError(
                    f"Massive {what} of {subject} has more than IFD_MASSIVE__MAX_PAGES="
                    f"{self.max_pages} pages; narrow the window or raise the limit; no rows kept"
                )
            got, nxt = self._get(what, subject, args, params, parse, len(rows))
            rows += got
            if nxt is None:
                return rows
            params = self._cursor(what, subject, nxt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _cursor(self, what: str, subject: str, next_url: str) -> dict[str, Any]:
        """The query of ``next_url``, asked again on the configured host (never the host the
        answer names: the key must not travel elsewhere)."""
        query = dict(parse_qsl(urlsplit(next_url).query, keep_blank_values=True))
        if not query:
            raise MassiveBadAnswer(
                f"Massive {what} of {subject}: next_url has no cursor "
                f"({_one_line(scrub(next_url, self._key), 80)}); no rows kept"
            )
        return {k: v for k, v in query.items() if k.lower() not in ("apikey", "api_key")}

    def _call(self, what: str, subject: str, args: dict[str, Any], params: dict | None) -> Any:
        rest = self._client()
        if what == "last":
            return rest.list_trades(
                subject, raw=True, limit=1, order="desc", sort="timestamp", **args
            )
        if params is None:
            extra: dict[str, Any] = {"params": None}
            if what != "contracts":
                extra.update(
                    {"limit": self.page_limit, "order": "asc", "sort": "timestamp", **args}
                )
                method = rest.list_trades if what == "trades" else rest.list_quotes
                return method(subject, raw=True, **extra)
            return rest.list_options_contracts(raw=True, limit=CONTRACTS_PAGE, **args)
        if what == "contracts":
            return rest.list_options_contracts(raw=True, params=params)
        method = rest.list_trades if what == "trades" else rest.list_quotes
        return method(subject, raw=True, params=params)

    def _get(
        self,
        what: str,
        subject: str,
        args: dict[str, Any],
        params: dict | None,
        parse: Callable[[Any, int], dict[str, Any]],
        offset: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page through the breaker and the retry policy: its parsed rows and next_url.
        Parsing is part of the attempt, so a malformed answer or a row of the wrong types is
        the failure the breaker counts (not a success followed by an error)."""

        def attempt() -> tuple[list[dict[str, Any]], str | None]:
            body = self._attempt(what, subject, args, params)
            try:
                results, nxt = _page(body)
                return [parse(r, offset + i) for i, r in enumerate(results)], nxt
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MassiveBadAnswer(
                    f"Massive {what} of {subject} answered with malformed JSON "
                    f"({_one_line(str(exc), 80)}); no rows kept"
                ) from None
            except ValueError as exc:
                raise MassiveBadAnswer(
                    f"Massive {what} of {subject} is not the documented format: "
                    f"{_one_line(scrub(str(exc), self._key))}; no rows kept"
                ) from None

        return guarded_call(
            self.settings,
            self.breaker,
            attempt,
            error=MassiveError,
            transient=MassiveTransient,
            counted=(MassiveBadAnswer,),
            sleep=self._sleep,
            name="Massive",
        )

    def _attempt(self, what: str, subject: str, args: dict[str, Any], params: dict | None) -> bytes:
        self.limiter.acquire(f"{what} {subject}")
        self.requests += 1
        where = f"Massive {what} of {subject}"
        try:
            resp = self._call(what, subject, args, params)
        except BadResponse as exc:
            status = self._tap.last_status if self._tap is not None else None
            self._raise_for(where, status, _error_text(str(exc), self._key))
        except urllib3.exceptions.MaxRetryError as exc:
            self._raise_unreachable(where, exc.reason)
        except urllib3.exceptions.HTTPError as exc:
            self._raise_unreachable(where, exc)
        body = resp.data
        self._digest.update(body)
        return body

    def _raise_unreachable(self, where: str, reason: BaseException | None) -> None:
        if isinstance(reason, urllib3.exceptions.SSLError):
            raise MassiveError(
                f"{where} failed: TLS error talking to {self.host}; check "
                "IFD_MASSIVE__BASE_URL and the CA bundle"
            ) from None
        if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
            reason,
            urllib3.exceptions.NewConnectionError,  # a subclass of ConnectTimeoutError
        ):
            raise MassiveTransient(
                f"{where} timed out after {self.timeout_s:g} s at {self.host}"
            ) from None
        raise MassiveTransient(
            f"{where} failed: cannot reach {self.host} ({type(reason).__name__}); check the "
            "network and IFD_MASSIVE__BASE_URL"
        ) from None

    def _raise_for(self, where: str, status: int | None, message: str) -> None:
        said = f"{where} answered HTTP {status}" if status else f"{where} was refused"
        detail = f" ({message})" if message else ""
        if status in (401, 403):
            raise MassiveError(
                f"{said}: not authorised, the API key was rejected or the plan does not include "
                f"this data; check {API_KEY_ENV} and the plan{detail}",
                http_status=status,
            )
        if status == 429:
            raise MassiveRateLimited(
                f"{said}: rate limited, the plan's requests per minute were exceeded; wait or "
                f"ask for a smaller window{detail}",
                http_status=status,
            )
        if status is None or status >= 500:
            raise MassiveTransient(
                f"{said}: Massive server error, retry later{detail}", http_status=status
            )
        raise MassiveError(f"{said}: the request was rejected{detail}", http_status=status)


def _error_text(body: str, key: str) -> str:
    """The ``error`` or ``message`` of Massive's error JSON, else the body, on one line."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    text = (doc.get("error") or doc.get("message")) if isinstance(doc, dict) else None
    return _one_line(scrub(str(text or body), key))


# --------------------------------------------------------------------------- signing (pure)
_RAW_TRADES: dict[str, pl.DataType] = {
    "underlying": pl.Utf8(),
    "ticker": pl.Utf8(),
    "expiration": pl.Date(),
    "strike": pl.Float64(),
    "right": pl.Utf8(),
    "shares_per_contract": pl.Float64(),
    "ts": pl.UInt64(),
    "sequence": pl.Int64(),
    "exchange": pl.Int32(),
    "correction": pl.Int32(),
    "price": pl.Float64(),
    "size": pl.Float64(),
}
QUOTES_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8(),
    "quote_ts": pl.UInt64(),
    "bid": pl.Float64(),
    "ask": pl.Float64(),
}
TRADES_SCHEMA: dict[str, pl.DataType] = {
    **_RAW_TRADES,
    "premium": pl.Float64(),
    "bid": pl.Float64(),
    "ask": pl.Float64(),
    "quote_ts": pl.UInt64(),
    "aggressor": pl.Utf8(),
    "origin": pl.Utf8(),
}
"""A fetch's frame: one row per trade (``ts``: SIP time, ns UTC; ``premium``: price x size x
shares per contract, USD; ``aggressor``: B bought at/above the ask, S sold at/below the bid, N
neither or no quote in force)."""


def sign_trades(trades: pl.DataFrame, quotes: pl.DataFrame) -> pl.DataFrame:
    """Each trade with the quote in force at it (the last of its contract with ``quote_ts <=
    ts``) and its aggressor: at or above a positive ask a buy, at or below a positive bid a sell,
    otherwise (inside the spread, a crossed or one-sided quote, no quote) unsigned ``N``."""
    t = trades.select([pl.col(c).cast(d) for c, d in _RAW_TRADES.items()]).sort("ticker", "ts")
    q = quotes.select([pl.col(c).cast(d) for c, d in QUOTES_SCHEMA.items()]).sort(
        "ticker", "quote_ts"
    )
    joined = t.join_asof(
        q,
        left_on="ts",
        right_on="quote_ts",
        by="ticker",
        strategy="backward",
        check_sortedness=False,
    )
    crossed = pl.col("bid") > pl.col("ask")
    buy = (pl.col("ask") > 0) & (pl.col("price") >= pl.col("ask")) & ~crossed
    sell = (pl.col("bid") > 0) & (pl.col("price") <= pl.col("bid")) & ~crossed
    return (
        joined.with_columns(
            (pl.col("price") * pl.col("size") * pl.col("shares_per_contract")).alias("premium"),
            pl.when(buy & ~sell)
            .then(pl.lit("B"))
            .when(sell & ~buy)
            .then(pl.lit("S"))
            .otherwise(pl.lit("N"))
            .alias("aggressor"),
            pl.lit(ORIGIN).alias("origin"),
        )
        .select([pl.col(c).cast(d) for c, d in TRADES_SCHEMA.items()])
        .sort("ts", "ticker", "sequence", nulls_last=True)
    )


def make_client(settings: Settings, **kwargs: Any) -> MassiveOptionsClient:
    """The client for ``settings`` (``kwargs``: an official ``rest`` client, ``clock``,
    ``sleep``)."""
    return MassiveOptionsClient(settings, **kwargs)


__all__ = [
    "API_KEY_ENV",
    "MassiveBadAnswer",
    "MassiveEmpty",
    "MassiveError",
    "MassiveFetch",
    "MassiveOptionsClient",
    "MassiveRateLimited",
    "MassiveTransient",
    "ORIGIN",
    "QUOTES_SCHEMA",
    "TRADES_SCHEMA",
    "sign_trades",
    "make_client",
    "scrub",
]
