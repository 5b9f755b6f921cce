"""A/B statistics for the paired shadow design (docs/algorithms.md §14).

Both algorithms see the same stream and are compared on outcomes (labels and paper P&L), never on
signal counts, confidence or speed: ``pair_signals`` / ``agreement`` (shared signals),
``compare_accuracy`` (one-sided test with a Newcombe interval), ``bootstrap_diff_ci`` (per-day P&L
difference, resampling whole days), ``required_per_arm`` / ``decide`` (power gate and decision
rule). The tests assume independent outcomes, so callers feed one outcome per episode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import bootstrap, fisher_exact, norm

from ifd_core.trading.metrics import AccuracyStats, wilson_interval
from ifd_core.units import NS

_ALTERNATIVES = ("greater", "less", "two-sided")

PAIR_SCHEMA = {
    "signal_id_a": pl.String,
    "signal_id_b": pl.String,
    "dt_s": pl.Float64,
    "dstrike": pl.Float64,
}


def pair_signals(
    a: pl.DataFrame,
    b: pl.DataFrame,
    *,
    strike_points: float = 50.0,
    window_s: float = 300.0,
) -> pl.DataFrame:
    """Match signals of ``a`` with signals of ``b`` one-to-one.

    Candidates: same ``underlying_id`` and ``view``, ``|Δstrike| <= strike_points`` and
    ``|Δdecision_ts| <= window_s``. They are taken greedily by smallest ``|Δt|``, then smallest
    ``|Δstrike|``, then ``signal_id_a``, ``signal_id_b`` — a total order, so the same inputs always
    give the same pairs (replay determinism, docs/algorithms.md §14). Greedy is not a maximum
    matching, but with signals minutes apart the candidate graph is nearly always a set of disjoint
    edges and the closest-in-time rule is the one a human would apply.

    Output ``dt_s`` and ``dstrike`` are signed ``b − a`` (positive ``dt_s``: ``b`` decided later),
    so who leads can be read off the pairs.
    """
    for name, df in (("a", a), ("b", b)):
        if df["signal_id"].n_unique() != df.height:
            raise ValueError(f"duplicate signal_id in {name}")
    if a.height == 0 or b.height == 0:
        return pl.DataFrame(schema=PAIR_SCHEMA)
    window_ns = round(window_s * NS)
    left = a.select(
        pl.col("signal_id").alias("signal_id_a"),
        pl.col("underlying_id"),
        pl.col("view"),
        pl.col("strike").cast(pl.Float64).alias("strike_a"),
        pl.col("decision_ts").cast(pl.Int64).alias("ts_a"),
    )
    right = b.select(
        pl.col("signal_id").alias("signal_id_b"),
        pl.col("underlying_id"),
        pl.col("view"),
        pl.col("strike").cast(pl.Float64).alias("strike_b"),
        pl.col("decision_ts").cast(pl.Int64).alias("ts_b"),
    )
    cand = (
        left.join(right, on=["underlying_id", "view"], how="inner")
        .with_columns(
            (pl.col("ts_b") - pl.col("ts_a")).alias("dt_ns"),
            (pl.col("strike_b") - pl.col("strike_a")).alias("dstrike"),
        )
        .filter((pl.col("dt_ns").abs() <= window_ns) & (pl.col("dstrike").abs() <= strike_points))
        .with_columns(pl.col("dt_ns").abs().alias("_adt"), pl.col("dstrike").abs().alias("_ads"))
        .sort(["_adt", "_ads", "signal_id_a", "signal_id_b"])
    )
    used_a: set[str] = set()
    used_b: set[str] = set()
    rows: list[tuple[str, str, float, float]] = []
    for ida, idb, dt_ns, ds in cand.select(
        "signal_id_a", "signal_id_b", "dt_ns", "dstrike"
    ).iter_rows():
        if ida in used_a or idb in used_b:
            continue
        used_a.add(ida)
        used_b.add(idb)
        rows.append((ida, idb, dt_ns / NS, ds))
    return pl.DataFrame(rows, schema=PAIR_SCHEMA, orient="row")


def agreement(a: pl.DataFrame, b: pl.DataFrame, pairs: pl.DataFrame) -> float | None:
    """Share of all signals that have a partner: ``2·pairs / (len(a) + len(b))``.

    Symmetric in ``a`` and ``b`` and 1.0 exactly when every signal of each side is matched;
    ``None`` when neither algorithm emitted anything (agreement is undefined, not perfect).
    """
    total = a.height + b.height
    if total == 0:
        return None
    return 2 * pairs.height / total


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    ci = wilson_interval(k, n, confidence)
    if ci is None:
        raise ValueError("a Wilson interval needs at least one trial")
    return ci


def _newcombe_diff_ci(
    k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe hybrid score interval (his method 10) for ``p_a − p_b``.

    Built from the two Wilson intervals, so it stays inside [−1, 1] and behaves at 0 % / 100 %
    where the Wald interval collapses to a point.
    """
    pa, pb = k_a / n_a, k_b / n_b
    la, ua = _wilson(k_a, n_a, confidence)
    lb, ub = _wilson(k_b, n_b, confidence)
    d = pa - pb
    low = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return low, high


def compare_accuracy(
    correct_a: int,
    resolved_a: int,
    correct_b: int,
    resolved_b: int,
    *,
    alternative: str = "greater",
) -> dict:
    """Test whether arm ``a`` is more accurate than arm ``b`` (``alternative="greater"``).

    Fisher's exact test on ``[[correct_a, incorrect_a], [correct_b, incorrect_b]]`` when any cell
    is below 10 (the normal approximation is poor there); otherwise the two-proportion z-test with
    pooled variance. ``"less"`` and ``"two-sided"`` are also accepted. The 95 % interval of
    ``diff = p_a − p_b`` is Newcombe's hybrid score interval (not Wald). With an empty arm there
    is nothing to test: ``test = "none"`` and the p-value, difference and interval are ``None``.
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    for k, n in ((correct_a, resolved_a), (correct_b, resolved_b)):
        if not 0 <= k <= n:
            raise ValueError(f"need 0 <= correct <= resolved, got {k}/{n}")
    out: dict = {
        "test": "none",
        "p_value": None,
        "diff": None,
        "diff_ci_low": None,
        "diff_ci_high": None,
        "n_a": resolved_a,
        "n_b": resolved_b,
    }
    if resolved_a == 0 or resolved_b == 0:
        return out
    pa, pb = correct_a / resolved_a, correct_b / resolved_b
    table = [[correct_a, resolved_a - correct_a], [correct_b, resolved_b - correct_b]]
    if min(min(r) for r in table) < 10:
        test = "fisher"
        p = float(fisher_exact(table, alternative=alternative).pvalue)
    else:
        # every cell >= 10 means 0 < pooled < 1, so se > 0
        test = "z"
        pooled = (correct_a + correct_b) / (resolved_a + resolved_b)
        se = math.sqrt(pooled * (1 - pooled) * (1 / resolved_a + 1 / resolved_b))
        z = (pa - pb) / se
        if alternative == "greater":
            p = float(norm.sf(z))
        elif alternative == "less":
            p = float(norm.cdf(z))
        else:
            p = float(2 * norm.sf(abs(z)))
    low, high = _newcombe_diff_ci(correct_a, resolved_a, correct_b, resolved_b)
    out.update(test=test, p_value=min(p, 1.0), diff=pa - pb, diff_ci_low=low, diff_ci_high=high)
    return out


def bootstrap_diff_ci(
    daily_a: Sequence[float],
    daily_b: Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float] | None:
    """Percentile bootstrap of the mean per-day P&L difference ``a − b``, resampling days.

    Days are paired (both arms traded the same sessions), so the per-day difference is resampled,
    which removes the common market component from the noise. ``scipy.stats.bootstrap`` draws the
    resamples from ``numpy.random.default_rng(seed)`` (same seed, same interval). Percentile, not
    scipy's default BCa: it is the method docs/algorithms.md §14 and the rollout gate (§16) are
    stated in, and BCa is undefined (NaN) when every day has the same difference. BCa covers
    better on skewed P&L; switching would move stored verdicts and needs a docs change. Returns
    ``(point, low, high)``; ``None`` with fewer than 2 days (no variability to resample).
    """
    x = np.asarray(daily_a, dtype=np.float64)
    y = np.asarray(daily_b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired daily series must have equal length, got {x.size} and {y.size}")
    if x.size < 2:
        return None
    d = x - y
    res = bootstrap(
        (d,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return float(d.mean()), float(ci.low), float(ci.high)


def required_per_arm(
    p_low: float = 0.65,
    p_high: float = 0.75,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    one_sided: bool = True,
) -> int:
    """Resolved episodes per arm to detect ``p_high`` vs ``p_low`` (two independent proportions).

    The Fleiss formula without continuity correction:
    ``n = [z_α·√(2·p̄·q̄) + z_β·√(p₁q₁ + p₂q₂)]² / (p₂ − p₁)²`` with ``p̄ = (p₁ + p₂)/2``,
    ``z_α = Φ⁻¹(1 − α)`` one-sided (``1 − α/2`` two-sided), ``z_β = Φ⁻¹(power)``, rounded up.
    0.65 vs 0.75 at α = 0.05, power 0.8 → 259 one-sided, 329 two-sided (docs/algorithms.md §14: ≈
    260 / ≈ 330).
    """
    if not 0 < p_low < 1 or not 0 < p_high < 1 or p_low == p_high:
        raise ValueError(f"need two distinct proportions in (0, 1), got {p_low}, {p_high}")
    z_a = norm.ppf(1 - alpha) if one_sided else norm.ppf(1 - alpha / 2)
    z_b = norm.ppf(power)
    p_bar = (p_low + p_high) / 2
    num = z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(
        p_low * (1 - p_low) + p_high * (1 - p_high)
    )
    return math.ceil(num**2 / (p_high - p_low) ** 2)


@dataclass(frozen=True)
class ABVerdict:
    recommendation: str  # "v3" | "v1" | "no difference" | "inconclusive"
    reasons: list[str]
    text: str
    required_per_arm: int
    need_more: int = 0
    v3_resolved: int = 0
    v1_resolved: int = 0
    v3_accuracy: float | None = None
    v3_ci_low: float | None = None
    v1_accuracy: float | None = None
    test: str | None = None
    p_value: float | None = None
    p_value_v1_better: float | None = None
    diff: float | None = None
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    noninferiority_low: float | None = None
    pnl_diff_ci: tuple[float, float, float] | None = None


def decide(
    v3: AccuracyStats,
    v1: AccuracyStats,
    *,
    pnl_diff_ci: tuple[float, float, float] | None,
    operational_ok: bool = True,
    min_accuracy_point: float = 0.75,
    min_accuracy_lower: float = 0.65,
    alpha: float = 0.05,
    noninferiority_margin: float = 0.02,
) -> ABVerdict:
    """The docs/algorithms.md §14 decision rule.

    ``v3`` and ``v1`` count episodes (one outcome per episode).

    1. Power gate: if either arm has fewer resolved episodes than ``required_per_arm(alpha=alpha)``
       (75 % vs 65 %, power 0.8, one-sided) → ``inconclusive``, with N = required − smaller arm.
    2. ``v3`` iff (a) v3's Wilson lower bound > ``min_accuracy_lower`` and its point estimate ≥
       ``min_accuracy_point``; (b) v3 > v1 significant one-sided at ``alpha``, **or** v3 is
       non-inferior — the lower end of the (1 − 2α) Newcombe interval of v3 − v1, i.e. a
       one-sided test at ``alpha``, is above ``−noninferiority_margin`` — **and** the
       ``pnl_diff_ci`` (v3 − v1, ``(point, low, high)``) lies entirely above 0; (c)
       ``operational_ok``.
    3. Otherwise ``v1`` if v1 > v3 is significant one-sided at ``alpha``, else ``no difference``
       with the failed conditions listed in ``reasons``.
    """
    req = required_per_arm(alpha=alpha)
    smaller = min(v3.resolved, v1.resolved)
    base = dict(
        required_per_arm=req,
        v3_resolved=v3.resolved,
        v1_resolved=v1.resolved,
        v3_accuracy=v3.accuracy,
        v3_ci_low=v3.ci_low,
        v1_accuracy=v1.accuracy,
        pnl_diff_ci=pnl_diff_ci,
    )
    if smaller < req:
        need = req - smaller
        reason = (
            f"underpowered: v3 has {v3.resolved}, v1 has {v1.resolved} resolved episodes; "
            f"{req} per arm needed"
        )
        return ABVerdict(
            recommendation="inconclusive",
            reasons=[reason],
            text=f"inconclusive: need {need} more resolved episodes ({reason})",
            need_more=need,
            **base,
        )

    cmp = compare_accuracy(v3.correct, v3.resolved, v1.correct, v1.resolved)
    rev = compare_accuracy(v1.correct, v1.resolved, v3.correct, v3.resolved)
    ni_low, _ = _newcombe_diff_ci(
        v3.correct, v3.resolved, v1.correct, v1.resolved, confidence=1 - 2 * alpha
    )
    p = cmp["p_value"]
    stats = dict(
        test=cmp["test"],
        p_value=p,
        p_value_v1_better=rev["p_value"],
        diff=cmp["diff"],
        diff_ci_low=cmp["diff_ci_low"],
        diff_ci_high=cmp["diff_ci_high"],
        noninferiority_low=ni_low,
    )

    failed: list[str] = []
    acc, lo = v3.accuracy, v3.ci_low
    assert acc is not None and lo is not None  # resolved >= req > 0
    if not lo > min_accuracy_lower:
        failed.append(f"v3 accuracy lower bound {lo:.3f} not above {min_accuracy_lower:.2f}")
    if not acc >= min_accuracy_point:
        failed.append(f"v3 accuracy {acc:.3f} below {min_accuracy_point:.2f}")
    significant = p < alpha
    noninferior = ni_low > -noninferiority_margin
    pnl_positive = pnl_diff_ci is not None and pnl_diff_ci[1] > 0
    if not (significant or (noninferior and pnl_positive)):
        why = f"v3 > v1 not significant (p = {p:.4f}, {cmp['test']})"
        if not noninferior:
            why += f"; not non-inferior (lower bound {ni_low:+.3f} ≤ −{noninferiority_margin})"
        elif pnl_diff_ci is None:
            why += "; non-inferior but no P&L difference interval"
        else:
            why += f"; non-inferior but P&L difference CI low {pnl_diff_ci[1]:.2f} ≤ 0"
        failed.append(why)
    if not operational_ok:
        failed.append("an operational gate failed")

    if not failed:
        how = (
            f"p = {p:.2g}"
            if significant
            else f"non-inferior within {noninferiority_margin:.0%} and P&L CI > 0"
        )
        return ABVerdict(
            recommendation="v3",
            reasons=[f"v3 accuracy {acc:.3f} (lower {lo:.3f}); {how}"],
            text=(
                f"recommend v3: accuracy {acc:.1%} vs {v1.accuracy:.1%} "
                f"(diff {cmp['diff']:+.1%}, {how})"
            ),
            **base,
            **stats,
        )
    if rev["p_value"] < alpha:
        return ABVerdict(
            recommendation="v1",
            reasons=[f"v1 > v3 significant (p = {rev['p_value']:.2g}, {rev['test']})", *failed],
            text=(
                f"keep v1: accuracy {v1.accuracy:.1%} vs v3 {acc:.1%} (p = {rev['p_value']:.2g})"
            ),
            **base,
            **stats,
        )
    return ABVerdict(
        recommendation="no difference",
        reasons=failed,
        text="no difference: " + "; ".join(failed),
        **base,
        **stats,
    )
