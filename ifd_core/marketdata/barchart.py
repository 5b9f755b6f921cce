"""Barchart OnDemand's futures-options chain, an optional cross-check of open interest.

Databento's definitions and statistics are IFD's source of open interest and settlements; this
thin client on Barchart's documented web API (``getFuturesOptions.json``, ``apikey`` query
parameter; no scraping of the website) fetches the NQ chain of one day for a later
cross-check. What is documented and what is inferred about the formats: docs/operations.md,
"Barchart OnDemand (optional)".

A request is counted in ``<data>/barchart/requests/<UTC day>.log`` (shared by processes) and
throttled to the plan: beyond ``requests_per_minute`` it waits, beyond ``requests_per_day`` it is
refused before anything is sent. A good answer is cached as received under
``<data>/barchart/raw/<root>/<day>.json`` and reused instead of asking again. Requests go through
the process's breaker registry (the Historical API's, so transitions reach the same sinks) and
the idempotent-read retry policy; every bad answer becomes one ``BarchartError`` with a one-line
message and no rows. The API key never appears in a log line, an error or a cached file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import requests

from ifd_core.marketdata.source_calls import SourceError, guarded_call
from ifd_core.marketdata.source_calls import one_line as _one_line
from ifd_core.marketdata.source_calls import scrub as _scrub
from ifd_core.ops.request_limits import QuotaExhausted, RequestLimiter
from ifd_core.settings import Settings

log = logging.getLogger(__name__)

API_KEY_ENV = "IFD_BARCHART__API_KEY"
ENDPOINT = "getFuturesOptions.json"
ORIGIN = "barchart"
# Asked for beyond the fields always returned (getFuturesOptions' `fields` input).
FIELDS = "openInterest,volume,settlement,flag,last,previousClose"
AUTH_TEXT = "API key is missing or not valid."
"""The plain-text body Barchart's own clients treat as an authentication failure."""

SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "root": pl.Utf8(),
    "symbol": pl.Utf8(),
    "expiration": pl.Date(),
    "strike": pl.Float64(),
    "right": pl.Utf8(),
    "open_interest": pl.Int64(),
    "volume": pl.Int64(),
    "settlement": pl.Float64(),
    "origin": pl.Utf8(),
}


class BarchartError(SourceError):
    """Barchart could not serve the chain; the message is one line with what to do."""


class BarchartTransient(BarchartError):
    """A server error, a timeout or an unreachable host: the same read may succeed later."""


class BarchartBadAnswer(BarchartError):
    """An answer that is not the documented envelope, or rows of the wrong types: counted by the
    breaker (the dependency misbehaves) but not retried (each retry costs a request)."""


class BarchartRateLimited(BarchartBadAnswer):
    """Barchart said the plan's limit was exceeded (HTTP 429 or status code 429)."""


class BarchartQuotaExhausted(BarchartError, QuotaExhausted):
    """The day's request budget (``barchart.requests_per_day``) is spent; nothing was sent."""


class BarchartEmpty(BarchartError):
    """A well-formed answer without a single option: no rows, nothing cached."""


# --------------------------------------------------------------------------- secrets
_APIKEY_PARAM = re.compile(r"(apikey=)[^&\s'\"]+", re.IGNORECASE)


def scrub(text: str, key: str) -> str:
    """``text`` without the key: the value itself and any ``apikey=`` query parameter."""
    return _scrub(text, key, _APIKEY_PARAM)


class _RedactKey(logging.Filter):
    """urllib3 logs request URLs (with ``apikey=``) at DEBUG; this filter rewrites them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _APIKEY_PARAM.sub(r"\1***", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_REDACT = _RedactKey()


def _install_redaction() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


# --------------------------------------------------------------------------- parsing
def _date(value: Any, what: str) -> dt.date:
    """An ISO date (``2026-03-20``, optionally with a time part) or ``MM/DD/YYYY``."""
    if isinstance(value, str):
        text = value.strip()
        for fmt, size in (("%Y-%m-%d", 10), ("%m/%d/%Y", 10), ("%m/%d/%y", 8)):
            try:
                return dt.datetime.strptime(text[:size], fmt).date()
            except ValueError:
                continue
    raise ValueError(f"{what} {value!r} is not a date")


def _number(value: Any, what: str, *, integer: bool = False, required: bool) -> Any:
    """A JSON number or a numeric string (OnDemand sends some numbers as strings); ``None`` or
    an empty string is missing (an error when ``required``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{what} is missing")
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.replace(",", ""))
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a number") from None
    else:
        raise ValueError(f"{what} {value!r} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"{what} {value!r} is not finite")
    if integer:
        if number != int(number) or number < 0:
            raise ValueError(f"{what} {value!r} is not a count")
        return int(number)
    return number


_RIGHTS = {"call": "C", "put": "P", "c": "C", "p": "P"}


def _row(raw: Any, index: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"result {index} is {type(raw).__name__}, not an object")
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"result {index}: symbol {symbol!r} is not a symbol")
    where = f"result {index} ({symbol})"
    root = raw.get("root")
    if not isinstance(root, str) or not root.strip():
        raise ValueError(f"{where}: root {root!r} is not a root")
    kind = raw.get("type")
    right = _RIGHTS.get(kind.strip().lower()) if isinstance(kind, str) else None
    if right is None:
        raise ValueError(f"{where}: type {kind!r} is neither Call nor Put")
    # Settlement: an explicit `settlement` field when served; otherwise `last` when `flag` is
    # "s" (settled), as Barchart's FAQ describes for its futures; otherwise unknown.
    settlement = _number(raw.get("settlement"), f"{where}: settlement", required=False)
    if settlement is None and str(raw.get("flag") or "").strip().lower() == "s":
        settlement = _number(raw.get("last"), f"{where}: last (settled)", required=True)
    return {
        "date": _date(raw.get("date"), f"{where}: date"),
        "root": root.strip(),
        "symbol": symbol.strip(),
        "expiration": _date(raw.get("expirationDate"), f"{where}: expirationDate"),
        "strike": _number(raw.get("strike"), f"{where}: strike", required=True),
        "right": right,
        "open_interest": _number(
            raw.get("openInterest"), f"{where}: openInterest", integer=True, required=False
        ),
        "volume": _number(raw.get("volume"), f"{where}: volume", integer=True, required=False),
        "settlement": settlement,
        "origin": ORIGIN,
    }


def _status(envelope: Any) -> tuple[int, str]:
    if not isinstance(envelope, dict):
        raise ValueError(f"the answer is a JSON {type(envelope).__name__}, not an object")
    status = envelope.get("status")
    if not isinstance(status, dict):
        raise ValueError("the answer has no status object")
    code = status.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise ValueError(f"status code {code!r} is not a number")
    return code, _one_line(str(status.get("message") or ""))


def parse_chain(body: str) -> pl.DataFrame:
    """The typed rows of a ``getFuturesOptions`` answer whose status is 200 or 204.

    Raises ``ValueError`` naming the first thing that is not the documented format; a frame
    is returned only when every row parsed (never a part of the chain).
    """
    envelope = json.loads(body)
    code, message = _status(envelope)
    if code not in (200, 204):
        raise ValueError(f"status {code} ({message}) is not a success")
    results = envelope.get("results")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise ValueError(f"results is a JSON {type(results).__name__}, not a list")
    rows = [_row(r, i) for i, r in enumerate(results)]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(schema=SCHEMA)
    return frame.sort("expiration", "strike", "right", "symbol")


# --------------------------------------------------------------------------- the client
class BarchartClient:
    """Fetches one day's options chain of ``barchart.root``; see the module docstring.

    ``session``, ``clock`` and ``sleep`` are for tests (a loopback server, a fake clock that
    counts the waits instead of waiting them).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        b = settings.barchart
        self.settings = settings
        self._key = b.api_key.get_secret_value().strip()
        self.base_url = b.base_url
        self.root = b.root
        self.timeout_s = b.timeout_s
        root_dir = Path(settings.warehouse.data_dir) / "barchart"
        self.cache_dir: Path | None = root_dir / "raw" if b.cache else None
        self.limiter = RequestLimiter(
            root_dir / "requests",
            per_minute=b.requests_per_minute,
            per_day=b.requests_per_day,
            source="Barchart",
            day_setting="IFD_BARCHART__REQUESTS_PER_DAY",
            exhausted=BarchartQuotaExhausted,
            clock=clock,
            sleep=sleep,
        )
        self._session = session or requests.Session()
        self._sleep = sleep
        self.host = urlsplit(self.base_url).netloc
        _install_redaction()

    @property
    def enabled(self) -> bool:
        """False while no key is configured: the source is optional and off by default."""
        return bool(self._key)

    def cache_path(self, day: dt.date) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.root / f"{day.isoformat()}.json"

    # -- public -------------------------------------------------------------------------------

    def chain(self, day: dt.date) -> pl.DataFrame:
        """The chain of ``day`` (from the cache when it holds the day, else one request).

        ``getFuturesOptions`` serves the latest session only, so a day that is not the one
        Barchart serves is an error (the served day is still cached under its own date).
        """
        cached = self.cache_path(day)
        if cached is not None and cached.exists():
            return self._from_cache(cached, day)
        if not self.enabled:
            raise BarchartError(
                f"no Barchart API key: set {API_KEY_ENV} (environment or .env) to enable the "
                "optional Barchart cross-check"
            )
        body, frame = self._get()
        served = frame["date"].unique().to_list()
        self._store(served[0], body)
        if served[0] != day:
            raise BarchartError(
                f"Barchart served the {self.root} chain of {served[0]}, not of {day}: "
                f"{ENDPOINT} answers with the latest session only (kept under {served[0]})"
            )
        log.info("barchart: %d options of %s for %s", frame.height, self.root, day)
        return frame

    # -- internals ----------------------------------------------------------------------------

    def _from_cache(self, path: Path, day: dt.date) -> pl.DataFrame:
        try:
            stored = json.loads(path.read_text())
            frame = parse_chain(stored["body"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BarchartError(
                f"cached Barchart answer {path} is unreadable ({_one_line(str(exc))}); "
                "remove it to ask again"
            ) from None
        if frame.is_empty() or frame["date"].unique().to_list() != [day]:
            raise BarchartError(f"cached Barchart answer {path} does not hold the chain of {day}")
        return frame

    def _store(self, served: dt.date, body: str) -> None:
        path = self.cache_path(served)
        if path is None or path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "endpoint": ENDPOINT,
            "params": {"root": self.root, "fields": FIELDS},
            "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "body": scrub(body, self._key),
        }
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        partial.write_text(json.dumps(record))
        os.replace(partial, path)

    def _parse(self, body: str) -> pl.DataFrame:
        try:
            frame = parse_chain(body)
        except json.JSONDecodeError as exc:
            raise BarchartBadAnswer(
                f"Barchart {ENDPOINT} answered with malformed JSON ({exc.msg} at "
                f"line {exc.lineno} column {exc.colno}); no rows kept"
            ) from None
        except ValueError as exc:
            raise BarchartBadAnswer(
                f"Barchart {ENDPOINT} answer is not the documented format: "
                f"{_one_line(scrub(str(exc), self._key))}; no rows kept"
            ) from None
        if frame.is_empty():
            raise BarchartEmpty(
                f"Barchart {ENDPOINT} returned no options for root {self.root}; check "
                "IFD_BARCHART__ROOT and the plan's exchange permissions; nothing was kept"
            )
        served = sorted(frame["date"].unique().to_list())
        if len(served) != 1:
            # One chain is one session; rows of several price dates cannot be one day's table.
            raise BarchartBadAnswer(
                f"Barchart {ENDPOINT} mixed {len(served)} price dates in one chain "
                f"({', '.join(str(d) for d in served[:3])}); no rows kept"
            )
        return frame

    def _get(self) -> tuple[str, pl.DataFrame]:
        """One request through the breaker and the retry policy: the body and its rows.

        Parsing is part of the attempt, so a malformed answer is the one failure the breaker
        counts for it (not a success followed by an error).
        """

        def attempt() -> tuple[str, pl.DataFrame]:
            body = self._attempt()
            return body, self._parse(body)

        return guarded_call(
            self.settings,
            f"barchart:{self.host}",
            attempt,
            error=BarchartError,
            transient=BarchartTransient,
            counted=(BarchartBadAnswer,),
            sleep=self._sleep,
            name="Barchart OnDemand",
        )

    def _attempt(self) -> str:
        self.limiter.acquire(ENDPOINT)
        url = f"{self.base_url}/{ENDPOINT}"
        params = {"apikey": self._key, "root": self.root, "fields": FIELDS}
        try:
            resp = self._session.get(
                url, params=params, timeout=self.timeout_s, headers={"Accept": "application/json"}
            )
        except requests.exceptions.SSLError as exc:
            raise BarchartError(
                f"Barchart {ENDPOINT} failed: TLS error talking to {self.host} "
                f"({_one_line(scrub(str(exc), self._key))}); check IFD_BARCHART__BASE_URL and "
                "the CA bundle"
            ) from None
        except requests.exceptions.Timeout:
            raise BarchartTransient(
                f"Barchart {ENDPOINT} timed out after {self.timeout_s:g} s at {self.host}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise BarchartTransient(
                f"Barchart {ENDPOINT} failed: cannot reach {self.host} ({type(exc).__name__}); "
                "check the network and IFD_BARCHART__BASE_URL"
            ) from None
        text, status = resp.text, resp.status_code
        if status == 204:
            raise BarchartEmpty(
                f"Barchart {ENDPOINT} answered HTTP 204 (no content) for root {self.root}; "
                "nothing was kept"
            )
        try:
            body_code, message = _status(json.loads(text))
        except ValueError:
            if status == 200:
                return text  # malformed: _parse reports it with the JSON error
            body_code, message = status, _one_line(text) or resp.reason or ""
        code = body_code if status == 200 else status
        if code in (200, 204):
            return text
        self._raise_for(code, status, _one_line(scrub(message, self._key)), text)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, code: int, http: int, message: str, text: str) -> None:
        where = f"Barchart {ENDPOINT} answered {code}" + (f" (HTTP {http})" if http != code else "")
        detail = f" ({message})" if message else ""
        if code in (401, 403) or text.strip().lower() == AUTH_TEXT.lower():
            raise BarchartError(
                f"{where}: authentication failed, the API key was rejected or lacks this API; "
                f"check {API_KEY_ENV}{detail}",
                http_status=http,
            )
        if code == 429:
            raise BarchartRateLimited(
                f"{where}: rate limited, the plan's request limit was exceeded; lower "
                f"IFD_BARCHART__REQUESTS_PER_MINUTE/PER_DAY to the plan's{detail}",
                http_status=http,
            )
        if code >= 500:
            raise BarchartTransient(
                f"{where}: Barchart server error, retry later{detail}", http_status=http
            )
        raise BarchartError(
            f"{where}: the request was rejected, fix its parameters{detail}", http_status=http
        )


def make_client(settings: Settings, **kwargs: Any) -> BarchartClient:
    """The client for ``settings`` (``kwargs``: a session, clock or sleep for tests)."""
    return BarchartClient(settings, **kwargs)


__all__ = [
    "API_KEY_ENV",
    "BarchartClient",
    "BarchartBadAnswer",
    "BarchartEmpty",
    "BarchartError",
    "BarchartQuotaExhausted",
    "BarchartRateLimited",
    "BarchartTransient",
    "ENDPOINT",
    "SCHEMA",
    "make_client",
    "parse_chain",
    "scrub",
]
