"""Extended (two-week) test: pooling of daily rows and the PASS / FAIL / INCONCLUSIVE verdict.

Input is one row per (trade date, algo) with *daily* counts of episodes; every report pools the
counts and divides once, never averaging daily accuracies. The verdict is a gate: PASS only when
every criterion was measured and met, FAIL on a measured miss, INCONCLUSIVE when the sample is too
small or a metric was not measured. Pure (polars frames in, frames and a verdict out); the runner
is ``jobs/extended.py``. Criteria: docs/algorithms.md §15.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ifd_core.settings import ExtendedSettings
from ifd_core.trading.ab_stats import compare_accuracy, required_per_arm
from ifd_core.trading.metrics import COUNT_COLUMNS as METRIC_COUNTS
from ifd_core.trading.metrics import wilson_interval

# A daily row counts what a metrics table counts, and the critical incidents still open.
COUNT_COLUMNS = (*METRIC_COUNTS, "critical_incidents_open")
MONEY_COLUMNS = ("gross_win", "gross_loss", "net_pnl", "data_cost")
OPTIONAL_COLUMNS = ("latency_p95_ms", "uptime_rth", "tick_coverage")
DAILY_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "algo": pl.String(),
    **{c: pl.Int64() for c in COUNT_COLUMNS},
    **{c: pl.Float64() for c in MONEY_COLUMNS},
    **{c: pl.Float64() for c in OPTIONAL_COLUMNS},
}


def _validated(daily: pl.DataFrame) -> pl.DataFrame:
    """Reject rows that would pool into a wrong number rather than produce it quietly.

    The checks are the invariants of the daily row: resolved = correct + incorrect (neutral is
    reported apart, docs/algorithms.md §10), every episode is at most one of resolved / neutral, an
    episode holds at least one signal, breakeven trades are neither wins nor losses, and one row per
    (date, algo) — a duplicated day would be counted twice.
    """
    missing = [c for c in DAILY_SCHEMA if c not in daily.columns]
    if missing:
        raise ValueError(f"daily rows lack columns: {missing}")
    # Cast in place and keep any other column: callers group by derived keys (``week_start``).
    df = daily.with_columns([pl.col(c).cast(t) for c, t in DAILY_SCHEMA.items()])
    required = ["date", "algo", *COUNT_COLUMNS, *MONEY_COLUMNS]
    nulls = [c for c in required if df[c].null_count()]
    if nulls:
        raise ValueError(f"null values in columns that must be measured every day: {nulls}")
    dup = df.group_by("date", "algo").len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"more than one row per (date, algo): {dup.select('date', 'algo').rows()}")
    checks = {
        "negative count": pl.any_horizontal(pl.col(c) < 0 for c in COUNT_COLUMNS),
        "resolved != correct + incorrect": pl.col("resolved")
        != pl.col("correct") + pl.col("incorrect"),
        "resolved + neutral > episodes": pl.col("resolved") + pl.col("neutral")
        > pl.col("episodes"),
        "episodes > signals": pl.col("episodes") > pl.col("signals"),
        "wins + losses > trades": pl.col("wins") + pl.col("losses") > pl.col("trades"),
        "gross_win < 0 or gross_loss > 0": (pl.col("gross_win") < 0) | (pl.col("gross_loss") > 0),
        "uptime_rth or tick_coverage outside [0, 1]": pl.any_horizontal(
            pl.col(c).is_between(0.0, 1.0).not_() for c in ("uptime_rth", "tick_coverage")
        ),
    }
    for what, bad in checks.items():
        rows = df.filter(bad.fill_null(False))
        if rows.height:
            raise ValueError(f"{what} on {rows.select('date', 'algo').rows()}")
    return df


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null when den is 0 — a ratio of nothing is unknown, not 0 and not infinite."""
    return pl.when(den != 0).then(num / den).otherwise(None)


def _wilson(correct: int, resolved: int) -> tuple[float | None, float | None]:
    return wilson_interval(correct, resolved) or (None, None)


def pool(daily: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """One row per group of ``by`` with pooled counts and ratios computed once from the sums.

    Operational metrics cannot be pooled from daily summaries, so the conservative one is kept:
    ``latency_p95_ms`` is the worst (max) daily p95 — an upper bound of the window's p95, not the
    window's p95 itself; ``uptime_rth`` and ``tick_coverage`` are the worst (min) day. Days where a
    metric was not measured are counted in ``*_missing_days`` (latency only on days that had
    signals: a day without signals has no decision to time) so the verdict can refuse to pass them.
    ``critical_incidents_open`` is summed over days (an incident left open two days counts twice;
    the criterion is zero, so only zero versus non-zero matters). ``days`` counts distinct dates.
    """
    by = list(by)
    df = _validated(daily)
    unknown_keys = [c for c in by if c not in df.columns]
    if unknown_keys:
        raise ValueError(f"cannot group by missing columns: {unknown_keys}")
    aggs = [
        *(pl.col(c).sum() for c in COUNT_COLUMNS),
        *(pl.col(c).sum() for c in MONEY_COLUMNS),
        pl.col("latency_p95_ms").max(),
        pl.col("uptime_rth").min(),
        pl.col("tick_coverage").min(),
        pl.col("date").n_unique().cast(pl.Int64).alias("days"),
        pl.col("date").min().alias("first_date"),
        pl.col("date").max().alias("last_date"),
        ((pl.col("signals") > 0) & pl.col("latency_p95_ms").is_null())
        .sum()
        .cast(pl.Int64)
        .alias("latency_missing_days"),
        pl.col("uptime_rth").is_null().sum().cast(pl.Int64).alias("uptime_missing_days"),
        pl.col("tick_coverage").is_null().sum().cast(pl.Int64).alias("coverage_missing_days"),
    ]
    # Without keys: one total row (zeros when there is nothing to pool).
    pooled = df.group_by(by).agg(aggs).sort(by) if by else df.select(aggs)
    pooled = pooled.with_columns(
        _ratio(pl.col("correct"), pl.col("resolved")).alias("accuracy"),
        _ratio(pl.col("neutral"), pl.col("resolved") + pl.col("neutral")).alias("neutral_share"),
        _ratio(pl.col("wins"), pl.col("trades")).alias("win_rate"),
        _ratio(
            _ratio(pl.col("gross_win"), pl.col("wins")),
            _ratio(pl.col("gross_loss"), pl.col("losses")).abs(),
        ).alias("payoff"),
        _ratio(pl.col("wins"), pl.col("losses")).alias("count_wl"),
        _ratio(pl.col("data_cost"), pl.col("signals")).alias("cost_per_signal"),
    )
    cis = [_wilson(c, r) for c, r in zip(pooled["correct"], pooled["resolved"], strict=True)]
    return pooled.with_columns(
        pl.Series("accuracy_ci_low", [lo for lo, _ in cis], dtype=pl.Float64),
        pl.Series("accuracy_ci_high", [hi for _, hi in cis], dtype=pl.Float64),
    )


def weekly(daily: pl.DataFrame) -> pl.DataFrame:
    """Pool by algo and calendar week starting Monday; holidays simply have no row, so a short
    week (Thanksgiving) reports the sessions it had, and ``days`` shows how many."""
    monday = pl.col("date") - pl.duration(days=pl.col("date").dt.weekday() - 1)
    return pool(_validated(daily).with_columns(monday.alias("week_start")), ["algo", "week_start"])


def final(daily: pl.DataFrame) -> pl.DataFrame:
    """Pool by algo over the whole window — the rows the verdict is taken on."""
    return pool(daily, ["algo"])


_SETTINGS = ExtendedSettings()  # the defaults live in the settings schema, not here


@dataclass(frozen=True)
class Criteria:
    """PROPOSAL pass criteria for the candidate over the window (docs/algorithms.md §15).

    Built from the ``extended`` settings by ``from_settings``; the thresholds' defaults are the
    schema's. ``baseline_accuracy`` and ``power`` only size the sample the edge test needs (0.65
    vs 0.75 at one-sided alpha 0.05, power 0.8 -> about 260 resolved per arm); below that size a
    non-significant edge is "not shown yet", not "absent".
    """

    min_resolved: int = _SETTINGS.min_resolved  # resolved episodes
    min_accuracy: float = _SETTINGS.min_accuracy
    min_accuracy_lower: float = _SETTINGS.min_accuracy_lower
    min_edge_over_v1: float = _SETTINGS.min_edge_over_v1
    min_count_wl: float = _SETTINGS.min_count_wl
    min_payoff: float = _SETTINGS.min_payoff
    max_cost_per_signal: float = _SETTINGS.max_cost_per_signal
    max_latency_p95_ms: float = _SETTINGS.max_latency_p95_ms
    min_uptime_rth: float = _SETTINGS.min_uptime_rth
    min_tick_coverage: float = _SETTINGS.min_tick_coverage
    max_open_critical: int = 0
    alpha: float = 0.05
    baseline_accuracy: float = 0.65
    power: float = 0.8

    @classmethod
    def from_settings(cls, s: ExtendedSettings) -> Criteria:
        """The criteria an ``extended`` settings group sets (its window length is not one)."""
        return cls(**s.model_dump(exclude={"sessions"}))


@dataclass(frozen=True)
class Verdict:
    status: str  # "PASS" | "FAIL" | "INCONCLUSIVE"
    reasons: list[str]

    def __str__(self) -> str:
        return self.status if not self.reasons else f"{self.status}({'; '.join(self.reasons)})"


def edge_pvalue(
    correct_c: int, incorrect_c: int, correct_i: int, incorrect_i: int
) -> tuple[float, str]:
    """One-sided p-value that the candidate's accuracy exceeds the incumbent's, and the test used
    (``ab_stats.compare_accuracy``: Fisher's exact test when any cell is below 10, else the
    pooled two-proportion z-test)."""
    n_c, n_i = correct_c + incorrect_c, correct_i + incorrect_i
    if n_c == 0 or n_i == 0:
        raise ValueError("both arms need resolved signals")
    res = compare_accuracy(correct_c, n_c, correct_i, n_i, alternative="greater")
    return float(res["p_value"]), res["test"]


def verdict(
    daily: pl.DataFrame,
    criteria: Criteria = Criteria(),
    candidate: str = "v3",
    incumbent: str = "v1",
    *,
    operational: bool = True,
) -> Verdict:
    """Decide the extended test for ``candidate`` over every day in ``daily``.

    Order: too few resolved signals -> INCONCLUSIVE at once (no accuracy claim either way is
    possible). Otherwise every criterion is evaluated; any measured miss -> FAIL, listing all misses
    and then anything that was also unmeasured or underpowered; only unmeasured / underpowered ->
    INCONCLUSIVE; nothing -> PASS. ``operational=False`` judges the statistical criteria only
    (accuracy, edge, W/L, payoff), for replays that cannot measure latency or uptime, such as
    the calibration study; a real verdict always includes them.
    """
    c = criteria
    rows = final(daily)
    cand = rows.filter(pl.col("algo") == candidate)
    if cand.height == 0:
        return Verdict("INCONCLUSIVE", [f"no rows for {candidate}"])
    r = cand.row(0, named=True)
    if r["resolved"] < c.min_resolved:
        need = c.min_resolved - r["resolved"]
        return Verdict(
            "INCONCLUSIVE",
            [
                f"resolved episodes {r['resolved']} < {c.min_resolved} (need {need} more "
                f"resolved episodes; {r['signals']} signals in {r['episodes']} episodes)"
            ],
        )

    fails: list[str] = []
    unknown: list[str] = []

    acc, lo = r["accuracy"], r["accuracy_ci_low"]
    if acc < c.min_accuracy:
        fails.append(f"accuracy {acc:.3f} < {c.min_accuracy}")
    if lo < c.min_accuracy_lower:
        fails.append(f"accuracy Wilson lower bound {lo:.3f} < {c.min_accuracy_lower}")

    _edge(r, rows.filter(pl.col("algo") == incumbent), c, candidate, incumbent, fails, unknown)

    if r["trades"] == 0:
        unknown.append("no trades: count W/L and payoff not measured")
    elif r["wins"] + r["losses"] == 0:
        unknown.append(f"{r['trades']} trades all breakeven: count W/L and payoff not measured")
    elif r["losses"] > 0:  # with wins and no losses both ratios are unbounded: met
        if r["count_wl"] < c.min_count_wl:
            fails.append(f"count W/L {r['count_wl']:.2f} < {c.min_count_wl}")
        if r["payoff"] is None:
            fails.append(f"payoff undefined (0 wins, {r['losses']} losses) < {c.min_payoff}")
        elif r["payoff"] < c.min_payoff:
            fails.append(f"payoff {r['payoff']:.2f} < {c.min_payoff}")

    if not operational:
        return Verdict("FAIL", fails + unknown) if fails else _statistical(unknown)

    cps = r["cost_per_signal"]
    if cps is not None and cps >= c.max_cost_per_signal:
        fails.append(f"cost per signal ${cps:.2f} >= ${c.max_cost_per_signal:.2f}")

    _operational(r, c, fails, unknown)

    if fails:
        return Verdict("FAIL", fails + unknown)
    if unknown:
        return Verdict("INCONCLUSIVE", unknown)
    return Verdict("PASS", [])


def _edge(
    r: dict,
    inc_rows: pl.DataFrame,
    c: Criteria,
    candidate: str,
    incumbent: str,
    fails: list[str],
    unknown: list[str],
) -> None:
    """Accuracy edge over the incumbent: the point edge must reach the margin and the difference
    must be significant one-sided; a non-significant lead on a sample smaller than the test needs
    is INCONCLUSIVE, a non-significant lead on an adequate sample or no lead at all is FAIL."""
    if inc_rows.height == 0 or inc_rows["resolved"][0] == 0:
        unknown.append(f"no resolved {incumbent} signals to compare against")
        return
    i = inc_rows.row(0, named=True)
    diff = r["accuracy"] - i["accuracy"]
    p, test = edge_pvalue(r["correct"], r["incorrect"], i["correct"], i["incorrect"])
    what = (
        f"edge over {incumbent} {100 * diff:+.1f} pp "
        f"({candidate} {r['accuracy']:.3f} vs {i['accuracy']:.3f}, {test} p={p:.3g})"
    )
    need = required_per_arm(c.baseline_accuracy, c.min_accuracy, alpha=c.alpha, power=c.power)
    if p < c.alpha:
        if diff < c.min_edge_over_v1:
            fails.append(f"{what} < {100 * c.min_edge_over_v1:.0f} pp")
    elif diff > 0 and min(r["resolved"], i["resolved"]) < need:
        unknown.append(
            f"{what} not significant at {c.alpha}; underpowered: {r['resolved']}/{i['resolved']} "
            f"resolved episodes, need {need} per arm"
        )
    else:
        fails.append(f"{what} not significant at {c.alpha}")


def _operational(r: dict, c: Criteria, fails: list[str], unknown: list[str]) -> None:
    lat = r["latency_p95_ms"]
    if lat is None:
        unknown.append("no latency measured")
    else:
        if lat >= c.max_latency_p95_ms:
            fails.append(f"latency p95 {lat:.1f} ms >= {c.max_latency_p95_ms:.0f} ms")
        if r["latency_missing_days"]:
            unknown.append(f"latency not measured on {r['latency_missing_days']} days with signals")
    for name, col, floor, missing in (
        ("RTH uptime", "uptime_rth", c.min_uptime_rth, "uptime_missing_days"),
        ("tick coverage", "tick_coverage", c.min_tick_coverage, "coverage_missing_days"),
    ):
        value = r[col]
        if value is None:
            unknown.append(f"no {name} measured")
            continue
        if value < floor:
            fails.append(f"{name} {value:.4f} < {floor}")
        if r[missing]:
            unknown.append(f"{name} not measured on {r[missing]} of {r['days']} days")
    if r["critical_incidents_open"] > c.max_open_critical:
        fails.append(
            f"open CRITICAL incidents {r['critical_incidents_open']} > {c.max_open_critical}"
        )


def _statistical(unknown: list[str]) -> Verdict:
    return Verdict("INCONCLUSIVE", unknown) if unknown else Verdict("PASS", [])


NOT_MEASURED = "not measured: no cross-asset data"
WEIGHT_METRICS = (
    "episodes",
    "resolved",
    "correct",
    "accuracy",
    "trades",
    "wins",
    "losses",
    "win_rate",
    "count_wl",
    "payoff",
    "net_pnl",
)


def weight_effect(
    with_weight: pl.DataFrame,
    without_weight: pl.DataFrame,
    coverage: pl.DataFrame,
    weight: float,
    criteria: Criteria = Criteria(),
    candidate: str = "v3",
) -> dict:
    """The cross-asset confidence weight's effect on the extended test, measured: the candidate's
    pooled metrics and the verdict from the daily rows as traded (``with_weight``) and as the
    candidate trades on its own confidence (``without_weight``, the same rows otherwise).

    ``coverage`` has one row per day (``date, episodes, stored, confirmed, gained, lost``: the
    candidate's episodes, those with a stored confirmation row, those whose row has a
    confirmation, those with a signal passing the min-confidence filter only with / only
    without the weight). No confirmed episode on any day: ``NOT_MEASURED``, no metrics (the two
    sets would be equal by construction, which says nothing). Accuracy counts every episode's
    label whether traded or not, so the weight leaves it as it is; it moves trades and P&L.
    """
    cov = coverage.select(
        pl.len().alias("days"),
        (pl.col("confirmed") > 0).sum().alias("days_with_confirmations"),
        pl.col("episodes").sum(),
        pl.col("stored").sum().alias("episodes_stored"),
        pl.col("confirmed").sum().alias("episodes_confirmed"),
        pl.col("gained").sum().alias("episodes_gained"),
        pl.col("lost").sum().alias("episodes_lost"),
    ).row(0, named=True)
    out: dict = {"weight": weight, "algo": candidate, "unit": "episodes", **cov}
    if not cov["episodes_confirmed"]:
        out["status"] = NOT_MEASURED
        return out

    def side(daily: pl.DataFrame) -> dict:
        rows = final(daily).filter(pl.col("algo") == candidate)
        r = rows.row(0, named=True) if rows.height else {}
        v = verdict(daily, criteria, candidate)
        return {
            **{k: r.get(k) for k in WEIGHT_METRICS},
            "verdict": str(v),
            "status": v.status,
            "reasons": list(v.reasons),
        }

    w, wo = side(with_weight), side(without_weight)
    out["status"] = "measured"
    out["with_weight"] = w
    out["without_weight"] = wo
    out["difference"] = {
        k: (w[k] - wo[k]) if w[k] is not None and wo[k] is not None else None
        for k in ("trades", "wins", "losses", "net_pnl")
    }
    return out
