"""What every command module of the `ifd` command shares: exit codes, consoles, settings and lake
access, the progress bar, table printing and the parsing of common options.

Settings are loaded here, and so is logging configured: once per invocation, from
``--verbose``/``--quiet`` when given, else from the ``log_level`` of the settings the command
loads (its ``--profile`` included).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
from enum import Enum, StrEnum

import typer
from rich.console import Console
from rich.table import Table

# Stable, for scripts (listed in `ifd --help`).
EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_BUDGET, EXIT_BUSY, EXIT_SERVICE = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for a command stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away (`| head`)


class Algo(StrEnum):
    """``--algo``: which detectors run (typer lists the choices in --help and refuses others)."""

    v3 = "v3"
    v1 = "v1"
    both = "both"


ALGO_CHOICES = tuple(a.value for a in Algo)

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

log = logging.getLogger(__name__)


class _LoggingState:
    """The invocation's logging: the level the command line forces, and whether it is set."""

    override: str | None = None
    configured: bool = False
    quiet: bool = False  # --quiet: no progress bars or progress notes either


def start_invocation(level_override: str | None, quiet: bool = False) -> None:
    """Called by the app at each invocation (tests run many in one process): forget the last
    one's logging, and apply ``level_override`` (from --verbose/--quiet) at once if given."""
    _LoggingState.override = level_override
    _LoggingState.configured = False
    _LoggingState.quiet = quiet
    if level_override is not None:
        _configure_logging(level_override)


def rich_log_handler() -> logging.Handler:
    """IFD's log records through rich's handler on stderr: the time, the level in colour, the
    logger's name before the message (rich wraps a long one at the console's width)."""
    from rich.logging import RichHandler

    handler = RichHandler(
        console=err,  # the progress bars' console: records print above a live bar, not into it
        show_path=False,
        markup=False,
        rich_tracebacks=False,
        log_time_format="[%X]",
    )
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return handler


def _configure_logging(level: str) -> None:
    from ifd_core.logs import configure_logging

    try:
        configure_logging(level, rich_log_handler)
    except ValueError as exc:
        raise fail(f"invalid configuration: log_level: {exc}", EXIT_USAGE) from None
    _LoggingState.configured = True


def fail(message: str, code: int) -> typer.Exit:
    """Say what went wrong on stderr; the caller raises the returned exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings(profile: str | None = None):
    """The effective settings (a bad profile or value is a usage error); the first call of an
    invocation configures logging from their ``log_level`` unless the command line set it."""
    from ifd_core.settings import ProfileError, get_settings

    try:
        settings = get_settings(profile)
    except ProfileError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # pydantic validation: unknown key, wrong type
        first = str(exc).splitlines()
        raise fail("invalid configuration: " + " ".join(first[:3]), EXIT_USAGE) from None
    if not _LoggingState.configured:
        _configure_logging(settings.log_level)
    log.debug(
        "settings: profile %s, data root %s, log level %s",
        settings.profile or "(none)",
        settings.data_dir,
        _LoggingState.override or settings.log_level,
    )
    return settings


def open_lake(profile: str | None = None):
    from warehouse.lake import Lake

    return Lake(load_settings(profile).data_dir)


def progress_bar():
    """A progress bar on stderr, shown only on a terminal and not under --quiet."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal or _LoggingState.quiet,
    )


def note(message: str) -> None:
    """A progress note on stderr (a day done, a step begun), unless --quiet; printed above a
    live progress bar, and the only trace of progress where no bar is drawn (CI logs, files)."""
    if not _LoggingState.quiet:
        err.print(message, highlight=False, markup=False, soft_wrap=True)


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
            table.add_row(*(format_cell(v) for v in row))
        out.print(table)


def format_number(v: float) -> str:
    """A float for a person: 6 significant digits, never fewer than 2 decimals (a price keeps
    its cents), trailing zeros beyond those dropped — 0.796092, not 0.7960924868198468; 8181.00,
    not 8181.000000000001. The rule `ifd sql` applies in DuckDB (warehouse/sql.py); JSON and CSV
    keep full precision."""
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0.00"
    decimals = min(15, max(2, 5 - math.floor(math.log10(abs(v)))))
    text = f"{v:.{decimals}f}"
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def format_cell(v: object) -> str:
    """One cell of a table the CLI prints: empty for null, floats by `format_number` (inside
    lists too), anything else as its text."""
    if v is None:
        return ""
    if isinstance(v, float):
        return format_number(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(format_cell(x) for x in v) + "]"
    return str(v)


# Typed option values. Each is a typer ``parser``: a bad value raises typer.BadParameter, which
# typer reports as "Invalid value for '--x': ..." with the usage line, exit 2 (EXIT_USAGE).
DATE_METAVAR = "YYYY-MM-DD"
TIME_METAVAR = "HH:MM"


def iso_date(value: str | dt.date) -> dt.date:
    """A calendar date written YYYY-MM-DD."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (use {DATE_METAVAR})") from None


def session_date(value: str | dt.date) -> dt.date:
    """A CME trade date: a weekend or exchange holiday is refused by name, with the sessions
    around it, rather than sent on to fail as "no data, ingest it first"."""
    from ifd_core.calendar import is_trading_day, next_session, previous_trading_day

    day = iso_date(value)
    if not is_trading_day(day):
        raise typer.BadParameter(
            f"{day} is not a CME session ({day:%A}); the sessions around it are "
            f"{previous_trading_day(day)} and {next_session(day)}"
        )
    return day


def clock_time(value: str | dt.time) -> dt.time:
    """A wall-clock time written HH:MM (00:00 to 23:59)."""
    if isinstance(value, dt.time):
        return value
    hh, sep, mm = value.partition(":")
    digits = hh.isdigit() and mm.isdigit() and len(hh) <= 2 and len(mm) == 2
    if sep and digits and int(hh) < 24 and int(mm) < 60:
        return dt.time(int(hh), int(mm))
    raise typer.BadParameter(f"{value!r} is not a time of day (use {TIME_METAVAR}, 00:00-23:59)")


def check_range(start: dt.date | None, end: dt.date | None) -> None:
    """``--start`` after ``--end`` is a usage error, said as such (not an empty result)."""
    if start is not None and end is not None and start > end:
        raise fail(f"--start {start} is after --end {end}", EXIT_USAGE)


def require_databento_key(settings, needed_for: str) -> str:
    """The Databento API key, or a configuration error (exit 2): without a key nothing outside
    was tried, so it is not an outside failure (exit 5)."""
    key = settings.databento.api_key.get_secret_value().strip()
    if not key:
        raise fail(
            f"no Databento API key ({needed_for}): set IFD_DATABENTO__API_KEY or "
            "DATABENTO_API_KEY (environment or .env; docs/operations.md §Settings and profiles)",
            EXIT_USAGE,
        )
    return key


def enum_choice(kind: type[Enum]):
    """A typer ``parser`` for a choice among ``kind``'s values, with its own message.

    Typer (0.29) validates an ``Enum`` annotation through pydantic, whose message leaks into the
    usage error as "Value error, 'NOPE' is not one of ..."; this parser raises the same words
    without the prefix. Pair it with ``metavar=choices_metavar(kind)`` so --help lists them.
    """
    values = [m.value for m in kind]

    def parse(value: str | Enum) -> Enum:
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except ValueError:
            listed = ", ".join(repr(v) for v in values)
            raise typer.BadParameter(f"{value!r} is not one of {listed}") from None

    return parse


def choices_metavar(kind: type[Enum]) -> str:
    """``[A|B|C]``: the choices of ``kind`` as --help shows them."""
    return "[" + "|".join(str(m.value) for m in kind) + "]"


def enum_completion(kind: type[Enum]):
    """Shell completion for a choice option parsed by `enum_choice`."""
    return lambda incomplete="": [str(m.value) for m in kind if str(m.value).startswith(incomplete)]


def choice_option(kind: type[Enum], help: str, *names: str):
    """A ``typer.Option`` choosing one of ``kind``'s values: listed in --help, completed by the
    shell, refused with exit 2 and the choices (see `enum_choice`)."""
    return typer.Option(
        *names,
        parser=enum_choice(kind),
        metavar=choices_metavar(kind),
        autocompletion=enum_completion(kind),
        help=help,
    )


def parse_algos(algo: Algo | str) -> tuple[str, ...]:
    """--algo v3, v1 or both as the algorithms to run."""
    if algo not in ALGO_CHOICES:
        raise fail(f"--algo must be one of {', '.join(ALGO_CHOICES)}", EXIT_USAGE)
    return ("v3", "v1") if algo == "both" else (Algo(algo).value,)


def esc(text: str) -> str:
    """``text`` with rich markup escaped, for messages that quote user or file content."""
    from rich.markup import escape

    return escape(text)
