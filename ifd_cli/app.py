"""The `ifd` command.

The CLI is an edge of the system, like flows/: it composes ifd_core with the warehouse and the
expectations, importing them lazily so that `ifd --help` stays fast.

Exit codes (stable, for scripts):
  0 success · 1 bad or rejected data (refused, quarantined) · 2 usage error
  3 refused by the budget gate · 4 warehouse busy · 5 outside service failed
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_BUDGET, EXIT_BUSY, EXIT_SERVICE = 0, 1, 2, 3, 4, 5

app = typer.Typer(
    name="ifd",
    help=(
        "IFD: institutional flow detection in CME NQ futures options.\n\n"
        "Exit codes: 0 ok, 1 bad or rejected data, 2 usage error, 3 refused by the budget gate, "
        "4 warehouse busy, 5 outside service failed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _settings(profile: str | None = None):
    from ifd_core.settings import ProfileError, get_settings

    try:
        return get_settings(profile)
    except ProfileError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # pydantic validation: unknown key, wrong type
        first = str(exc).splitlines()
        raise _fail("invalid configuration: " + " ".join(first[:3]), EXIT_USAGE) from None


def _lake(profile: str | None = None):
    from warehouse.lake import Lake

    return Lake(_settings(profile).data_dir)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def print_frame(df, fmt: str = "table", title: str | None = None) -> None:
    if fmt == "csv":
        sys.stdout.write(df.write_csv())
    elif fmt == "json":
        sys.stdout.write(json.dumps(df.to_dicts(), default=str, indent=1) + "\n")
    else:
        table = Table(title=title, show_lines=False)
        for c in df.columns:
            table.add_column(c, overflow="fold")
        for row in df.iter_rows():
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)


# --------------------------------------------------------------------------- config
@config_app.command("show")
def config_show(
    profile: Annotated[
        str | None, typer.Option(help="Named profile from config/profiles/.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective settings (defaults → profile → .env → environment), secrets masked."""
    from ifd_core.settings import available_profiles

    s = _settings(profile)
    payload = {"config_version": s.config_version(), **s.masked()}
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    out.print(
        f"[bold]profile[/]: {s.profile or '(none)'}   available: {', '.join(available_profiles())}"
    )
    out.print(f"[bold]config_version[/]: {payload['config_version']}")
    _print_tree(payload, "")


def _print_tree(d: dict, prefix: str) -> None:
    for k, v in d.items():
        if k == "config_version":
            continue
        if isinstance(v, dict):
            _print_tree(v, f"{prefix}{k}.")
        else:
            out.print(f"  {prefix}{k} = {v}", highlight=False)


# --------------------------------------------------------------------------- simulate
@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the DBN files.")],
    days: Annotated[int, typer.Option(min=1, help="Trading days to simulate.")] = 21,
    seed: Annotated[int, typer.Option(help="Random seed (output is deterministic per seed).")] = 7,
    start: Annotated[str | None, typer.Option(help="First trade date, YYYY-MM-DD.")] = None,
    scale: Annotated[
        float, typer.Option(min=0.01, help="Activity multiplier (20 ≈ 5 M MBO/day).")
    ] = 1.0,
    informed_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of flows followed by a move of the underlying (0 = no edge); "
            "default: setting simulator.informed_share.",
        ),
    ] = None,
    flows_per_day: Annotated[
        str | None,
        typer.Option(
            help="Institutional flows per planted session, N or A-B; "
            "default: setting simulator.flows_per_day."
        ),
    ] = None,
) -> None:
    """Write a SYNTHETIC NQ futures-options market as standard Databento DBN files.

    One file per trading day per schema (definition, statistics, mbo), planted institutional flows
    and decoys, and ground_truth.json beside them. Everything is labelled synthetic.
    """
    from dataclasses import replace

    from ifd_core.simulator.market import simulate_market
    from ifd_core.simulator.params import SimParams, parse_count_range

    start_date = _parse_date(start) if start else None
    try:
        params = SimParams.from_settings(_settings().simulator)
        if informed_share is not None:
            params = replace(params, informed_share=informed_share)
        if flows_per_day is not None:
            params = replace(params, flows_per_day=parse_count_range(flows_per_day))
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    with _progress() as prog:
        task = prog.add_task("simulating (synthetic)", total=days)
        try:
            summary = simulate_market(
                out_dir,
                days,
                seed,
                start=start_date,
                scale=scale,
                progress=lambda done, total: prog.update(task, completed=done),
                params=params,
            )
        except (FileExistsError, ValueError) as exc:
            raise _fail(str(exc), EXIT_USAGE) from None
    out.print(
        f"SYNTHETIC market written to {summary.out_dir}: {len(summary.days)} trading days "
        f"{summary.days[0]}..{summary.days[-1]}, {len(summary.files)} files, "
        f"{summary.planted} planted flows, {summary.decoys} decoys; truth: {summary.truth_path}",
        highlight=False,
    )
    out.print(
        f"  informed share {params.informed_share:g}, flows per session "
        f"{params.flows_per_day[0]}-{params.flows_per_day[1]}",
        highlight=False,
    )
    for schema, n in sorted(summary.records_by_schema.items()):
        out.print(f"  {schema}: {n:,} records", highlight=False)


def _parse_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _fail(f"not a date: {value!r} (use YYYY-MM-DD)", EXIT_USAGE) from None


# --------------------------------------------------------------------------- ingest
@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="DBN files (.dbn, .dbn.zst) or directories.")],
    origin: Annotated[
        str | None,
        typer.Option(
            help="Record origin: synthetic, replay, historical, live, backfill (default: detected)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load DBN files into the lake, validating every file (batch) before it is published.

    Definitions are loaded first. A file that fails validation is quarantined whole under
    data/quarantine/ with its reason; a file that cannot be read is refused. Re-ingesting a file
    replaces exactly its own rows.
    """
    from warehouse.migrations import CatalogBusy
    from warehouse.tables import ORIGINS

    if origin is not None and origin not in ORIGINS:
        raise _fail(f"--origin must be one of {', '.join(ORIGINS)}", EXIT_USAGE)
    files, skipped = _expand(paths)
    if not as_json:  # with --json the list is in the report, and stdout+stderr stay parseable
        for s in skipped:
            err.print(f"skipped (not a DBN file): {s}", highlight=False, soft_wrap=True)
    lake = _lake()
    try:
        report = _run_ingest(files, lake, origin)
    except CatalogBusy as exc:
        raise _fail(str(exc), EXIT_BUSY) from None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if as_json:
        doc = _report_json(report) | {"skipped_files": [str(s) for s in skipped]}
        typer.echo(json.dumps(doc, indent=1, default=str))
    else:
        _print_ingest(report)
    if not report.ok:
        bad = [f for f in report.files if not f.ok]
        for f in bad:
            err.print(f"[red]{f.status}[/]: {f.reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_DATA)


def _expand(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The DBN files to ingest, and what else the folders among ``paths`` hold (skipped).

    A path that does not exist is a usage error. A file named on the command line is always
    tried (what it is gets named when it is refused: a FIFO, a symlink loop…); in a folder,
    every entry that is neither a .dbn/.dbn.zst nor a folder walked into is listed as skipped.
    """
    import os

    def missing(p: Path) -> bool:
        try:
            os.lstat(p)  # a broken symlink or a loop exists: read_dbn names it
        except (FileNotFoundError, NotADirectoryError):
            return True
        except OSError:
            return False
        return False

    gone = [str(p) for p in paths if missing(p)]
    if gone:
        raise _fail(f"no such file or directory: {', '.join(gone)}", EXIT_USAGE)
    files: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        if os.path.isdir(p):  # False, not an error, where permission is denied: read_dbn says so
            for x in sorted(p.rglob("*")):
                if x.name.endswith((".dbn", ".dbn.zst")):
                    files.append(x)
                elif not (x.is_dir() and not x.is_symlink()):  # rglob walks real folders only
                    skipped.append(x)
        else:
            files.append(p)
    if not files:
        for s in skipped:
            err.print(f"skipped (not a DBN file): {s}", highlight=False, soft_wrap=True)
        raise _fail("no DBN files found in the given paths", EXIT_USAGE)
    return files, skipped


def _run_ingest(files: list[Path], lake, origin: str | None):
    from ifd_core.marketdata.dbn_files import DecodeLimits
    from warehouse.ingest import ingest_files

    limits = DecodeLimits.from_settings(_settings(None))
    with _progress() as prog:
        task = prog.add_task("ingesting", total=len(files))
        return ingest_files(
            files, lake, origin=origin, progress=lambda r: prog.advance(task), limits=limits
        )


def _report_json(report) -> dict:
    return {
        "run_id": report.run_id,
        "ok": report.ok,
        "files": [
            {
                "path": str(f.path),
                "status": f.status,
                "reason": f.reason,
                "schema": f.schema,
                "origin": f.origin,
                "rows": f.rows,
                "dates": f.dates,
                "skipped": f.skipped,
                "dq_failed": [
                    r["expectation"] + ":" + r["column"] for r in f.dq if not r["success"]
                ],
                "quarantine": str(f.quarantine_dir) if f.quarantine_dir else None,
            }
            for f in report.files
        ],
    }


def _print_ingest(report) -> None:
    table = Table(title=f"ingest run {report.run_id}")
    for c in ("file", "status", "schema", "origin", "rows", "dates", "checks"):
        table.add_column(c, overflow="fold")
    for f in report.files:
        rows = ", ".join(f"{t} {n:,}" for t, n in f.rows.items())
        passed = sum(r["success"] for r in f.dq)
        checks = f"{passed}/{len(f.dq)} passed" if f.dq else "-"
        dates = f"{f.dates[0]}..{f.dates[-1]}" if len(f.dates) > 1 else "".join(f.dates)
        status = {"loaded": "[green]loaded[/]", "quarantined": "[red]quarantined[/]"}.get(
            f.status, "[yellow]refused[/]"
        )
        table.add_row(f.path.name, status, f.schema or "", f.origin or "", rows, dates, checks)
    out.print(table)
    for f in report.files:
        if f.skipped:
            out.print(f"  {f.path.name}: skipped records of schemas IFD does not keep: {f.skipped}")


# --------------------------------------------------------------------------- sql
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away (`| head`)


# ignore_unknown_options: a query that starts with a "-- comment" is the argument, not an option.
@app.command(context_settings={"ignore_unknown_options": True})
def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="One read-only statement (SELECT, EXPLAIN) over the catalog; it may start "
            "with a -- comment."
        ),
    ],
    csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print CSV: nested values (lists, structs, maps) as JSON text, BLOB as "
            "lowercase hex.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON array of records: numbers exact (DECIMAL, HUGEINT too), timestamps, "
            "intervals, UUIDs and NaN/inf as strings, BLOB as a lowercase hex string.",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Interrupt the query after SECONDS and exit 4 (as for a busy warehouse: "
            "retry later or allow more time). Default: no limit (Ctrl-C stops it, exit 130).",
        ),
    ] = None,
) -> None:
    """Run read-only SQL against the warehouse catalog (views over the lake).

    Safe while flows ingest: the catalog is opened read-only and writers only add files.
    Tables: mbo, trades, instruments, statistics, open_interest, settlements, bbo, ohlcv,
    status, dq_results, dq_summary, ingest_log, cost_ledger; macros instruments_asof(d) and
    open_interest_asof(d). Files are readable only under the data root and the directories in
    warehouse.sql_allowed_directories; URLs (http://, s3://) and extensions are refused.
    Table output shows values as DuckDB writes them (nested ones as JSON, BLOB as hex).
    """
    try:
        _sql(query, "csv" if csv else "json" if as_json else "table", csv and as_json, timeout)
    except KeyboardInterrupt:
        raise _fail("interrupted (Ctrl-C); the query was stopped", EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


def _sql(query: str, fmt: str, both: bool, timeout: float | None) -> None:
    from warehouse.lake import Lake
    from warehouse.migrations import CatalogBusy
    from warehouse.sql import SqlError, SqlTimeout, json_document, query_text

    if both:
        raise _fail("choose one of --csv and --json", EXIT_USAGE)
    if timeout is not None and not timeout > 0:
        raise _fail(f"--timeout must be a positive number of seconds, got {timeout:g}", EXIT_USAGE)
    settings = _settings()
    try:
        df = query_text(
            Lake(settings.data_dir),
            query,
            as_json=fmt == "json",
            timeout_s=timeout,
            allowed_directories=settings.warehouse.sql_allowed_directories,
        )
    except SqlTimeout as exc:
        raise _fail(_esc(f"{exc}; allow more with --timeout SECONDS"), EXIT_BUSY) from None
    except SqlError as exc:
        code = EXIT_BUSY if str(exc).startswith("catalog busy") else EXIT_USAGE
        raise _fail(_esc(str(exc)), code) from None
    except CatalogBusy as exc:
        raise _fail(_esc(str(exc)), EXIT_BUSY) from None
    if fmt == "json":
        sys.stdout.write(json_document(df))
    elif fmt == "csv":
        sys.stdout.write(df.write_csv())
    else:
        _print_text_table(df)


def _print_text_table(df) -> None:
    """A table of strings, printed as they are (never read as rich markup)."""
    from rich.text import Text

    table = Table(show_lines=False)
    for c in df.columns:
        table.add_column(Text(c), overflow="fold")
    for row in df.iter_rows():
        table.add_row(*(Text("" if v is None else v) for v in row))
    out.print(table)


# --------------------------------------------------------------------------- fetch
@app.command()
def fetch(
    start: Annotated[str, typer.Option(help="Start (ISO date or datetime, UTC).")],
    end: Annotated[str, typer.Option(help="End, exclusive (ISO date or datetime, UTC).")],
    schema: Annotated[
        str, typer.Option(help="Databento schema, e.g. mbo, definition, statistics.")
    ],
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols, e.g. NQ.OPT,NQ.FUT.")],
    stype: Annotated[
        str, typer.Option("--stype", help="Symbology: raw_symbol, parent, ...")
    ] = "raw_symbol",
    approve: Annotated[
        bool, typer.Option("--approve", help="Approve a quote that needs approval.")
    ] = False,
    no_ingest: Annotated[
        bool, typer.Option("--no-ingest", help="Download only; don't ingest.")
    ] = False,
) -> None:
    """Download from Databento Historical behind the budget gate, then ingest.

    The request is quoted first (metadata.get_cost and record count); the quote and any spend go to
    the cost ledger. Refused with the quote in the message when the budget gate says no.
    """
    from ifd_core.marketdata.historical import (
        BudgetRefused,
        HistoricalError,
        add_breaker_sink,
        fetch_historical,
    )
    from warehouse.cost_ledger import LakeCostLedger
    from warehouse.migrations import ensure_migrated
    from warehouse.ops_events import BreakerIncidents

    settings = _settings()
    lake = _lake()
    ensure_migrated(lake)
    add_breaker_sink(str(lake.root), BreakerIncidents(lake, f"fetch-{dt.date.today()}"))
    incoming = lake.root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    try:
        result = fetch_historical(
            settings,
            LakeCostLedger(lake),
            start=start,
            end=end,
            schema=schema,
            symbols=[s.strip() for s in symbols.split(",") if s.strip()],
            stype_in=stype,
            approve=approve,
            out_dir=incoming,
        )
    except BudgetRefused as exc:
        raise _fail(str(exc), EXIT_BUDGET) from None
    except HistoricalError as exc:
        raise _fail(str(exc), EXIT_SERVICE) from None
    except FileExistsError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    quote = f"{result.record_count:,} records, quoted ${result.quote_usd:.2f}"
    out.print(f"downloaded {result.path} ({quote})", highlight=False)
    if not no_ingest:
        report = _run_ingest([result.path], lake, "historical")
        _print_ingest(report)
        if not report.ok:
            raise typer.Exit(EXIT_DATA)


# --------------------------------------------------------------------------- detection
ALGO_CHOICES = ("v3", "v1", "both")


def _algos(algo: str) -> tuple[str, ...]:
    if algo not in ALGO_CHOICES:
        raise _fail(f"--algo must be one of {', '.join(ALGO_CHOICES)}", EXIT_USAGE)
    return ("v3", "v1") if algo == "both" else (algo,)


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
        "features": json.loads(row["features"]),
        "episode_id": row.get("episode_id"),
    }


def _detect(lake, settings, day: dt.date, algos: tuple[str, ...]):
    from ifd_core.calendar import sessions_before
    from jobs.detect import NoDataForDate, detect_day
    from warehouse.migrations import CatalogBusy

    lookback = settings.analysis.v3.lookback_days
    with _progress() as prog:
        task = prog.add_task(f"baseline sessions for {day}", total=lookback)
        try:
            return detect_day(lake, day, settings, algos, progress=lambda d: prog.advance(task))
        except NoDataForDate as exc:
            earlier = sessions_before(day, 1)
            raise _fail(
                f"{exc}; ingest it first (the session before it is {earlier[0]})", EXIT_DATA
            ) from None
        except CatalogBusy as exc:
            raise _fail(str(exc), EXIT_BUSY) from None


@app.command()
def detect(
    date: Annotated[str, typer.Option(help="Trade date to detect on, YYYY-MM-DD.")],
    algo: Annotated[str, typer.Option(help="v3, v1 or both.")] = "v3",
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of signals.")] = False,
) -> None:
    """Run the FlowEngine and the detectors over one trade date from warehouse data only.

    Baselines come from the sessions before the date (never the date itself); pressure windows
    of those sessions are computed from the stored raw files when missing or stale. Signals are
    written to the `signals` table and labelled into `signal_outcomes`.
    """
    day = _parse_date(date)
    algos = _algos(algo)
    settings = _settings(profile)
    from warehouse.lake import Lake

    run = _detect(Lake(settings.data_dir), settings, day, algos)
    rows = [signal_json(r) for r in run.signals.sort("decision_ts", "algo").to_dicts()]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
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


@app.command()
def evaluate(
    truth: Annotated[Path, typer.Option(help="ground_truth.json written by `ifd simulate`.")],
    algo: Annotated[str, typer.Option(help="v3, v1 or both.")] = "both",
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
        raise _fail(f"cannot read ground truth {truth}: {exc}", EXIT_USAGE) from None
    if doc.get("origin") != "synthetic":
        raise _fail("ground truth must come from the simulator (origin synthetic)", EXIT_USAGE)
    algos = _algos(algo)
    settings = _settings(profile)
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


@app.command()
def chain(
    date: Annotated[str, typer.Option(help="Trade date, YYYY-MM-DD.")],
    at: Annotated[
        str, typer.Option(help="New York time of the snapshot, HH:MM (windows closed by then).")
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

    day = _parse_date(date)
    try:
        hh, mm = (int(x) for x in at.split(":"))
    except ValueError:
        raise _fail(f"--at must be HH:MM, got {at!r}", EXIT_USAGE) from None
    settings = _settings()
    from warehouse.lake import Lake

    try:
        snap, state = chain_snapshot(Lake(settings.data_dir), day, et_to_ns(day, hh, mm), settings)
    except NoDataForDate as exc:
        raise _fail(str(exc), EXIT_DATA) from None
    signals = run_chain_analyzers(snap, state=state)
    rows = [s.as_dict() for s in signals[:top]]
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
        return
    import polars as pl

    out.print(
        f"{day} {at} ET: underlying {snap.underlying_id} at {snap.underlying_price:,.2f}, "
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


# --------------------------------------------------------------------------- live
def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise _fail(f"--gateway must be HOST:PORT, got {value!r}", EXIT_USAGE)
    return host, int(port)


@app.command()
def gateway(
    data: Annotated[Path, typer.Option(help="Directory (or file) of DBN files to serve.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 13000,
    speed: Annotated[str, typer.Option(help="1, 10 (times real time) or max.")] = "max",
    drop_after: Annotated[
        int | None, typer.Option(help="Drop the connection once, after N records.")
    ] = None,
    drop_every: Annotated[
        int | None, typer.Option(help="Drop the connection every N records.")
    ] = None,
    replay_window_s: Annotated[
        float | None, typer.Option(help="Refuse intraday replay older than this (seconds).")
    ] = None,
    outage_s: Annotated[
        float, typer.Option(help="Market time a reconnect without replay misses after a drop.")
    ] = 0.0,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Serve stored DBN files over the Databento live protocol on loopback (a replay gateway).

    The unmodified Databento Live client connects to it: authentication with the API key from
    the settings (IFD_DATABENTO__API_KEY), subscriptions with parent symbols, intraday replay from
    `start`, heartbeats, then the records in ts_recv order at the chosen speed. Use it to replay
    stored days through `ifd live`, and to test reconnects with --drop-after / --drop-every.
    """
    from ifd_core.marketdata.replay_gateway import run_gateway

    settings = _settings(profile)
    key = settings.databento.api_key.get_secret_value()
    if not key:
        raise _fail("set IFD_DATABENTO__API_KEY: the gateway accepts that key only", EXIT_USAGE)
    if speed == "max":
        pace = None
    else:
        try:
            pace = float(speed)
        except ValueError:
            raise _fail(f"--speed must be a number or max, got {speed!r}", EXIT_USAGE) from None
        if pace <= 0:
            raise _fail("--speed must be positive", EXIT_USAGE)
    if not data.exists():
        raise _fail(f"{data}: no such file or directory", EXIT_USAGE)

    def ready(bound: int) -> None:
        err.print(f"replay gateway serving {data} on {host}:{bound} (speed {speed})")

    try:
        stats = run_gateway(
            data, [key], host, port, pace, drop_after, drop_every, replay_window_s, outage_s,
            on_ready=ready,
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    err.print(
        f"replay gateway stopped: {stats.connections} connections, {stats.sessions_completed} "
        f"sessions served to the end, {stats.records_sent:,} records, {stats.drops} drops, "
        f"{stats.auth_failures} refused keys",
        highlight=False,
    )


@app.command()
def live(
    gateway: Annotated[str, typer.Option("--gateway", help="Live gateway HOST:PORT.")],
    date: Annotated[
        str | None,
        typer.Option(
            help="Stream this trade date (YYYY-MM-DD) from its session start and stop after it. "
            "Without it the run follows the feed, date after date."
        ),
    ] = None,
    exit_on_end: Annotated[
        bool, typer.Option(help="Stop when the gateway ends the session.")
    ] = False,
    algo: Annotated[str, typer.Option(help="v3, v1 or both.")] = "both",
    trade: Annotated[
        bool,
        typer.Option(
            help="Trade the routed signals: paper at the end of each date, or through IB as "
            "they are decided when execution.broker=ib."
        ),
    ] = True,
    confirm_live: Annotated[
        bool,
        typer.Option(
            "--confirm-live",
            help="Consent to trading a real-money IB account (also needs ib.live_trading_enabled).",
        ),
    ] = False,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Run the FlowEngine on the live feed: windows, signals, gaps and incidents to the lake.

    The stream is captured to a DBN file per trade date and the lake is written in micro-batches
    with a checkpoint after each; SIGTERM or Ctrl-C flushes and exits, and the same command
    resumes from the checkpoint without losing or repeating anything. At the end of a date the
    capture is ingested and the day's files are the ones `ifd detect` would write. Against the
    replay gateway (`ifd gateway`), --exit-on-end stops when it has served all its days.
    """
    import signal

    from ifd_core.marketdata.live_source import LiveFeedError
    from jobs.live.dates import WarehouseUnavailable
    from jobs.live.runner import BrokerNotReady, LiveOptions, LiveRunner
    from warehouse.lake import Lake

    host, port = _host_port(gateway)
    settings = _settings(profile)
    day = _parse_date(date) if date else None
    opts = LiveOptions(
        host, port, day=day, exit_on_end=exit_on_end, algos=_algos(algo), trade=trade,
        confirm_live=confirm_live,
    )  # fmt: skip
    runner = LiveRunner(
        Lake(settings.data_dir), settings, opts, progress=lambda m: err.print(m, highlight=False)
    )
    handler = lambda *_: runner.stop()  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = runner.run()
    except BrokerNotReady as exc:
        raise _fail(str(exc), EXIT_USAGE if exc.live_refused else EXIT_SERVICE) from None
    except (LiveFeedError, WarehouseUnavailable) as exc:
        raise _fail(str(exc), EXIT_SERVICE) from None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    _print_live(summary, as_json)


def _print_live(summary, as_json: bool) -> None:
    import numpy as np

    lat = np.array(summary.decision_latency_ns, dtype=float) / 1e6
    doc = {
        "run_id": summary.run_id,
        "ended": summary.ended,
        "stopped": summary.stopped,
        "resumed_after_records": summary.resumed_from,
        "days": [d.to_row() for d in summary.days],
        "gaps": [
            {
                "gap_id": g.gap_id,
                "status": g.status,
                "start_ns": g.start_ns,
                "end_ns": g.end_ns,
                "duplicates_removed": g.duplicates_removed,
            }
            for g in summary.gaps
        ],  # fmt: skip
        "incidents": summary.incidents,
        "late_records": summary.late_records,
        "halted": summary.halted,
        "decision_latency_ms": {
            "signals": len(lat),
            "p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99": float(np.percentile(lat, 99)) if len(lat) else None,
        },
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    if summary.halted:
        out.print(f"EMERGENCY STOP was on during this run: new entries refused ({summary.halted})",
                  highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    for d in doc["days"]:
        state = "finalized" if d["finalized"] else "checkpointed (resume with the same command)"
        cost = "" if d["live_cost_usd"] is None else f", live usage ${d['live_cost_usd']:,.2f}"
        out.print(
            f"{d['date']}: {d['records']:,} records ({d['bytes'] / 1e6:,.1f} MB{cost}), "
            f"{d['windows']:,} windows ({d['incomplete_windows']} incomplete), "
            f"{d['signals']} signals; {state}",
            highlight=False,
        )
    statuses: dict[str, int] = {}
    for g in doc["gaps"]:
        statuses[g["status"]] = statuses.get(g["status"], 0) + 1
    out.print(
        f"gaps: {len(doc['gaps'])} {statuses or ''}; incidents: {doc['incidents']}",
        highlight=False,
    )
    lm = doc["decision_latency_ms"]
    if lm["signals"]:
        out.print(
            f"decision latency over {lm['signals']} signals: p50 {lm['p50']:.2f} ms, "
            f"p99 {lm['p99']:.2f} ms (upper bound: from the oldest record of each chunk)",
            highlight=False,
        )


# --------------------------------------------------------------------------- trading
@app.command()
def halt(
    reason: Annotated[str, typer.Option(help="Why trading stops (kept in the history).")],
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Emergency stop: block every new position-opening order in every mode until `ifd resume`.

    Persisted under the data root, so running backtests, paper sessions, the live flow and the
    IB adapter see it at their next order. Exits (stops, targets, session-end flatten) still run.
    Works whatever data/control/halt.json holds: an unreadable file is kept aside next to it.
    """
    if not reason.strip():
        raise _fail("--reason must not be empty: say why trading stops", EXIT_USAGE)
    from ifd_core.trading.halt import EmergencyStop

    stop = EmergencyStop(_settings(profile).data_dir)
    try:
        change = stop.halt(reason, by="cli")
    except OSError as exc:
        raise _stop_write_failed(stop, "record the halt", exc) from None
    _said_kept_aside(stop, change)
    out.print(f"[bold red]HALTED[/]: {_esc(reason.strip())}. New orders are refused until "
              "`ifd resume`.", highlight=False, soft_wrap=True)  # fmt: skip


@app.command()
def resume(profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None) -> None:
    """Lift the emergency stop.

    An unreadable data/control/halt.json (which every reader treats as halted) is kept aside
    next to it and replaced by a not-halted state whose history records it.
    """
    from ifd_core.trading.halt import EmergencyStop

    stop = EmergencyStop(_settings(profile).data_dir)
    try:
        change = stop.resume(by="cli")
    except OSError as exc:
        raise _stop_write_failed(stop, "lift the halt", exc) from None
    _said_kept_aside(stop, change)
    if change:
        out.print("trading resumed: new orders are allowed again")
    else:
        out.print("trading was not halted")


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _said_kept_aside(stop, change) -> None:
    if change.kept_as is not None:
        out.print(
            f"the emergency-stop file {stop.path} was unreadable ({change.unreadable}); kept as "
            f"{change.kept_as} for inspection",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _stop_write_failed(stop, what: str, exc: OSError) -> typer.Exit:
    st = stop.state()
    now = "trading is treated as HALTED" if st.halted else "trading is NOT halted"
    why = _esc(st.reason or "no halt recorded")
    where = _esc(str(stop.path))
    return _fail(f"could not {what} in {where}: {_esc(str(exc))}; {now} ({why})", EXIT_DATA)


def _metrics_for(result):
    from jobs.backtest import metrics_of

    return metrics_of(result)


def _units(metrics) -> dict:
    """What a report's accuracy counts: episodes (one outcome per flow), with both counts."""
    rows = metrics.to_dicts()
    return {
        "unit": "episodes",
        "n_episodes": {r["algo"]: r["episodes"] for r in rows},
        "n_signals": {r["algo"]: r["signals"] for r in rows},
    }


def _unit_line(units: dict) -> str:
    counts = ", ".join(
        f"{a} {units['n_episodes'][a]} episodes from {units['n_signals'][a]} signals"
        for a in units["n_episodes"]
    )
    return (
        "accuracy, its Wilson interval and the tests count signal episodes (one outcome per "
        f"flow: its first signal's label): {counts}"
    )


def _metrics_view(metrics):
    """The columns a trader reads first, rounded."""
    import polars as pl

    def pct(c):
        return (pl.col(c) * 100).round(1)

    return metrics.select(
        "algo",
        "signals",
        "episodes",
        pl.col("resolved").alias("resolved ep."),
        pct("accuracy").alias("acc %"),
        pl.format("[{}, {}]", pct("ci_low"), pct("ci_high")).alias("Wilson 95 %"),
        pct("neutral_share").alias("neutral %"),
        "trades",
        pct("win_rate").alias("win %"),
        pl.col("payoff_ratio").round(2).alias("payoff"),
        pl.col("count_wl_ratio").round(2).alias("W/L"),
        pl.col("profit_factor").round(2).alias("PF"),
        pl.col("net_pnl").round(2).alias("net P&L $"),
        pl.col("max_drawdown").round(2).alias("max DD $"),
        pl.col("daily_sharpe").round(2).alias("Sharpe"),
    )


@app.command()
def backtest(
    start: Annotated[str, typer.Option(help="First trade date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last trade date (YYYY-MM-DD).")],
    algo: Annotated[str, typer.Option(help="v3, v1 or both.")] = "both",
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    walk_forward: Annotated[
        bool, typer.Option("--walk-forward", help="Tune min confidence on rolling windows.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Backtest stored days: the FlowEngine and the paper executor, labels, metrics, Monte Carlo.

    Deterministic: two runs over the same days give identical fills and P&L. The ledger goes to
    the lake (orders, fills, positions, pnl_daily with mode=backtest) and an HTML report to
    data/reports/.
    """
    from ifd_core.trading.halt import EmergencyStop
    from jobs.backtest import run_backtest
    from reports.trading import write_backtest_report
    from warehouse.lake import Lake

    settings = _settings(profile)
    lake = Lake(settings.data_dir)
    s, e = _parse_date(start), _parse_date(end)
    stop = EmergencyStop(settings.data_dir)
    halted_at_start = stop.state()
    try:
        result = run_backtest(
            lake, settings, s, e, _algos(algo), walk_forward=walk_forward,
            progress=lambda m: err.print(m, highlight=False),
        )  # fmt: skip
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    halt_doc = _backtest_halt(halted_at_start, stop.state(), result.orders)
    metrics = _metrics_for(result)
    report = write_backtest_report(settings.data_dir, result, metrics)
    doc = {
        "run_id": result.run_id,
        "data": "SYNTHETIC" if result.synthetic else "real",
        "days": [d.isoformat() for d in result.days],
        "records": result.records,
        "seconds": round(result.seconds, 2),
        **_units(metrics),
        "metrics": {r["algo"]: r for r in metrics.to_dicts()},
        "monte_carlo": result.monte_carlo,
        "walk_forward": result.walk_forward,
        "report": str(report),
        "emergency_stop": halt_doc,
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    if halt_doc["active"]:
        out.print(halt_doc["line"], highlight=False, markup=False, soft_wrap=True)
    label = " (SYNTHETIC data: not evidence about real markets)" if result.synthetic else ""
    out.print(f"[bold]Backtest {result.run_id}[/]{label}: {len(result.days)} days, "
              f"{result.records:,} records in {result.seconds:.1f} s", highlight=False)  # fmt: skip
    print_frame(_metrics_view(metrics), title="Metrics per algorithm")
    out.print(_unit_line(_units(metrics)), highlight=False)
    for a, mc in result.monte_carlo.items():
        out.print(
            f"{a} Monte Carlo ({mc['paths']:,} paths): 5th pct terminal return "
            f"{mc['terminal_return_p5']:+.2%}, worst-5% drawdown {mc['worst5_drawdown']:.2%}, "
            f"P(loss) {mc['prob_loss']:.1%}, P(ruin) {mc['prob_ruin']:.1%}",
            highlight=False,
        )
    out.print(f"report: {report}", highlight=False)
    if halt_doc["active"]:
        out.print(halt_doc["line"], highlight=False, markup=False, soft_wrap=True)


def _backtest_halt(start, end, orders) -> dict:
    """The emergency stop as a backtest saw it: before and after the run, and the entries it
    refused (a halted backtest is not what the strategy would have done)."""
    import polars as pl

    refused = 0
    if {"purpose", "status", "reason"} <= set(orders.columns):
        refused = orders.filter(
            (pl.col("purpose") == "entry")
            & (pl.col("status") == "rejected")
            & pl.col("reason").str.starts_with("emergency stop:")
        ).height
    active = start.halted or end.halted or refused > 0
    reason = end.reason if end.halted else start.reason
    unreadable = end.unreadable or start.unreadable
    line = (
        f"EMERGENCY STOP ACTIVE during this backtest: {refused} entries refused ({reason}); "
        "the results are not what the strategy would have done"
        + ("" if unreadable else "; `ifd resume` lifts it")
    )
    return {
        "active": active,
        "halted_at_start": start.halted,
        "halted_at_end": end.halted,
        "reason": reason,
        "unreadable": unreadable,
        "entries_refused": refused,
        "line": line if active else None,
    }


@app.command()
def ab(
    start: Annotated[str, typer.Option(help="First trade date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last trade date (YYYY-MM-DD).")],
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """A/B test v3 against v1 on the same record stream: paired signals, the accuracy test
    (Fisher exact for small cells), a bootstrap CI of the daily P&L difference, and a verdict
    that says how many more resolved episodes are needed when the sample cannot decide. The
    unit is the signal episode: one flow seen in several windows is one outcome."""
    from jobs.ab import run_ab
    from reports.trading import write_ab_report
    from warehouse.lake import Lake

    settings = _settings(profile)
    try:
        res = run_ab(
            Lake(settings.data_dir), settings, _parse_date(start), _parse_date(end),
            progress=lambda m: err.print(m, highlight=False),
        )  # fmt: skip
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    metrics = _metrics_for(res.backtest)
    doc = res.to_dict()
    doc["report"] = str(write_ab_report(settings.data_dir, res, metrics))
    doc["metrics"] = {r["algo"]: r for r in metrics.to_dicts()}
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    label = " (SYNTHETIC data: not evidence about real markets)" if res.backtest.synthetic else ""
    out.print(f"[bold]A/B v3 vs v1[/]{label}: {len(res.backtest.days)} days", highlight=False)
    print_frame(_metrics_view(metrics), title="Both algorithms, same stream")
    out.print(_unit_line(_units(metrics)), highlight=False)
    t = res.test
    p = "n/a" if t.get("p_value") is None else f"{t['p_value']:.4f}"
    out.print(f"accuracy v3 - v1 over episodes: {t.get('test')} test, one-sided p = {p}; paired "
              f"episodes {res.pairs}, agreement {res.agreement}", highlight=False)  # fmt: skip
    if res.pnl_diff_ci:
        m, lo, hi = res.pnl_diff_ci
        out.print(f"daily P&L v3 - v1: {m:+.2f} $ [{lo:+.2f}, {hi:+.2f}] (bootstrap by day)")
    out.print(f"[bold]verdict[/]: {res.verdict.text}", highlight=False)
    out.print(f"report: {doc['report']}", highlight=False)


@app.command("extended-test")
def extended_test(
    start: Annotated[str | None, typer.Option(help="First session (default: the last N).")] = None,
    end: Annotated[str | None, typer.Option(help="Last session.")] = None,
    realtime: Annotated[
        str | None,
        typer.Option(help="Real-time mode: add the newest session to this test id's rows."),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """The two-week extended test: daily rows per algorithm, weekly and final reports pooled
    from counts, and PASS / FAIL(reasons) / INCONCLUSIVE(reasons) against settings.extended."""
    import polars as pl

    from jobs.extended import run_extended
    from reports.trading import write_extended_report
    from warehouse.lake import Lake

    settings = _settings(profile)
    try:
        res = run_extended(
            Lake(settings.data_dir), settings,
            start=_parse_date(start) if start else None, end=_parse_date(end) if end else None,
            realtime_test_id=realtime, progress=lambda m: err.print(m, highlight=False),
        )  # fmt: skip
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    doc = res.to_dict()
    doc["report"] = str(write_extended_report(settings.data_dir, res))
    fin = res.final.to_dicts()
    units = {
        "unit": "episodes",
        "n_episodes": {r["algo"]: r["episodes"] for r in fin},
        "n_signals": {r["algo"]: r["signals"] for r in fin},
    }
    doc.update(units)
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    label = " (SYNTHETIC data: not evidence about real markets)" if res.synthetic else ""
    out.print(f"[bold]Extended test {res.test_id}[/]{label}: {len(res.days)} sessions "
              f"({res.mode})", highlight=False)  # fmt: skip
    view = res.final.select(
        "algo", "days", "signals", "episodes", pl.col("resolved").alias("resolved ep."),
        (pl.col("accuracy") * 100).round(1).alias("acc %"),
        pl.format("[{}, {}]", (pl.col("accuracy_ci_low") * 100).round(1),
                  (pl.col("accuracy_ci_high") * 100).round(1)).alias("Wilson 95 %"),
        "trades", (pl.col("win_rate") * 100).round(1).alias("win %"),
        pl.col("payoff").round(2), pl.col("count_wl").round(2).alias("W/L"),
        pl.col("net_pnl").round(2).alias("net P&L $"),
        pl.col("cost_per_signal").round(2).alias("$/signal"),
        pl.col("latency_p95_ms").round(1).alias("p95 ms"),
        (pl.col("tick_coverage") * 100).round(1).alias("coverage %"),
    )  # fmt: skip
    print_frame(view, title="Final (pooled from daily counts)")
    out.print(_unit_line(units), highlight=False)
    out.print(f"[bold]verdict[/]: {res.verdict}", highlight=False)
    out.print(f"report: {doc['report']}", highlight=False)


# --------------------------------------------------------------------------- cost
cost_app = typer.Typer(help="Data cost against the monthly budget.", no_args_is_help=True)
app.add_typer(cost_app, name="cost")


@cost_app.command("report")
def cost_report(
    day: Annotated[
        str | None, typer.Option(help="Report day, YYYY-MM-DD (UTC, the ledger's; default today).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Book the month's subscription days up to DAY, then the month to date against the budget
    (status, projection, cost per actionable signal) and the HTML report (platform.md §4.11)."""
    from jobs.cost_report import NO_PRICES, month_to_date, summary_lines, write_cost_report
    from warehouse.cost_ledger import LakeCostLedger
    from warehouse.lake import Lake
    from warehouse.migrations import CatalogBusy
    from warehouse.sql import SqlError

    settings = _settings(profile)
    d = _parse_date(day) if day else dt.datetime.now(dt.UTC).date()
    lake = Lake(settings.data_dir)
    try:
        booked = LakeCostLedger(lake, settings.costs).book_subscriptions(d)
        mc = month_to_date(lake, settings, d)
    except (CatalogBusy, SqlError) as exc:
        raise _fail(str(exc), EXIT_BUSY) from None
    report = write_cost_report(settings.data_dir, mc)
    if not mc.prices_configured:
        err.print(f"[bold red]{NO_PRICES}[/]", highlight=False, soft_wrap=True)
    doc = {**mc.to_dict(), "report": str(report), "booked_subscription_entries": len(booked)}
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    out.print(f"[bold]Costs {mc.month}[/] to {d}: booked {len(booked)} subscription entries",
              highlight=False)  # fmt: skip
    for line in summary_lines(mc)[(0 if mc.prices_configured else 2) :]:
        out.print(line, highlight=False, markup=False)
    out.print(f"report: {report}", highlight=False)


# --------------------------------------------------------------------------- rollout
rollout_app = typer.Typer(
    help="The one rollout controller: challenger stage, promotions, rollbacks (§4.7).",
    no_args_is_help=True,
)
app.add_typer(rollout_app, name="rollout")


def _controller(profile: str | None):
    from jobs.rollout import RolloutController
    from warehouse.lake import Lake

    settings = _settings(profile)
    return RolloutController(Lake(settings.data_dir), settings)


def _decision_doc(d) -> dict:
    return {
        "action": d.action,
        "from": d.from_stage,
        "to": d.to_stage,
        "share": d.share,
        "failed": d.failed,
        "reason": d.reason,
    }


@rollout_app.command("status")
def rollout_status(
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The challenger's stage, executed share, and the last decision."""
    c = _controller(profile)
    st = c.state()
    last = c.events().row(-1, named=True)
    doc = {
        "challenger": c.s.challenger,
        "incumbent": c.s.incumbent,
        "stage": st.stage,
        "share": st.share,
        "since": st.since.isoformat(),
        "last_action": last["action"],
        "last_reason": last["reason"],
        "last_operator": last["operator"],
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    out.print(f"[bold]{doc['challenger']}[/] vs {doc['incumbent']}: [bold]{st.stage}[/] "
              f"share {st.share} % since {doc['since']}", highlight=False)  # fmt: skip
    out.print(f"last: {last['action']} by {last['operator']}: {last['reason']}", markup=False)


@rollout_app.command("promote")
def rollout_promote(
    to: Annotated[str | None, typer.Option(help="Target stage (default: the next one).")] = None,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Promote the challenger (an operator's approval); refused during a rollback cool-down."""
    from ifd_core.trading.rollout import RolloutRefused

    try:
        d = _controller(profile).promote(to=to)
    except RolloutRefused as exc:
        raise _fail(str(exc), 1) from None
    out.print(f"{d.from_stage} -> {d.to_stage} (share {d.share} %)", highlight=False)


@rollout_app.command("rollback")
def rollout_rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded with the event).")] = "",
    halt: Annotated[bool, typer.Option(help="HALTED instead of ROLLED_BACK.")] = False,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
) -> None:
    """Roll the challenger back now (share 0). Always executes; a running live flow stops the
    challenger's orders at its next flush."""
    d = _controller(profile).rollback(reason, halt=halt)
    out.print(f"{d.from_stage} -> {d.to_stage}: {d.reason}", highlight=False, markup=False)


@rollout_app.command("history")
def rollout_history(
    limit: Annotated[int, typer.Option(help="Last N events.")] = 20,
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The append-only decision history with the rules that failed."""
    ev = _controller(profile).events().tail(limit)
    rows = [
        {
            "ts": r["ts"].isoformat(timespec="seconds"),
            "action": r["action"],
            "from": r["from_stage"],
            "to": r["to_stage"],
            "share": r["share"],
            "failed": [x["id"] for x in json.loads(r["rules"] or "[]") if not x["passed"]],
            "reason": r["reason"],
            "operator": r["operator"],
        }
        for r in ev.iter_rows(named=True)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        out.print(f"{r['ts']} {r['action']:<8} {r['from'] or '-':>13} -> {r['to']:<13} "
                  f"{r['share']:>3} %  {r['operator']}: {r['reason']}",
                  highlight=False, markup=False)  # fmt: skip


# --------------------------------------------------------------------------- status
@app.command()
def status(
    profile: Annotated[str | None, typer.Option(help="Parameter profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Health of every component at a glance: feed, breakers, rollout, alerts, SLIs, cost."""
    from jobs.health import health_snapshot
    from warehouse.lake import Lake

    settings = _settings(profile)
    doc = health_snapshot(Lake(settings.data_dir), settings)
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    colour = {"ok": "green", "warning": "yellow", "critical": "red", "unknown": "dim"}
    for c in doc["components"]:
        out.print(f"[{colour[c['health']]}]{c['health']:<8}[/] [bold]{c['name']:<22}[/] "
                  f"{_esc(c['detail'])}", highlight=False, soft_wrap=True)  # fmt: skip


@app.command()
def repair(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Finish what a killed writer left: roll back its uncommitted lake transactions.

    Every writing command does this first on its own; run it to see what was rolled back. A
    transaction is dead when the lock its writer holds is free (the writer is gone); a live
    one on another machine of a shared lake is left alone. Nothing committed is ever undone.
    """
    from warehouse.lake import Lake

    lake = Lake(_settings(None).data_dir)
    before = lake.snapshot_id()
    rolled = lake.recover()
    doc = {"snapshot": before, "rolled_back": rolled}
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    for r in rolled:
        who = f"pid {r.get('pid', '?')} on {r.get('host', '?')}"
        line = f"rolled back: {r.get('unit')} (started {r.get('started', '?')} by {who})"
        out.print(line, highlight=False, markup=False)
    out.print(
        f"lake at snapshot {before}: {len(rolled)} unfinished unit(s) rolled back",
        highlight=False,
    )


# --------------------------------------------------------------------------- broker
ib_app = typer.Typer(help="Interactive Brokers (TWS / IB Gateway).", no_args_is_help=True)
app.add_typer(ib_app, name="ib")


@ib_app.command("check")
def ib_check(
    confirm_live: Annotated[
        bool,
        typer.Option(
            "--confirm-live",
            help="Accept a live (real-money) account; also needs "
            "IFD_IB__LIVE_TRADING_ENABLED=true.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Connect, and show what IFD would trade with: accounts, paper or live, open orders and
    positions (reconciled at every connect), orders IFD did not place. Sends nothing."""
    from ifd_core.broker.base import OrderRefused
    from ifd_core.broker.ib_broker import IBBroker, LiveTradingRefused

    settings = _settings()
    broker = IBBroker(settings.ib, confirm_live=confirm_live)
    try:
        rec = broker.connect()
    except LiveTradingRefused as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except OrderRefused as exc:
        raise _fail(str(exc), EXIT_SERVICE) from None
    try:
        doc = {
            "gateway": f"{settings.ib.host}:{settings.ib.port}",
            "accounts": list(rec.accounts),
            "account": broker.account,
            "mode": broker.mode,
            "open_orders": [u.__dict__ for u in rec.open_orders],
            "positions": {str(k): v for k, v in rec.positions.items()},
            "not_placed_by_ifd": list(rec.unknown_orders),
        }
    finally:
        broker.close()
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    kind = "REAL MONEY" if doc["mode"] == "ib" else "paper"
    out.print(f"connected to {doc['gateway']}: account {doc['account']} ({kind}); managed "
              f"{', '.join(doc['accounts'])}", highlight=False)  # fmt: skip
    out.print(f"IFD's open orders: {len(doc['open_orders'])}; positions of known contracts: "
              f"{doc['positions'] or 'none'}", highlight=False)  # fmt: skip
    for u in doc["not_placed_by_ifd"]:
        out.print(f"[yellow]not placed by IFD[/]: {u}", highlight=False)


@ib_app.command("record-underlying")
def ib_record_underlying(
    date: Annotated[
        str | None,
        typer.Option(help="Trade date whose futures to record (YYYY-MM-DD); default: today's."),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(min=0.0, help="Record this long; default: until the session's end."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Record the underlying futures' trades from IB market data into `underlying_ticks`: the
    labeller's prices where the lake's Databento trades of the future end (Databento
    unavailable). The futures are those under the date's options; read-only, sends no order."""
    import signal
    import threading
    import time

    from ifd_core.broker.ib_quotes import QuotesUnavailable
    from ifd_core.calendar import trade_date_bounds, trade_date_of
    from jobs.ib_underlying import futures_of, record_underlying
    from warehouse.lake import Lake
    from warehouse.migrations import ensure_migrated

    settings = _settings()
    lake = Lake(settings.data_dir)
    ensure_migrated(lake)
    day = _parse_date(date) if date else trade_date_of(time.time_ns())
    until = time.time() + seconds if seconds is not None else trade_date_bounds(day)[1] / 1e9
    futures = futures_of(lake, day)
    if not futures:
        raise _fail(f"no option of {day} is defined in the lake: ingest its definitions first",
                    EXIT_DATA)  # fmt: skip
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = record_underlying(lake, settings, until, futures, stopped=stop.is_set,
                                    progress=lambda m: err.print(m, highlight=False))  # fmt: skip
    except QuotesUnavailable as exc:
        raise _fail(str(exc), EXIT_SERVICE) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    doc = {"date": day.isoformat(), **summary.__dict__}
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    what = f"{summary.ticks} trades of {', '.join(summary.futures)} from IB"
    out.print(f"{day}: {what} in {summary.files} files; reconnects {summary.reconnects}",
              highlight=False)  # fmt: skip


# --------------------------------------------------------------------------- cockpit
@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port of the Prefect server (UI and API).")] = 4200,
    host: Annotated[str, typer.Option(help="Address the server listens on.")] = "127.0.0.1",
    activate: Annotated[
        bool, typer.Option(help="Activate every schedule (prefect.yaml keeps them inactive).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Flow runs at the same time.")] = 4,
) -> None:
    """The Prefect cockpit on one machine: server + every deployment of prefect.yaml, served.

    Starts a Prefect server (or reuses the one at PREFECT_API_URL / host:port) and serves all
    deployments from this process until Ctrl-C; each flow run is its own subprocess. Open the UI
    at http://HOST:PORT. For several machines use a work pool and workers (README).
    """
    from flows.serve import serve as run_serve

    try:
        run_serve(host, port, activate=activate, limit=limit,
                  say=lambda m: err.print(m, highlight=False))  # fmt: skip
    except RuntimeError as exc:
        raise _fail(str(exc), EXIT_SERVICE) from None
    except KeyboardInterrupt:
        err.print("stopped")


# --------------------------------------------------------------------------- demo
@app.command()
def demo(
    days: Annotated[
        int, typer.Option(min=21, help="Trading days to simulate (20 warm-up, then flows).")
    ] = 30,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    scale: Annotated[float, typer.Option(min=0.01, help="Simulator activity multiplier.")] = 0.3,
) -> None:
    """The main job on embedded default data: simulate → ingest → summary of what landed."""
    from flows.demo import run_demo

    code = run_demo(_settings(), days=days, seed=seed, scale=scale, console=out, progress=_progress)
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
