"""The detection report of one trade date: the signals of v1 and v3 over the underlying future's
price, the strike × time pressure heatmap of the option windows and the signals table.

Everything comes from the lake (``trades``, ``instruments``, ``pressure_windows`` and the
``signals_with_outcomes`` view); nothing is computed that the lake does not hold, and a day with
no signals or no windows still gives a page that says so. Times on the page are New York wall
time. A day whose data is synthetic carries the SYNTHETIC banner (``reports.kit``).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from reports.kit import figure_html, table_html, write_page
from warehouse.lake import Lake
from warehouse.sql import query

NY = "America/New_York"
PRICE_UNIT = 1e-9
SIGNALS_TITLE = "Signals over the underlying"
HEATMAP_TITLE = "Net aggressor pressure by strike and time"
TABLE_TITLE = "Signals"
CROSS_ASSET_TITLE = "Cross-asset confirmation (v3 episodes)"
NO_CROSS_ASSET = "no cross-asset data"
CROSS_ASSET_COLUMNS = ("same_premium", "opposite_premium", "confirmation")
DIRECTION_COLOURS = {"BUY": "#1a9850", "SELL": "#d73027"}
ALGO_SYMBOLS = {"v3": "circle", "v1": "diamond"}


def _ny(col: str, alias: str | None = None) -> pl.Expr:
    """Integer ns since the epoch (UTC) as naive New York wall time: plotly.js has no time zones,
    so the axis says which wall clock it shows."""
    return (
        pl.from_epoch(pl.col(col).cast(pl.Int64), time_unit="ns")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(NY)
        .dt.replace_time_zone(None)
        .alias(alias or col)
    )


def day_origins(lake: Lake, day: dt.date) -> set[str]:
    """Origins of the day's market data, windows and signals (synthetic, historical, live...)."""
    frames = [
        query(lake, f"SELECT DISTINCT origin FROM {t} WHERE date = ?", [day])
        for t in ("mbo", "pressure_windows", "signals")
    ]
    return {o for f in frames for o in f["origin"].to_list() if o}


def day_signals(lake: Lake, day: dt.date, algos: Sequence[str] = ("v3", "v1")) -> pl.DataFrame:
    """The day's signals of ``algos`` with their outcome label (null until labelled) and, for
    v1, the source of the open interest it used (``oi_source`` feature; null for v3)."""
    sig = query(
        lake,
        """
        SELECT signal_id, algo, raw_symbol, option_type, strike, expiration, direction, view,
               window_start, window_end, decision_ts, confidence, tier, volume, premium,
               underlying_id, underlying_price, label, move_at_horizon, features, episode_id
        FROM signals_with_outcomes WHERE date = ?
        ORDER BY decision_ts, algo, signal_id""",
        [day],
    )
    source = pl.col("features").str.json_path_match("$.oi_source").alias("oi_source")
    return sig.filter(pl.col("algo").is_in(list(algos))).with_columns(source).drop("features")


def cross_asset_by_episode(lake: Lake, day: dt.date, episode_ids: Sequence[str]) -> pl.DataFrame:
    """Per v3 episode of ``episode_ids`` (in that order, distinct): the QQQ/NDX same-direction and
    opposite premium and the confirmation stored by ``ifd crossasset confirm`` (the
    ``cross_asset_confirmations`` table), with ``cross_asset`` saying ``NO_CROSS_ASSET`` where
    no row exists (never a zero that was not measured)."""
    ids = list(dict.fromkeys(e for e in episode_ids if e is not None))
    conf = (
        lake.scan("cross_asset_confirmations")
        .filter((pl.col("date") == day) & (pl.col("algo") == "v3"))
        .select("episode_id", "view", *CROSS_ASSET_COLUMNS, "trades")
        .collect()
    )
    base = pl.DataFrame({"episode_id": ids}, schema={"episode_id": pl.String})
    return base.join(conf, on="episode_id", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("trades").is_null())
        .then(pl.lit(NO_CROSS_ASSET))
        .otherwise(pl.lit("stored"))
        .alias("cross_asset")
    )


def cross_asset_section(lake: Lake, day: dt.date, signals: pl.DataFrame) -> str:
    """The report's section: one row per v3 episode of the day, or why there is none."""
    v3 = signals.filter(pl.col("algo") == "v3").sort("decision_ts")
    head = (
        f"<h2>{CROSS_ASSET_TITLE}</h2><p>Per v3 episode, the QQQ/NDX options premium (USD) in "
        "its minutes that agrees with its view (<code>same_premium</code>: calls bought and "
        "puts sold for BULLISH) and against it, and <code>confirmation = same / (same + "
        "opposite)</code>, from <code>cross_asset_confirmations</code> (Massive, optional; "
        f"docs/operations.md). <i>{NO_CROSS_ASSET}</i>: no confirmation stored for it.</p>"
    )
    if v3.height == 0:
        return head + f"<p>No v3 episode on {day}.</p>"
    rows = cross_asset_by_episode(lake, day, v3["episode_id"].to_list())
    views = v3.unique("episode_id", keep="first").select("episode_id", pl.col("view").alias("v"))
    shown = rows.join(views, on="episode_id", how="left", maintain_order="left").select(
        "episode_id",
        pl.col("v").alias("view"),
        *[  # text, so an episode without data shows a dash, never a zero nobody measured
            pl.col(c).round(2 if c != "confirmation" else 4).cast(pl.String).fill_null("—")
            for c in CROSS_ASSET_COLUMNS
        ],
        "cross_asset",
    )
    return head + table_html(shown, f"{CROSS_ASSET_TITLE} on {day}")


def underlying_prices(lake: Lake, day: dt.date, underlying_ids: Sequence[int]) -> pl.DataFrame:
    """The underlying futures' price over the day: the last trade of each minute from ``trades``
    (columns underlying_id, symbol, ts (ns), price, source). Futures without any trade that day
    fall back to the windows' ``underlying_price`` at each window end (source ``windows``)."""
    schema = {
        "underlying_id": pl.UInt32,
        "symbol": pl.String,
        "ts": pl.Int64,
        "price": pl.Float64,
        "source": pl.String,
    }
    ids = sorted({int(i) for i in underlying_ids if i is not None})
    if not ids:
        return pl.DataFrame(schema=schema)
    names = query(
        lake,
        "SELECT instrument_id, any_value(raw_symbol) AS symbol FROM instruments "
        "WHERE date <= ? AND list_contains(?, instrument_id) GROUP BY ALL",
        [day, ids],
    )
    symbol = dict(zip(names["instrument_id"].to_list(), names["symbol"].to_list(), strict=True))
    trades = query(
        lake,
        """
        SELECT instrument_id AS underlying_id, ts_event // 60000000000 AS minute,
               max(ts_event) AS ts, last(price ORDER BY ts_event, ts_recv, sequence) AS price
        FROM trades WHERE date = ? AND list_contains(?, instrument_id)
        GROUP BY ALL ORDER BY 1, 2""",
        [day, ids],
    )
    parts = []
    if trades.height:
        parts.append(
            trades.select(
                pl.col("underlying_id").cast(pl.UInt32),
                pl.col("ts").cast(pl.Int64),
                (pl.col("price").cast(pl.Float64) * PRICE_UNIT).alias("price"),
                pl.lit("trades").alias("source"),
            )
        )
    missing = [i for i in ids if i not in set(trades["underlying_id"].to_list())]
    if missing:
        win = query(
            lake,
            """
            SELECT underlying_id, window_end AS ts, avg(underlying_price) AS price
            FROM pressure_windows
            WHERE date = ? AND list_contains(?, underlying_id) AND underlying_price IS NOT NULL
            GROUP BY ALL ORDER BY 1, 2""",
            [day, missing],
        )
        if win.height:
            parts.append(
                win.select(
                    pl.col("underlying_id").cast(pl.UInt32),
                    pl.col("ts").cast(pl.Int64),
                    pl.col("price").cast(pl.Float64),
                    pl.lit("windows").alias("source"),
                )
            )
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat(parts).with_columns(
        pl.col("underlying_id")
        .map_elements(lambda i: symbol.get(i) or f"id {i}", return_dtype=pl.String)
        .alias("symbol")
    )
    return out.select(list(schema)).sort("underlying_id", "ts")


def _hover(r: dict) -> str:
    label = r["label"] or "not labelled"
    return "<br>".join(
        [
            f"<b>{html.escape(r['raw_symbol'])}</b> {r['algo']} {r['direction']} ({r['view']})",
            f"decision {r['decision']:%H:%M:%S} New York",
            f"confidence {r['confidence']:.3f}, tier {r['tier'] or '—'}",
            f"volume {r['volume']}, premium ${r['premium']:,.0f}",
            *([f"open interest from {r['oi_source']}"] if r.get("oi_source") else []),
            f"outcome: {label}",
            f"id {r['signal_id']}",
        ]
    )


def signals_figure(prices: pl.DataFrame, signals: pl.DataFrame, day: dt.date) -> go.Figure:
    """The underlying's price as a line per future, each signal a marker at its decision time
    and the underlying price it was decided at: colour = direction, symbol = algorithm."""
    fig = go.Figure()
    p = prices.with_columns(_ny("ts", "time"))
    for (sym, source), part in p.group_by(["symbol", "source"], maintain_order=True):
        how = "last trade per minute" if source == "trades" else "at window ends"
        fig.add_trace(
            go.Scatter(
                x=part["time"].to_list(),
                y=part["price"].to_list(),
                mode="lines",
                name=f"{sym} ({how})",
                line={"color": "#555", "width": 1},
            )
        )
    s = signals.with_columns(_ny("decision_ts", "decision"))
    for (algo, direction), part in s.group_by(["algo", "direction"], maintain_order=True):
        rows = part.to_dicts()
        fig.add_trace(
            go.Scatter(
                x=part["decision"].to_list(),
                y=part["underlying_price"].to_list(),
                mode="markers",
                name=f"{algo} {direction} ({part.height})",
                marker={
                    "color": DIRECTION_COLOURS.get(direction, "#444"),
                    "symbol": ALGO_SYMBOLS.get(algo, "square"),
                    "size": 11,
                    "line": {"width": 1, "color": "black"},
                },
                text=[_hover(r) for r in rows],
                customdata=[r["signal_id"] for r in rows],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{SIGNALS_TITLE} on {day}",
        xaxis_title="New York time",
        yaxis_title="underlying future price (points)",
        height=520,
    )
    return fig


def pressure_grid(lake: Lake, day: dt.date) -> pl.DataFrame:
    """Net aggressor-signed volume (buy_volume − sell_volume, contracts) per option right,
    strike and window start, summed over the roots and expirations that share the strike."""
    return query(
        lake,
        """
        SELECT "right", strike, window_start,
               CAST(sum(buy_volume) - sum(sell_volume) AS BIGINT) AS net,
               CAST(sum(volume) AS BIGINT) AS volume,
               max(window_end - window_start) AS span
        FROM pressure_windows WHERE date = ? AND "right" IN ('C', 'P') AND strike IS NOT NULL
        GROUP BY ALL ORDER BY 1, 2, 3""",
        [day],
    )


def heatmap_figure(grid: pl.DataFrame, day: dt.date) -> go.Figure:
    """Calls and puts in two panels on one time axis and one colour scale centred on zero."""
    # Every window of the day is a column (windows without a trade stay blank) and every traded
    # strike a row of equal height, so a cell never stretches over a gap.
    starts = sorted(set(grid["window_start"].to_list()))
    step = int(grid["span"].mode().min()) if grid.height else 0
    if starts and step > 0 and (starts[-1] - starts[0]) // step <= 2_000:
        starts = list(range(starts[0], starts[-1] + 1, step))
    times = pl.DataFrame({"ts": pl.Series(starts, dtype=pl.UInt64)}).select(_ny("ts"))["ts"]
    times = times.to_list()
    g = grid.with_columns(_ny("window_start", "time"))
    col = {t: i for i, t in enumerate(times)}
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "Calls: net contracts bought (+) or sold (−)",
            "Puts: net contracts bought (+) or sold (−)",
        ),
    )
    top = max((abs(v) for v in g["net"].to_list() if v is not None), default=1) or 1
    for row, right in ((1, "C"), (2, "P")):
        part = g.filter(pl.col("right") == right)
        strikes = sorted(set(part["strike"].to_list()))
        pos = {k: i for i, k in enumerate(strikes)}
        z: list[list[float | None]] = [[None] * len(times) for _ in strikes]
        vol: list[list[int | None]] = [[None] * len(times) for _ in strikes]
        for r in part.iter_rows(named=True):
            z[pos[r["strike"]]][col[r["time"]]] = r["net"]
            vol[pos[r["strike"]]][col[r["time"]]] = r["volume"]
        fig.add_trace(
            go.Heatmap(
                x=times,
                y=[f"{k:g}" for k in strikes],
                z=z,
                customdata=vol,
                coloraxis="coloraxis",
                name="calls" if right == "C" else "puts",
                hovertemplate="strike %{y}<br>window from %{x|%H:%M}<br>net %{z} contracts"
                "<br>volume %{customdata}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text="strike", type="category", row=row, col=1)
    fig.update_xaxes(title_text="window start, New York time", row=2, col=1)
    fig.update_layout(
        title=f"{HEATMAP_TITLE} on {day}",
        coloraxis={
            "colorscale": "RdBu",
            "cmid": 0,
            "cmin": -top,
            "cmax": top,
            "colorbar": {"title": "net contracts"},
        },
        height=760,
    )
    return fig


def signals_frame(signals: pl.DataFrame) -> pl.DataFrame:
    """The signals table as shown: New York decision time first, outcome last."""
    return signals.with_columns(_ny("decision_ts", "decision")).select(
        pl.col("decision").dt.strftime("%H:%M:%S").alias("decision (NY)"),
        "algo",
        "raw_symbol",
        "option_type",
        "strike",
        pl.col("expiration").cast(pl.String),
        "direction",
        "view",
        "confidence",
        "tier",
        "volume",
        "premium",
        "underlying_price",
        pl.col("oi_source").alias("OI source"),
        pl.col("label").fill_null("not labelled").alias("outcome"),
        "move_at_horizon",
        "signal_id",
    )


def write_detection_report(
    lake: Lake,
    data_dir: Path,
    day: dt.date,
    algos: Sequence[str] = ("v3", "v1"),
    *,
    title: str | None = None,
) -> Path:
    """``<data>/reports/detection-<day>.html``: the day's signals of ``algos`` over the
    underlying future, the strike × time pressure heatmap and the signals table."""
    algos = tuple(algos)
    signals = day_signals(lake, day, algos)
    grid = pressure_grid(lake, day)
    ids = set(signals["underlying_id"].to_list())
    ids |= set(
        query(lake, "SELECT DISTINCT underlying_id FROM pressure_windows WHERE date = ?", [day])[
            "underlying_id"
        ].to_list()
    )
    prices = underlying_prices(lake, day, sorted(i for i in ids if i is not None))
    origins = day_origins(lake, day)
    synthetic = "synthetic" in origins
    counts = {a: signals.filter(pl.col("algo") == a).height for a in algos}
    labels = signals.group_by("label").len().sort("label", nulls_last=True)
    outcome = ", ".join(f"{r['label'] or 'not labelled'} {r['len']}" for r in labels.to_dicts())
    intro = (
        f"<p>Trade date {day}; data origin: {html.escape(', '.join(sorted(origins)) or 'none')}. "
        f"Signals: {', '.join(f'{a} {n}' for a, n in counts.items())}"
        f"{f' (outcomes: {html.escape(outcome)})' if outcome else ''}. Times are New York.</p>"
    )
    fallback = signals.filter(pl.col("oi_source") == "barchart").height
    if fallback:
        intro += (
            f"<p><b>Open interest fallback: {fallback} v1 signal(s) used Barchart's open "
            "interest</b> (<code>barchart.oi_fallback</code>; Databento's statistics of this "
            "date held none), see the OI source column.</p>"
        )
    if prices.height == 0:
        intro += "<p><b>No price of the underlying future in the lake for this date.</b></p>"
    if grid.height == 0:
        intro += "<p><b>No pressure windows in the lake for this date.</b></p>"
    sections = [
        intro,
        f"<h2>{SIGNALS_TITLE}</h2><p>Line: the underlying future's last trade price per minute "
        "(<code>trades</code>; <code>pressure_windows.underlying_price</code> at window ends when "
        "the lake has no trade of it). Markers: each signal at its <code>decision_ts</code> and "
        "the <code>underlying_price</code> it was decided at; green BUY and red SELL (aggressor "
        "side in the option), circle v3 and diamond v1; hover for symbol, view, confidence and "
        "the triple-barrier outcome (<code>signal_outcomes.label</code>).</p>",
        figure_html(signals_figure(prices, signals, day)),
        f"<h2>{HEATMAP_TITLE}</h2><p>Per strike and 5-minute window "
        "(<code>pressure_windows.window_start</code>): <code>sum(buy_volume) − "
        "sum(sell_volume)</code>, contracts, over every root and expiration with that strike; "
        "calls (top) and puts (bottom) in separate panels, because buying calls and buying puts "
        "mean opposite views. Blue: net bought, red: net sold; blank: no trade. Unsigned "
        "volume (no aggressor) is left out.</p>",
        figure_html(heatmap_figure(grid, day)),
        table_html(signals_frame(signals), f"{TABLE_TITLE} ({', '.join(algos)}) on {day}")
        if signals.height
        else f"<h2>{TABLE_TITLE}</h2><p>No signal of {', '.join(algos)} on {day}.</p>",
    ]
    if "v3" in algos:
        sections.append(cross_asset_section(lake, day, signals))
    title = title or f"Detection {day} ({', '.join(algos)})"
    suffix = "" if set(algos) == {"v3", "v1"} else "-" + "-".join(algos)
    name = f"detection-{day.isoformat()}{suffix}.html"
    return write_page(data_dir, name, title, synthetic, sections)
