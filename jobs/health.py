"""One read-only look at the health of every component, for ``ifd status`` (docs/operations.md
§Health, SLIs and alerts).

Everything comes from the lake (incidents, alerts, rollout events, latency, ledger) and the
emergency-stop file, so the answer is the same from any process and needs no running service;
nothing is written.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from ifd_core.settings import Settings
from ifd_core.trading.halt import EmergencyStop
from ifd_core.units import NS, ns_to_utc
from warehouse.lake import Lake
from warehouse.migrations import ensure_migrated
from warehouse.slis import day_slis, incident_episodes, latency_by_stage


def _open_episodes(lake: Lake) -> pl.DataFrame:
    inc = lake.scan("incidents").collect()
    if inc.height == 0:
        return inc.select("kind", "opened_at", "severity", "detail")
    eps = incident_episodes(inc).filter(~pl.col("done"))
    return eps.select("kind", "opened_at", "severity", "detail")


def _c(name: str, health: str, detail: str) -> dict:
    return {"name": name, "health": health, "detail": detail}


def health_snapshot(lake: Lake, settings: Settings, now: dt.datetime | None = None) -> dict:
    ensure_migrated(lake)
    now = now or dt.datetime.now(dt.UTC)
    comps: list[dict] = []
    stop = EmergencyStop(settings.data_dir).state()
    if stop.unreadable:
        comps.append(_c("emergency stop", "critical", f"HALTED (fails closed): {stop.reason}"))
    elif stop.halted:
        text = f"HALTED since {stop.since}: {stop.reason}; `ifd resume` lifts it"
        comps.append(_c("emergency stop", "critical", text))
    else:
        comps.append(_c("emergency stop", "ok", "not halted"))
    episodes = _open_episodes(lake)

    def open_of(prefix: str) -> pl.DataFrame:
        return episodes.filter(pl.col("kind").str.starts_with(prefix))

    stale = open_of("feed_stale")
    gaps = open_of("gap_unrecovered")
    if stale.height:
        comps.append(_c("feed", "critical", f"stale since {stale['opened_at'][0]}"))
    elif gaps.height:
        comps.append(_c("feed", "warning", f"{gaps.height} unrecovered gap(s) open"))
    else:
        lat = lake.scan("signal_latency").select(pl.col("emit_ns").max()).collect().item()
        seen = ns_to_utc(lat).isoformat(timespec="seconds") if lat else None
        text = f"last live signal {seen}" if seen else "no live run recorded"
        comps.append(_c("feed", "ok" if lat else "unknown", text))
    brk = open_of("breaker:")
    if brk.height:
        for r in brk.iter_rows(named=True):
            comps.append(
                _c(r["kind"], "critical" if r["severity"] == "critical" else "warning", r["detail"])
            )
    else:
        comps.append(_c("breakers", "ok", "all closed (no open breaker incident)"))

    ev = (
        lake.scan("rollout_events")
        .filter(pl.col("challenger") == settings.rollout.challenger)
        .sort("ts", "event_id")
        .collect()
    )
    if ev.height:
        last = ev.row(-1, named=True)
        bad = last["to_stage"] in ("ROLLED_BACK", "HALTED")
        comps.append(
            _c(
                "rollout",
                "critical" if bad else "ok",
                f"{settings.rollout.challenger} {last['to_stage']} share {last['share']} % "
                f"({last['action']}: {last['reason']})",
            )
        )
    else:
        comps.append(_c("rollout", "unknown", "no rollout started (SHADOW on first use)"))

    alerts = (
        lake.scan("alerts")
        .sort("ts", "alert_id")
        .collect()
        .group_by("episode_id", maintain_order=True)
        .last()
        .filter(pl.col("state") != "RESOLVED")
    )
    if alerts.height:
        sev = "critical" if (alerts["severity"] == "critical").any() else "warning"
        text = "; ".join(f"{r['rule']}[{r['subject']}]" for r in alerts.iter_rows(named=True))
        comps.append(_c("alerts", sev, f"{alerts.height} firing: {text}"))
    else:
        comps.append(_c("alerts", "ok", "none firing"))

    lat = latency_by_stage(lake, since_ns=int((now - dt.timedelta(days=1)).timestamp() * NS))
    dec = lat.filter(pl.col("stage") == "decision")
    if dec.height:
        p95 = float(dec["p95_ms"].max())
        a = settings.alerts
        h = (
            "critical"
            if p95 > a.latency_p95_critical_ms
            else ("warning" if p95 > a.latency_p95_warning_ms else "ok")
        )
        comps.append(
            _c("decision latency", h, f"p95 {p95:.1f} ms over 24 h ({int(dec['n'].sum())} signals)")
        )
    else:
        comps.append(_c("decision latency", "unknown", "no live signals in 24 h"))

    last_day = lake.scan("engine_runs").select(pl.col("date").max()).collect().item()
    if last_day is not None:
        _, cost, completeness, uptime, critical = day_slis(lake, last_day)
        a = settings.alerts
        up = (
            "unknown"
            if uptime is None
            else (
                "critical"
                if uptime < a.uptime_critical
                else "warning"
                if uptime < a.uptime_warning
                else "ok"
            )
        )
        comps.append(
            _c(
                "uptime (RTH)",
                up,
                f"{last_day}: "
                + ("not watched live" if uptime is None else f"{uptime * 100:.2f} %"),
            )
        )
        cp = (
            "unknown"
            if completeness is None
            else (
                "critical"
                if completeness < a.completeness_critical
                else "warning"
                if completeness < a.completeness_warning
                else "ok"
            )
        )
        pct = "n/a" if completeness is None else f"{completeness * 100:.1f} % of RTH minutes"
        comps.append(_c("data completeness", cp, f"{last_day}: {pct}"))
    else:
        comps.append(_c("engine", "unknown", "no day detected yet"))

    from jobs.cost_report import month_to_date

    mc = month_to_date(lake, settings, now.date())
    status = str(getattr(mc.status, "value", mc.status))
    ch = {"CRITICAL": "critical", "WARNING": "warning", "CAUTION": "warning"}.get(status, "ok")
    if not mc.prices_configured:
        ch = "warning"
    comps.append(
        _c(
            "cost",
            ch,
            f"{mc.month}: ${mc.spent:,.2f} of ${mc.budget:,.2f} "
            f"({mc.utilization * 100:.1f} %), projection ${mc.projection:,.2f}, {status}"
            + ("" if mc.prices_configured else "; NO PRICES CONFIGURED"),
        )
    )
    worst = max(
        (c["health"] for c in comps),
        key=["ok", "unknown", "warning", "critical"].index,
    )
    return {
        "at": now.isoformat(timespec="seconds"),
        "overall": worst,
        "halt": stop.to_json(),
        "components": comps,
    }
