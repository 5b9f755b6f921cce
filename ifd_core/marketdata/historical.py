"""Budget-gated downloads from Databento Historical (docs/operations.md §Costs).

Historical data is billed per byte, and Databento quotes a request exactly before it is made
(``metadata.get_cost`` / ``get_record_count`` / ``get_billable_size``). So a download here is
always: quote the exact request, book the quote in the cost ledger, ask the budget gate with the
month's spend *from the ledger*, and only then download and book the spend. A refusal raises
``BudgetRefused`` before any byte is fetched.

The real ``databento.Historical`` client is used in production and in tests (pointed at a loopback
TLS server). Its failures are turned into one-line ``HistoricalError`` messages. A download is
never retried automatically (a second attempt may be billed again); only the read-only quote
calls are retried once after a connection or server error.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import databento
import pandas as pd
import requests
from databento.common.error import BentoClientError, BentoError, BentoHttpError

from ifd_core.ops.budget import Authorization, BudgetGate, CostLedger, Decision
from ifd_core.ops.resilience import (
    BreakerOpen,
    BreakerRegistry,
    Transition,
    guarded_read,
    retrying_reads,
)
from ifd_core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
TimeLike = pd.Timestamp | dt.datetime | dt.date | str | int
API_KEY_ENV = "IFD_DATABENTO__API_KEY"
CATEGORY = "historical"


class HistoricalError(RuntimeError):
    """Databento Historical could not serve a request; the message is one line with what to do."""

    def __init__(
        self, message: str, *, http_status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.request_id = request_id


class BudgetRefused(RuntimeError):
    """The budget gate did not approve a quoted request; nothing was downloaded."""

    def __init__(
        self, message: str, *, authorization: Authorization, quote_usd: float, record_count: int
    ) -> None:
        super().__init__(message)
        self.authorization = authorization
        self.decision = authorization.decision
        self.quote_usd = quote_usd
        self.record_count = record_count


@dataclass(frozen=True)
class Quote:
    """Databento's own price for one exact request."""

    cost_usd: float
    record_count: int
    billable_bytes: int | None


@dataclass(frozen=True)
class FetchResult:
    path: Path
    quote_usd: float
    record_count: int
    decision: Decision
    billable_bytes: int | None = None
    request_id: str = ""
    """Links the ledger's quote row and spend row of this download."""
    alerts: list[float] = field(default_factory=list)
    """Budget alert levels (shares of the monthly budget) this spend crossed."""


def _timestamp(value: TimeLike, name: str) -> pd.Timestamp:
    """A UTC timestamp; naive values are UTC, as Databento reads them."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} {value!r} is not a date or timestamp") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def file_name(dataset: str, schema: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Databento's batch naming: ``glbx-mdp3-YYYYMMDD-YYYYMMDD.<schema>.dbn.zst``.

    The second date is the last day with data in the end-exclusive range ``[start, end)``.
    """
    last = (end - pd.Timedelta(1, "ns")).date()
    prefix = dataset.lower().replace(".", "-")
    return f"{prefix}-{start:%Y%m%d}-{last:%Y%m%d}.{schema}.dbn.zst"


def _one_line(text: str) -> str:
    return " | ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _http_error(exc: BentoHttpError, action: str, gateway: str) -> HistoricalError:
    status = exc.http_status
    detail = _one_line(exc.message or "") or "no detail"
    hint = {
        401: f"authentication failed: the API key was rejected; check {API_KEY_ENV}",
        402: "payment required: check the billing details of the Databento account",
        403: "forbidden: the API key lacks permission for this dataset or schema",
        429: "rate limited: wait and retry later",
    }.get(status)
    if hint is None:
        hint = (
            "Databento server error: retry later"
            if status >= 500
            else "the request was rejected: fix its parameters"
        )
    rid = f" request-id {exc.request_id}" if exc.request_id else ""
    return HistoricalError(
        f"Databento Historical {action} failed with HTTP {status} at {gateway}{rid}: "
        f"{hint} ({detail})",
        http_status=status,
        request_id=exc.request_id,
    )


class HistoricalTransient(HistoricalError):
    """A server error or an unreachable gateway: the same read may succeed later."""


_REGISTRY: BreakerRegistry | None = None
_SINKS: dict[str, Callable[[Transition], None]] = {}


def breakers(settings: Settings | None = None) -> BreakerRegistry:
    """The process's breakers of the Historical API, one per gateway (docs/operations.md §Breakers
    and retries)."""
    global _REGISTRY
    if _REGISTRY is None:
        from ifd_core.settings import get_settings

        s = (settings or get_settings()).resilience.breaker

        def said(t: Transition) -> None:
            log.warning("breaker %s %s -> %s: %s", t.breaker, t.from_state, t.to_state, t.reason)
            for sink in list(_SINKS.values()):
                try:
                    sink(t)
                except Exception:  # a sink's failure must not fail the read it reports on
                    log.exception("breaker transition sink failed")

        _REGISTRY = BreakerRegistry(s, on_change=said)
    return _REGISTRY


def add_breaker_sink(name: str, sink: Callable[[Transition], None]) -> None:
    """Also hand every transition to ``sink`` (the caller that owns a lake makes them incident
    rows; this package does not write the lake). One sink per ``name``: re-adding replaces."""
    _SINKS[name] = sink


def reset_breakers() -> None:
    """Forget the process's breakers and sinks (tests; a new settings object)."""
    global _REGISTRY
    _REGISTRY = None
    _SINKS.clear()


def _read(action: str, gateway: str, call: Callable[[], T], settings: Settings | None) -> T:
    """An idempotent metadata read behind the gateway's breaker, retried with full jitter on
    transient failures only (4xx and TLS errors fail at once)."""
    from ifd_core.settings import get_settings

    s = settings or get_settings()
    breaker = breakers(s).get(f"databento_historical:{gateway}", exclude=(_Permanent,))
    retrying = retrying_reads(s.resilience.retry, retry_on=(HistoricalTransient,))

    def attempt() -> T:
        try:
            return _wrap(action, gateway, call)
        except HistoricalTransient:
            raise
        except HistoricalError as exc:  # permanent: not a dependency outage, not retried
            raise _Permanent(exc) from exc

    try:
        return guarded_read(breaker, retrying, attempt)
    except _Permanent as exc:
        raise exc.error from exc.error.__cause__
    except BreakerOpen as exc:
        raise HistoricalError(f"Databento Historical {action} not attempted: {exc}") from exc


class _Permanent(Exception):
    def __init__(self, error: HistoricalError) -> None:
        super().__init__(str(error))
        self.error = error


def _wrap(action: str, gateway: str, call: Callable[[], T], *, retries: int = 0) -> T:
    """Run ``call``; map client failures to ``HistoricalError``; retry transient ones if asked."""
    attempt = 0
    while True:
        try:
            return call()
        except BentoClientError as exc:  # 4xx: the same request would fail again
            raise _http_error(exc, action, gateway) from exc
        except BentoHttpError as exc:  # 5xx
            if attempt < retries:
                attempt += 1
                log.warning("retrying %s after server error: %s", action, _one_line(str(exc)))
                continue
            raise HistoricalTransient(str(_http_error(exc, action, gateway))) from exc
        except requests.exceptions.SSLError as exc:
            raise HistoricalError(
                f"Databento Historical {action} failed: TLS error talking to {gateway} "
                f"({_one_line(str(exc))}); check the gateway URL and CA bundle"
            ) from exc
        except requests.exceptions.RequestException as exc:
            if attempt < retries:
                attempt += 1
                log.warning("retrying %s after connection error: %s", action, exc)
                continue
            raise HistoricalTransient(
                f"Databento Historical {action} failed: cannot reach {gateway} "
                f"({type(exc).__name__}: {_one_line(str(exc))}); check the network and "
                "IFD_DATABENTO__HISTORICAL_GATEWAY"
            ) from exc
        except BentoError as exc:
            raise HistoricalError(
                f"Databento Historical {action} failed: {_one_line(str(exc))}"
            ) from exc


def _close(store: databento.DBNStore) -> None:
    """Release the file handle ``get_range(path=...)`` leaves open in the store it returns.

    ``DBNStore`` has no close(); its ``reader`` wraps the open file in a zstd stream reader that
    closes the file with itself. Closing it lets the partial file be unlinked (also on Windows)
    and avoids a ResourceWarning per download.
    """
    try:
        store.reader.close()
    except Exception:  # pragma: no cover - best effort; the GC closes it otherwise
        log.debug("could not close the downloaded DBNStore", exc_info=True)


def _publish(partial: Path, target: Path) -> None:
    """Give the downloaded file its final name, never overwriting an existing file."""
    try:
        os.link(partial, target)  # atomic and fails if target exists
    except FileExistsError as exc:
        raise FileExistsError(
            f"{target} appeared during the download; the paid-for data is kept in {partial}"
        ) from exc
    except OSError:  # a filesystem without hard links: check, then rename
        if target.exists():
            raise FileExistsError(
                f"{target} appeared during the download; the paid-for data is kept in {partial}"
            ) from None
        os.replace(partial, target)
        return
    partial.unlink()


def make_client(settings: Settings) -> databento.Historical:
    """A ``databento.Historical`` for the configured key and gateway (Databento's by default)."""
    key = settings.databento.api_key.get_secret_value().strip()
    if not key:
        raise HistoricalError(
            f"no Databento API key: set {API_KEY_ENV} (environment or .env) to a key from "
            "https://databento.com/portal/keys"
        )
    gateway = settings.databento.historical_gateway
    if gateway is None:
        return databento.Historical(key, gateway=databento.HistoricalGateway.BO1)
    if not urlsplit(gateway).netloc:
        # databento would turn "localhost:8000" into "https://8000" without complaint.
        raise HistoricalError(
            f"historical gateway {gateway!r} is not a URL: set IFD_DATABENTO__HISTORICAL_GATEWAY "
            "to e.g. https://127.0.0.1:8443"
        )
    return databento.Historical(key, gateway=gateway)


def quote_request(
    client: databento.Historical,
    *,
    dataset: str,
    start: TimeLike,
    end: TimeLike,
    schema: str,
    symbols: list[str],
    stype_in: str = "raw_symbol",
    settings: Settings | None = None,
) -> Quote:
    """Databento's cost, record count and billable size for exactly this request (no download)."""
    params: dict[str, Any] = dict(
        dataset=dataset, start=start, end=end, symbols=symbols, schema=schema, stype_in=stype_in
    )
    gw = str(client.gateway)
    cost = _read("cost quote", gw, lambda: client.metadata.get_cost(**params), settings)
    count = _read("record count", gw, lambda: client.metadata.get_record_count(**params), settings)
    size = _read("billable size", gw, lambda: client.metadata.get_billable_size(**params), settings)
    return Quote(cost_usd=float(cost), record_count=int(count), billable_bytes=int(size))


def _refusal(auth: Authorization, quote: Quote, what: str) -> str:
    """One line: the quote, the verdict with its numbers, and what the user can do."""
    if auth.decision is Decision.REQUIRE_APPROVAL:
        todo = "rerun with --approve (approve=True) to spend it"
    elif auth.decision is Decision.DEFER:
        todo = "alternatively narrow it (fewer symbols or days, a lighter schema)"
    else:
        todo = (
            "narrow the request or wait for next month "
            "(the monthly budget is IFD_BUDGET__MONTHLY_BUDGET)"
        )
    return (
        f"{what} quoted at ${quote.cost_usd:,.2f} for {quote.record_count:,} records: "
        f"{auth.decision.value}: {auth.reason.rstrip('.')}; {todo}; nothing was downloaded"
    )


def fetch_historical(
    settings: Settings,
    ledger: CostLedger,
    *,
    start: TimeLike,
    end: TimeLike,
    schema: str,
    symbols: list[str],
    stype_in: str = "raw_symbol",
    approve: bool = False,
    out_dir: Path,
    client: databento.Historical | None = None,
    filename: str | None = None,
) -> FetchResult:
    """Quote, gate, download and book one Historical ``get_range`` request.

    ``start``/``end`` bound the end-exclusive range (naive values are UTC). The file is written to
    ``out_dir/<filename>`` (Databento-style name by default) and must not exist yet: raw files are
    immutable. Raises ``BudgetRefused`` when the gate does not approve (the quote is still
    booked), ``HistoricalError`` when Databento fails or no API key is configured, ``ValueError``
    for a malformed request and ``FileExistsError`` when the target exists.
    """
    dataset = settings.databento.dataset
    t0, t1 = _timestamp(start, "start"), _timestamp(end, "end")
    if t1 <= t0:
        raise ValueError(f"end {t1.isoformat()} must be after start {t0.isoformat()}")
    try:
        schema = str(databento.Schema(schema))
        stype_in = str(databento.SType(stype_in))
    except Exception as exc:  # databento_dbn.DBNError is not a ValueError
        raise ValueError(f"invalid Databento request: {exc}") from exc
    if not symbols:
        raise ValueError("symbols must name at least one symbol (an empty list means ALL_SYMBOLS)")

    if filename is not None and (Path(filename).name != filename or filename.startswith(".")):
        raise ValueError(f"filename {filename!r} must be a plain file name, not a path")
    out_dir = Path(out_dir)
    target = out_dir / (filename or file_name(dataset, schema, t0, t1))
    if target.exists():
        raise FileExistsError(
            f"{target} already exists: raw files are immutable and a second download would be "
            "billed again; remove the file or pass another filename"
        )
    if client is None:
        client = make_client(settings)

    # The same normalized strings go to the quote and to the download, so what was priced is
    # exactly what is fetched.
    start_s, end_s = t0.isoformat(), t1.isoformat()
    shown = ",".join(symbols[:5]) + (f",… ({len(symbols)} symbols)" if len(symbols) > 5 else "")
    what = f"{dataset} {schema} {shown} [{start_s}, {end_s})"
    quote = quote_request(
        client,
        dataset=dataset,
        start=start_s,
        end=end_s,
        schema=schema,
        symbols=symbols,
        stype_in=stype_in,
        settings=settings,
    )

    gate = BudgetGate(settings.budget)
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    spent = ledger.spent_in_month(month)
    auth = gate.authorize(quote.cost_usd, CATEGORY, spent, approved=approve)
    request_id = uuid.uuid4().hex
    row = dict(
        category=CATEGORY,
        amount_usd=quote.cost_usd,
        decision=auth.decision.value,
        reason=auth.reason,
        dataset=dataset,
        schema=schema,
        symbols=",".join(symbols),
        stype_in=stype_in,
        range_start=start_s,
        range_end=end_s,
        record_count=quote.record_count,
        billable_bytes=quote.billable_bytes,
        request_id=request_id,
    )
    ledger.append([{**row, "entry_type": "historical_quote", "status": "quoted"}])
    if auth.decision is not Decision.APPROVE:
        raise BudgetRefused(
            _refusal(auth, quote, what),
            authorization=auth,
            quote_usd=quote.cost_usd,
            record_count=quote.record_count,
        )

    # Download under a temporary name and publish with a no-clobber hard link, so a crash or a
    # cut stream never leaves a half file under the final name.
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{target.name}.{request_id}.partial"
    try:
        store = _wrap(
            "download",
            str(client.gateway),
            lambda: client.timeseries.get_range(
                dataset=dataset,
                start=start_s,
                end=end_s,
                symbols=symbols,
                schema=schema,
                stype_in=stype_in,
                path=partial,
            ),
        )
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        # Booked at $0 with the error; if Databento billed a cut stream anyway, the invoice
        # reconciliation will show it.
        failed = {**row, "entry_type": "historical_spend", "status": "failed", "amount_usd": 0.0}
        failed["reason"] = _one_line(f"download failed: {exc}")[:500]
        ledger.append([failed])
        raise
    _close(store)
    # The stream completed, so the money is spent whatever happens to the file next.
    ledger.append([{**row, "entry_type": "historical_spend", "status": "spent"}])
    _publish(partial, target)

    alerts = gate.alerts_crossed(spent, spent + quote.cost_usd)
    if alerts:
        log.warning(
            "historical spend of $%.2f crossed budget alert level(s) %s of $%.2f this month",
            quote.cost_usd,
            ", ".join(f"{a:.0%}" for a in alerts),
            gate.monthly_budget,
        )
    return FetchResult(
        path=target,
        quote_usd=quote.cost_usd,
        record_count=quote.record_count,
        decision=auth.decision,
        billable_bytes=quote.billable_bytes,
        request_id=request_id,
        alerts=alerts,
    )
