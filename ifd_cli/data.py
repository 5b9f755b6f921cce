"""`ifd simulate`, `ingest`, `fetch` and `sql`: data into the lake, and read back out.

Ingest validates every file before publishing it; fetch buys from Databento behind the
budget gate and ingests; sql reads the catalog read-only while writers run.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from typer.core import TyperCommand

from ifd_cli.common import (
    DATE_METAVAR,
    EXIT_BROKEN_PIPE,
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_DATA,
    EXIT_INTERRUPTED,
    EXIT_SERVICE,
    EXIT_USAGE,
    err,
    esc,
    fail,
    iso_date,
    load_settings,
    open_lake,
    out,
    progress_bar,
    require_databento_key,
)

commands = typer.Typer()


@commands.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the DBN files.")],
    days: Annotated[int, typer.Option(min=1, help="Trading days to simulate.")] = 21,
    seed: Annotated[int, typer.Option(help="Random seed (output is deterministic per seed).")] = 7,
    start: Annotated[
        dt.date | None, typer.Option(parser=iso_date, metavar=DATE_METAVAR, help="First date.")
    ] = None,
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

    start_date = start
    try:
        params = SimParams.from_settings(load_settings().simulator)
        if informed_share is not None:
            params = replace(params, informed_share=informed_share)
        if flows_per_day is not None:
            params = replace(params, flows_per_day=parse_count_range(flows_per_day))
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    with progress_bar() as prog:
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
            raise fail(str(exc), EXIT_USAGE) from None
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


@commands.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="DBN files (.dbn, .dbn.zst) or directories.")],
    origin: Annotated[
        str | None,
        typer.Option(
            help="Record origin: synthetic, replay, historical, live, backfill (default: detected)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Ingest files side by side on N workers (a local process pool, or Dask with "
            "IFD_COMPUTE__RUNNER=dask). Default: compute.workers of the settings' runner.",
        ),
    ] = None,
) -> None:
    """Load DBN files into the lake, validating every file (batch) before it is published.

    Definitions are loaded first. A file that fails validation is quarantined whole under
    data/quarantine/ with its reason; a file that cannot be read is refused. Re-ingesting a file
    replaces exactly its own rows.
    """
    from warehouse.migrations import CatalogBusy
    from warehouse.tables import ORIGINS

    if origin is not None and origin not in ORIGINS:
        raise fail(f"--origin must be one of {', '.join(ORIGINS)}", EXIT_USAGE)
    files, skipped = _expand(paths)
    if not as_json:  # with --json the list is in the report, and stdout+stderr stay parseable
        for s in skipped:
            err.print(f"skipped (not a DBN file): {s}", highlight=False, soft_wrap=True)
    lake = open_lake()
    try:
        report = _run_ingest(files, lake, origin, workers)
    except CatalogBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    from expectations.data_docs import publish_data_docs

    docs = publish_data_docs(lake.root)  # once per run (docs/operations.md, Reports over HTTP)
    if as_json:
        doc = _report_json(report) | {
            "skipped_files": [str(s) for s in skipped],
            "data_docs": str(docs.index),
        }
        typer.echo(json.dumps(doc, indent=1, default=str))
    else:
        _print_ingest(report)
        out.print(f"Great Expectations Data Docs: {docs.index}", highlight=False, soft_wrap=True)
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
        raise fail(f"no such file or directory: {', '.join(gone)}", EXIT_USAGE)
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
        raise fail("no DBN files found in the given paths", EXIT_USAGE)
    return files, skipped


def _run_ingest(files: list[Path], lake, origin: str | None, workers: int | None = None):
    from contextlib import nullcontext

    from ifd_core.marketdata.dbn_files import DecodeLimits
    from jobs.fanout import inline_map, mapper_for
    from warehouse.ingest import ingest_files

    settings = load_settings(None)
    limits = DecodeLimits.from_settings(settings)
    # docs/operations.md, "Scaling out": one worker is this process, file after file; one file
    # (what `ifd fetch` ingests) has nothing to run side by side, so no pool or cluster starts.
    fan_out = mapper_for(settings.compute, workers) if len(files) > 1 else nullcontext(inline_map)
    with fan_out as mapper, progress_bar() as prog:
        # The bar says what the run does, its setup included: before the first file it checks
        # the schema and starts Great Expectations (most of the wait; measured ~10-20 s).
        task = prog.add_task("setup", total=len(files))
        return ingest_files(
            files,
            lake,
            origin=origin,
            progress=lambda r: prog.advance(task),
            limits=limits,
            stage=lambda what: prog.update(task, description=esc(what)),
            mapper=None if mapper is inline_map else mapper,
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


class _SqlCommand(TyperCommand):
    """`ifd sql --help` ends with every view and macro of the catalog, from the one description
    of it (warehouse/descriptions.py), imported only when help is shown: polars and duckdb stay
    out of the CLI's start-up."""

    def format_help(self, ctx, formatter) -> None:
        if not getattr(self, "_views_listed", False):
            from warehouse.descriptions import MACROS, VIEWS
            from warehouse.tables import TABLES

            macros = ", ".join(doc.split("): ", 1)[0] + ")" for doc in MACROS.values())
            self.help = (
                f"{self.help or ''}\n\nLake tables: {', '.join(TABLES)}.\n\n"
                f"Views: {', '.join(VIEWS)}.\n\nTable macros: {macros}.\n\n"
                "What each view and column means: warehouse/README.md, or "
                '`ifd sql "SELECT table_name, column_name, comment FROM duckdb_columns()"`.'
            )
            self._views_listed = True
        super().format_help(ctx, formatter)


# ignore_unknown_options: a query that starts with a "-- comment" is the argument, not an option.
@commands.command(cls=_SqlCommand, context_settings={"ignore_unknown_options": True})
def sql(
    query: Annotated[
        str | None,
        typer.Argument(
            help="One read-only statement (SELECT, EXPLAIN) over the catalog; it may start "
            "with a -- comment. '-' reads it from standard input.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            metavar="PATH",
            allow_dash=True,
            help="Read the statement from PATH ('-' for standard input) instead of the argument.",
        ),
    ] = None,
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
    Files are readable only under the data root and the directories in
    warehouse.sql_allowed_directories; URLs (http://, s3://) and extensions are refused.
    Table output shows values as DuckDB writes them (nested ones as JSON, BLOB as hex), floating
    point numbers rounded for reading (6 significant digits, at least 2 decimals kept); --csv and
    --json keep full precision.
    """
    text = _query_text(query, file)
    try:
        _sql(text, "csv" if csv else "json" if as_json else "table", csv and as_json, timeout)
    except KeyboardInterrupt:
        raise fail("interrupted (Ctrl-C); the query was stopped", EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):  # no second error when Python flushes
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


def _query_text(query: str | None, file: Path | None) -> str:
    """The statement from the argument, --file PATH, or standard input ('-' for either)."""
    if query is not None and file is not None:
        raise fail("give the query as an argument or with --file, not both", EXIT_USAGE)
    if query is None and file is None:
        raise fail("no query: give it as an argument, with --file PATH, or - for stdin", EXIT_USAGE)
    source = str(file) if file is not None else query
    if source == "-":
        return sys.stdin.read()
    if file is None:
        return query
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(esc(f"cannot read --file {file}: {exc}"), EXIT_USAGE) from None


def _full_message(exc: Exception) -> str:
    """The refusal with DuckDB's whole text: "Did you mean ...", candidate columns and the
    caret under the error position follow its first line (warehouse.sql keeps one line)."""
    cause = exc.__cause__
    rest = str(cause).strip().splitlines()[1:] if cause is not None else []
    return "\n".join([str(exc), *(line for line in rest if line.strip())])


def _sql(query: str, fmt: str, both: bool, timeout: float | None) -> None:
    from warehouse.lake import Lake
    from warehouse.migrations import CatalogBusy
    from warehouse.sql import SqlError, SqlTimeout, json_document, query_text

    if both:
        raise fail("choose one of --csv and --json", EXIT_USAGE)
    if timeout is not None and not timeout > 0:
        raise fail(f"--timeout must be a positive number of seconds, got {timeout:g}", EXIT_USAGE)
    settings = load_settings()
    try:
        df = query_text(
            Lake(settings.data_dir),
            query,
            as_json=fmt == "json",
            rounded=fmt == "table",
            timeout_s=timeout,
            allowed_directories=settings.warehouse.sql_allowed_directories,
        )
    except SqlTimeout as exc:
        raise fail(esc(f"{exc}; allow more with --timeout SECONDS"), EXIT_BUSY) from None
    except SqlError as exc:
        code = EXIT_BUSY if str(exc).startswith("catalog busy") else EXIT_USAGE
        raise fail(esc(_full_message(exc)), code) from None
    except CatalogBusy as exc:
        raise fail(esc(str(exc)), EXIT_BUSY) from None
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


@commands.command()
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

    settings = load_settings()
    require_databento_key(settings, "Databento Historical needs it")
    lake = open_lake()
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
        raise fail(str(exc), EXIT_BUDGET) from None
    except HistoricalError as exc:
        raise fail(str(exc), EXIT_SERVICE) from None
    except (FileExistsError, ValueError) as exc:  # ValueError: a malformed request
        raise fail(str(exc), EXIT_USAGE) from None
    quote = f"{result.record_count:,} records, quoted ${result.quote_usd:.2f}"
    out.print(f"downloaded {result.path} ({quote})", highlight=False)
    if not no_ingest:
        report = _run_ingest([result.path], lake, "historical")
        _print_ingest(report)
        if not report.ok:
            raise typer.Exit(EXIT_DATA)
