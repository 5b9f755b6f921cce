"""`ifd detect`, `evaluate` and `chain`: the detectors over stored trade dates, their score
against a simulated market's ground truth, and the chain analyzers on one snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_BUSY,
    EXIT_DATA,
    EXIT_USAGE,
    TIME_METAVAR,
    Algo,
    choice_option,
    clock_time,
    fail,
    load_settings,
    out,
    parse_algos,
    print_frame,
    progress_bar,
    session_date,
)

commands = typer.Typer()


def _iso_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (
        (
            dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).replace(
                microsecond=(ns % 1_000_000_000) // 1000
            )
        )
        .isoformat()
        .replace("+00:00", "Z")
    )


def signal_json(row: dict) -> dict:
    """The public signal contract (README "Signals"): stable keys, ISO-8601 UTC times."""
    features = json.loads(row["features"])
    return {
        "signal_id": row["signal_id"],
        "algo": row["algo"],
        "date": row["date"].isoformat(),
        "raw_symbol": row["raw_symbol"],
        "root": row["root"],
        "expiration": row["expiration"].isoformat() if row["expiration"] else None,
        "strike": row["strike"],
        "option_type": row["option_type"],
        "direction": row["direction"],
        "view": row["view"],
        "window_start": _iso_ns(row["window_start"]),
        "window_end": _iso_ns(row["window_end"]),
        "decision_time": _iso_ns(row["decision_ts"]),
        "confidence": round(row["confidence"], 6),
        "tier": row["tier"],
        "underlying_price": row["underlying_price"],
        "volume": row["volume"],
        "premium": round(row["premium"], 2),
        "features": features,
        "episode_id": row.get("episode_id"),
        # v1: where its open interest came from (databento, or barchart as the fallback).
        "oi_source": features.get("oi_source"),
    }


def with_cross_asset(lake, day: dt.date, rows: list[dict]) -> list[dict]:
    """Each v3 signal with ``cross_asset``: its episode's stored QQQ/NDX same-direction and
    opposite premium and confirmation, or ``{"status": "no cross-asset data"}``; v1 unchanged."""
    from reports.detection import CROSS_ASSET_COLUMNS, cross_asset_by_episode

    ids = [r["episode_id"] for r in rows if r["algo"] == "v3"]
    conf = {r["episode_id"]: r for r in cross_asset_by_episode(lake, day, ids).to_dicts()}
    for r in rows:
        if r["algo"] != "v3":
            continue
        c = conf.get(r["episode_id"])
        if c is None or c["trades"] is None:
            r["cross_asset"] = {"status": "no cross-asset data"}
        else:
            r["cross_asset"] = {"status": "stored", **{k: c[k] for k in CROSS_ASSET_COLUMNS}}
    return rows


def _detect(lake, settings, day: dt.date, algos: tuple[str, ...], workers: int | None = None):
    from ifd_core.calendar import sessions_before
    from jobs.detect import NoDataForDate, detect_day, warm_engine
    from jobs.fanout import inline_map, mapper_for
    from warehouse.migrations import CatalogBusy

    lookback = settings.analysis.v3.lookback_days
    with progress_bar() as prog, mapper_for(settings.compute, workers, warm_engine) as mapper:
        task = prog.add_task(f"baseline sessions for {day}", total=lookback)
        engine = prog.add_task(f"engine over {day} (records)", total=None, visible=False)

        def records(done: int) -> None:
            prog.update(engine, completed=done, visible=True)

        try:
            return detect_day(
                lake,
                day,
                settings,
                algos,
                progress=lambda d: prog.advance(task),
                records_done=records,
                mapper=None if mapper is inline_map else mapper,
            )
        except NoDataForDate as exc:
            earlier = sessions_before(day, 1)
            raise fail(
                f"{exc}; ingest it first (the session before it is {earlier[0]})", EXIT_DATA
            ) from None
        except CatalogBusy as exc:
            raise fail(str(exc), EXIT_BUSY) from None


@commands.command()
def detect(
    date: Annotated[
        dt.date,
        typer.Option(parser=session_date, metavar=DATE_METAVAR, help="Trade date (a CME session)."),
    ],
    algo: Annotated[Algo, choice_option(Algo, "Detectors to run.")] = Algo.v3,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of signals.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Earlier sessions whose windows are computed side by side: overrides "
            "compute.workers (IFD_COMPUTE__WORKERS); with runner inline, more than 1 means a "
            "local process pool. Results do not change.",
        ),
    ] = None,
) -> None:
    """Run the FlowEngine and the detectors over one trade date from warehouse data only.

    Baselines come from the sessions before the date (never the date itself); pressure windows
    of those sessions are computed from the stored raw files when missing or stale (side by
    side with --workers). Signals are written to the `signals` table and labelled into
    `signal_outcomes`.
    """
    day = date
    algos = parse_algos(algo)
    settings = load_settings(profile)
    from warehouse.lake import Lake

    lake = Lake(settings.data_dir)
    run = _detect(lake, settings, day, algos, workers)
    rows = [signal_json(r) for r in run.signals.sort("decision_ts", "algo").to_dicts()]
    if as_json:
        typer.echo(json.dumps(with_cross_asset(lake, day, rows), indent=1))
        return
    import polars as pl

    out.print(
        f"{day}: {run.records:,} records through the engine in {run.seconds:.1f}s; baselines "
        f"from {len(run.baseline_sessions)} of {settings.analysis.v3.lookback_days} sessions",
        highlight=False,
    )
    table = pl.DataFrame(rows).drop("features", "signal_id", "root", "date") if rows else None
    if table is None:
        out.print("no signals", highlight=False)
    else:
        print_frame(table, title=f"Signals on {day} ({', '.join(algos)})")


@commands.command()
def evaluate(
    truth: Annotated[Path, typer.Option(help="ground_truth.json written by `ifd simulate`.")],
    algo: Annotated[Algo, choice_option(Algo, "Detectors to score.")] = Algo.both,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
) -> None:
    """Score signals against a SIMULATED market's ground truth: planted flows found, signals on
    decoys, stray signals per session-hour. Dates without current signals are detected first."""
    import polars as pl

    from ifd_core.analysis.evaluation import evaluate as score
    from jobs.detect import stored_signals

    try:
        doc = json.loads(truth.read_text())
        events = doc["events"]
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"cannot read ground truth {truth}: {exc}", EXIT_USAGE) from None
    if doc.get("origin") != "synthetic":
        raise fail("ground truth must come from the simulator (origin synthetic)", EXIT_USAGE)
    algos = parse_algos(algo)
    settings = load_settings(profile)
    from warehouse.lake import Lake

    lake = Lake(settings.data_dir)
    days = sorted({dt.date.fromisoformat(e["date"]) for e in events})
    results = []
    for a in algos:
        sigs, hours = [], 0.0
        for day in days:
            found = stored_signals(lake, day, a)
            if found is None:
                _detect(lake, settings, day, tuple(algos))
                found = stored_signals(lake, day, a)
            sigs.append(found)
            span = (
                lake.scan("pressure_windows")
                .filter(pl.col("date") == day)
                .select(pl.col("window_end").max() - pl.col("window_start").min())
                .collect()
                .item()
            )
            hours += (span or 0) / 3.6e12
        day_events = [e for e in events if dt.date.fromisoformat(e["date"]) in days]
        results.append(score(pl.concat(sigs), day_events, a, hours).to_dict())
    if as_json:
        typer.echo(json.dumps(results, indent=1, default=str))
        return
    for r in results:
        out.print(
            f"[bold]{r['algo']}[/] (SYNTHETIC data): found {r['found']}/{r['planted_flows']} "
            f"planted flows, {r['signals_on_decoys']} signals on {r['decoys']} decoys, "
            f"{r['wrong_direction']} wrong-direction, {r['stray_signals']} stray signals "
            f"({(r['strays_per_session_hour'] or 0):.2f} per session-hour over "
            f"{r['session_hours']:.1f} h)",
            highlight=False,
        )
        if r["flows"]:
            print_frame(pl.DataFrame(r["flows"]), title=f"planted flows — {r['algo']}")


def underlying_symbol(lake, instrument_id: int, day) -> str:
    """The future's symbol (``NQM6``) from its latest definition on or before ``day``; the
    instrument id, said as such, when no definition names it."""
    import polars as pl

    defs = (
        lake.scan("instruments")
        .filter((pl.col("instrument_id") == instrument_id) & (pl.col("date") <= day))
        .sort("date", "ts_recv")
        .select("raw_symbol")
        .collect()
    )
    names = [s for s in defs["raw_symbol"].to_list() if s]
    return names[-1] if names else f"instrument {instrument_id}"


@commands.command()
def chain(
    date: Annotated[
        dt.date,
        typer.Option(parser=session_date, metavar=DATE_METAVAR, help="Trade date (a CME session)."),
    ],
    at: Annotated[
        dt.time,
        typer.Option(
            parser=clock_time,
            metavar=TIME_METAVAR,
            help="New York time of the snapshot (windows closed by then).",
        ),
    ] = "16:00",
    top: Annotated[int, typer.Option(min=1, help="Signals to show.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print the signals as JSON.")] = False,
) -> None:
    """Chain analyzers on one point-in-time snapshot: volume shock / dealer hedge, expiration
    pin map, risk (premium at stake, dealer gamma), expected value — combined and ranked.

    Scores are not probabilities: every analyzer is uncalibrated until fitted on history, and
    says so (probability null, trade plans only with a positive expected value net of costs).
    """
    from ifd_core.analysis.chain.pipeline import run_chain_analyzers
    from ifd_core.calendar import et_to_ns
    from jobs.detect import NoDataForDate, chain_snapshot

    day = date
    hh, mm = at.hour, at.minute
    settings = load_settings()
    from warehouse.lake import Lake

    lake = Lake(settings.data_dir)
    try:
        snap, state = chain_snapshot(lake, day, et_to_ns(day, hh, mm), settings)
    except NoDataForDate as exc:
        raise fail(str(exc), EXIT_DATA) from None
    underlying = underlying_symbol(lake, snap.underlying_id, day)
    signals = run_chain_analyzers(snap, state=state)
    rows = [s.as_dict() for s in signals[:top]]
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
        return
    import polars as pl

    out.print(
        f"{day} {at:%H:%M} ET: underlying {underlying} at {snap.underlying_price:,.2f}, "
        f"{snap.chain.height} options; data quality flags: {list(snap.data_quality) or 'none'}",
        highlight=False,
    )
    if not rows:
        out.print("no chain signals", highlight=False)
        return
    table = pl.DataFrame(
        [
            {
                "source": r["source"],
                "direction": r["direction"],
                "strikes": ", ".join(f"{k:g}" for k in r["strikes"]),
                "horizon_s": r["horizon_s"],
                "score": round(r["score"], 4),
                "expected_move": r["expected_move"],
                "probability": r["probability"],
            }
            for r in rows
        ]
    )
    print_frame(table, title="Chain signals, ranked (uncalibrated scores)")
