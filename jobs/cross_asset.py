"""The cross-asset confirmation of a day's v3 episodes, stored beside the signals.

``confirm_day`` reads the day's v3 signals, groups them into episodes
(``ifd_core.analysis.cross_asset.episode_spans``), fetches the QQQ/NDX options trades of the
episodes' minutes from Massive (``jobs.massive_options.fetch_window``, one fetch per run of
overlapping minutes) and writes ``cross_asset_confirmations`` for the day as one commit. A failed
fetch raises before that commit: the day's confirmations are all new or all as before (the trades
of windows already fetched stay, each window whole).

Strike bands: NDX around the median NQ price the day's signals carry (NQ tracks the index within
its basis, well inside the band); any other underlying (QQQ) around its own last trade before
the window. ``reference`` overrides both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import polars as pl

from ifd_core.analysis.cross_asset import cross_asset_confirmation, episode_spans
from ifd_core.marketdata.historical import add_breaker_sink
from ifd_core.marketdata.massive_options import (
    API_KEY_ENV,
    ORIGIN,
    MassiveError,
    MassiveOptionsClient,
    make_client,
)
from ifd_core.settings import Settings
from jobs.massive_options import TABLE as TRADES
from jobs.massive_options import fetch_window
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.ops_events import AlertStore, BreakerIncidents, write_incident_rows
from warehouse.tables import TABLES, conform

log = logging.getLogger(__name__)

TABLE = "cross_asset_confirmations"
KEY = "massive"
ALGO = "v3"
_MINUTE_NS = 60 * 10**9


@dataclass(frozen=True)
class ConfirmSummary:
    day: dt.date
    episodes: int
    windows: int
    trades: int
    requests: int


def merged_windows(spans: pl.DataFrame) -> list[tuple[int, int]]:
    """The episodes' minutes ([first window start floored, last window end ceiled) each) merged
    where they overlap or touch: one fetch per merged window, no minute fetched twice."""
    out: list[tuple[int, int]] = []
    rows = sorted(
        (
            int(r["first_window_start"]) // _MINUTE_NS * _MINUTE_NS,
            -(-int(r["last_window_end"]) // _MINUTE_NS) * _MINUTE_NS,
        )
        for r in spans.iter_rows(named=True)
    )
    for start, end in rows:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _v3_signals(lake: Lake, day: dt.date) -> pl.DataFrame:
    return lake.scan("signals").filter((pl.col("date") == day) & (pl.col("algo") == ALGO)).collect()


def confirm_day(
    settings: Settings,
    lake: Lake,
    day: dt.date,
    *,
    reference: Mapping[str, float] | None = None,
    client: MassiveOptionsClient | None = None,
) -> ConfirmSummary:
    """Fetch and store the confirmation of every v3 episode of ``day``; see the module doc."""
    client = client or make_client(settings)
    signals = _v3_signals(lake, day)
    if signals.height == 0:
        if lake.files(TABLE, day):  # the episodes are gone (re-detected): so are their rows
            lake.replace_day(TABLE, day, TABLES[TABLE].empty(), KEY)
        return ConfirmSummary(day, 0, 0, 0, 0)
    spans = episode_spans(signals)
    nq = signals["underlying_price"].drop_nulls().median()
    windows = merged_windows(spans)
    requests = 0
    for start, end in windows:
        ref = dict(reference or {})
        for u in client.underlyings:
            if u in ref:
                continue
            if u == "NDX" and nq is not None:
                ref[u] = float(nq)
            else:
                ref[u] = client.last_trade_price(u, start)
                requests += 1
        got = fetch_window(settings, lake, start, end, reference=ref, client=client)
        requests += got.requests
    trades = (
        lake.scan(TRADES)
        .filter(pl.col("date") == day)
        .collect()
        .unique(["ticker", "ts", "sequence", "price", "size"], keep="first")
        .sort("ts", "ticker", "sequence", "source_sha")
    )
    conf = cross_asset_confirmation(spans, trades)
    lineage = ",".join(sorted(trades["source_sha"].unique().drop_nulls().to_list()))
    rows = conform(
        TABLE,
        conf.with_columns(
            pl.lit(day).alias("date"),
            pl.lit(ALGO).alias("algo"),
            pl.lit(",".join(client.underlyings)).alias("underlyings"),
            pl.lit(ORIGIN).alias("origin"),
            pl.lit(hashlib.sha256(lineage.encode()).hexdigest()[:16]).alias("source_sha"),
        ),
    )
    lake.replace_day(TABLE, day, rows, KEY)
    return ConfirmSummary(day, rows.height, len(windows), int(conf["trades"].sum()), requests)


INCIDENT_KIND = "massive:cross_asset"


@dataclass(frozen=True)
class ConfirmOutcome:
    """What the optional step did: ``ok`` (``summary`` set), ``skipped`` (no key) or ``failed``
    (Massive could not serve; ``error`` is its one-line message, nothing was replaced)."""

    day: dt.date
    status: str
    summary: ConfirmSummary | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["day"] = self.day.isoformat()
        if self.summary is not None:
            d["summary"]["day"] = self.summary.day.isoformat()
        return d


def run_confirmation(
    settings: Settings,
    lake: Lake,
    day: dt.date,
    *,
    run_id: str = "",
    client: MassiveOptionsClient | None = None,
    now: dt.datetime | None = None,
) -> ConfirmOutcome:
    """``confirm_day`` as an optional step after detection: skipped without a key, and a Massive
    failure is an outcome, not an exception, so the day's signals stand. As for the other outside
    sources, the breaker's transitions become incident rows, a failure is one open ``warning``
    incident (``massive:cross_asset``) and the ``breaker.open`` alert observes the breaker."""
    client = client or make_client(settings)
    if not client.enabled:
        log.info(
            "cross-asset confirmation skipped: %s is not set (Massive is optional)", API_KEY_ENV
        )
        return ConfirmOutcome(day, "skipped", error=f"{API_KEY_ENV} is not set")
    ensure_migrated(lake)
    run_id = run_id or f"crossasset-{day.isoformat()}"
    add_breaker_sink(str(lake.root), BreakerIncidents(lake, run_id))
    try:
        summary = confirm_day(settings, lake, day, client=client)
        outcome = ConfirmOutcome(day, "ok", summary=summary)
    except MassiveError as exc:
        at = now or dt.datetime.now(dt.UTC)
        log.warning("cross-asset confirmation of %s failed; the signals stand: %s", day, exc)
        write_incident_rows(
            lake,
            [
                {
                    "run_id": run_id,
                    "kind": INCIDENT_KIND,
                    "state": "open",
                    "severity": "warning",
                    "opened_at": at,
                    "resolved_at": None,
                    "detail": f"{day}: {exc}",
                }
            ],
        )
        outcome = ConfirmOutcome(day, "failed", error=str(exc))
    state = client.breaker_state()
    AlertStore(lake, settings, run_id).observe(
        [("breaker.open", client.breaker, float(state != "closed"), outcome.error or "")], ts=now
    )
    return outcome


__all__ = [
    "INCIDENT_KIND",
    "TABLE",
    "ConfirmOutcome",
    "ConfirmSummary",
    "confirm_day",
    "merged_windows",
    "run_confirmation",
]
