"""Rates of the calibration study with 95 % intervals, and the table the README publishes.

Units: planted flows for the labeller and recall, episodes for precision and accuracy, blocks
(independent windows of ``block_days`` sessions) for coverage, extended-test verdicts and Monte
Carlo, whole markets for the A/B test. Every rate carries its count, so an interval that is wide
because there were few units says so. SYNTHETIC markets only: this validates the statistics, not
the signals on real markets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from scipy.stats import binom

from ifd_core.trading.extended import Criteria
from ifd_core.trading.metrics import wilson_interval

ALGOS = ("v3", "v1")


def rate(k: int, n: int) -> dict:
    """``k`` of ``n`` with its Wilson 95 % interval (None when there is nothing to count)."""
    ci = wilson_interval(k, n)
    return {
        "k": k,
        "n": n,
        "rate": k / n if n else None,
        "low": ci[0] if ci else None,
        "high": ci[1] if ci else None,
    }


def fmt(r: dict) -> str:
    if not r["n"]:
        return "n/a (0)"
    return f"{r['rate']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['k']}/{r['n']})"


def pooled_accuracy(blocks: list[dict], algo: str, unit: str) -> float | None:
    c = sum(b["algos"][algo][unit]["correct"] for b in blocks)
    n = sum(b["algos"][algo][unit]["resolved"] for b in blocks)
    return c / n if n else None


def coverage(blocks: list[dict], algo: str, unit: str) -> dict:
    """Share of blocks whose 95 % accuracy interval contains the pooled (true) accuracy."""
    truth = pooled_accuracy(blocks, algo, unit)
    inside = n = 0
    for b in blocks:
        s = b["algos"][algo][unit]
        if truth is None or not s["resolved"]:
            continue
        n += 1
        inside += s["ci_low"] <= truth <= s["ci_high"]
    return {**rate(inside, n), "true_accuracy": truth}


def n_for_power(p_true: float, c: Criteria, power: float = 0.8, n_max: int = 2000) -> int | None:
    """Smallest number of resolved episodes at which the extended test's accuracy criteria
    (point >= min_accuracy, Wilson lower >= min_accuracy_lower) pass with ``power``, for a
    market whose true accuracy is ``p_true``; None if not reached by ``n_max`` (a market below
    the accuracy bar never gets there)."""
    if p_true < c.min_accuracy:
        return None
    for n in range(max(c.min_resolved, 1), n_max + 1):
        k = math.ceil(c.min_accuracy * n - 1e-9)  # the pass region is k and above
        while k <= n and wilson_interval(k, n)[0] < c.min_accuracy_lower:
            k += 1
        if k <= n and binom.sf(k - 1, n, p_true) >= power:
            return n
    return None


def summarize(markets: Iterable[dict], criteria: Criteria) -> dict:
    """Per informed share: every rate of the study."""
    by_share: dict[float, list[dict]] = {}
    for m in markets:
        by_share.setdefault(m["share"], []).append(m)
    out = {}
    for share, ms in sorted(by_share.items()):
        blocks = [b for m in ms for b in m["blocks"]]
        flows = [f for b in blocks for f in b["labeller"]]
        inf = [f for f in flows if f["informed"]]
        uninf = [f for f in flows if not f["informed"]]
        row: dict = {
            "markets": len(ms),
            "blocks": len(blocks),
            "labeller": {
                "informed_correct": rate(sum(f["label"] == "correct" for f in inf), len(inf)),
                "uninformed_correct": rate(sum(f["label"] == "correct" for f in uninf), len(uninf)),
                "uninformed_incorrect": rate(
                    sum(f["label"] == "incorrect" for f in uninf), len(uninf)
                ),
                "uninformed_neutral": rate(sum(f["label"] == "neutral" for f in uninf), len(uninf)),
            },
            "algos": {},
        }
        for algo in ALGOS:
            a = [b["algos"][algo] for b in blocks]
            found = sum(x["found"] for x in a)
            truth = pooled_accuracy(blocks, algo, "per_episode")
            losing = sum(x["net_pnl"] < 0 for x in a)
            predicted = [x["mc_prob_loss"] for x in a if x["mc_prob_loss"] is not None]
            row["algos"][algo] = {
                "recall": rate(found, sum(x["planted"] for x in a)),
                "precision_episodes": rate(
                    sum(x["episodes_on_flows"] for x in a), sum(x["episodes"] for x in a)
                ),
                "informed_share_of_found": rate(sum(x["informed_found"] for x in a), found),
                "decoy_signals": sum(x["decoy_signals"] for x in a),
                "true_accuracy": truth,
                "coverage_episodes": coverage(blocks, algo, "per_episode"),
                "coverage_signals": coverage(blocks, algo, "per_signal"),
                "mc_predicted_prob_loss": sum(predicted) / len(predicted) if predicted else None,
                "realized_losing_blocks": rate(losing, len(a)),
            }
        statuses = [b["extended"]["status"] for b in blocks]
        truth_v3 = row["algos"]["v3"]["true_accuracy"]
        row["extended"] = {
            "pass": rate(statuses.count("PASS"), len(statuses)),
            "inconclusive": rate(statuses.count("INCONCLUSIVE"), len(statuses)),
            "episodes_for_80pct_power": (
                n_for_power(truth_v3, criteria) if truth_v3 is not None else None
            ),
            "min_resolved": criteria.min_resolved,
        }
        recs = [m["ab"]["recommendation"] for m in ms]
        row["ab"] = {
            "any_winner": rate(sum(r in ("v3", "v1") for r in recs), len(recs)),
            "v3": rate(recs.count("v3"), len(recs)),
            "inconclusive": rate(recs.count("inconclusive"), len(recs)),
        }
        out[share] = row
    return out


def markdown(summary: dict, grid: dict) -> str:
    """The study's table (shares as columns)."""
    shares = list(summary)
    head = "| | " + " | ".join(f"informed share {s:g}" for s in shares) + " |"
    lines = [head, "|---|" + "---:|" * len(shares)]

    def line(name: str, cell) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(summary[s]) for s in shares) + " |")

    def num(x, spec=".2f"):
        return "n/a" if x is None else format(x, spec)

    line("markets × blocks", lambda r: f"{r['markets']} × {r['blocks'] // max(r['markets'], 1)}")
    line(
        "labeller: informed flows labelled correct",
        lambda r: fmt(r["labeller"]["informed_correct"]),
    )
    line(
        "labeller: uninformed flows labelled correct",
        lambda r: fmt(r["labeller"]["uninformed_correct"]),
    )
    line(
        "labeller: uninformed flows labelled neutral",
        lambda r: fmt(r["labeller"]["uninformed_neutral"]),
    )
    for algo in ALGOS:
        a = lambda r, k, algo=algo: r["algos"][algo][k]  # noqa: E731
        line(f"{algo}: recall of planted flows", lambda r, a=a: fmt(a(r, "recall")))
        line(
            f"{algo}: precision (episodes on a planted flow)",
            lambda r, a=a: fmt(a(r, "precision_episodes")),
        )
        line(
            f"{algo}: true informed share of detected flows",
            lambda r, a=a: fmt(a(r, "informed_share_of_found")),
        )
        line(f"{algo}: signals on decoys", lambda r, a=a: str(a(r, "decoy_signals")))
        line(
            f"{algo}: true accuracy (pooled episodes)",
            lambda r, a=a: num(a(r, "true_accuracy"), ".3f"),
        )
        line(
            f"{algo}: 95 % interval covers it, counted in episodes (target 0.90–0.98)",
            lambda r, a=a: fmt(a(r, "coverage_episodes")),
        )
        line(f"{algo}: … counted in signals (before)", lambda r, a=a: fmt(a(r, "coverage_signals")))
        line(
            f"{algo}: Monte Carlo P(losing block) predicted",
            lambda r, a=a: num(a(r, "mc_predicted_prob_loss")),
        )
        line(
            f"{algo}: realized share of losing blocks",
            lambda r, a=a: fmt(a(r, "realized_losing_blocks")),
        )
    line("extended test PASS (no edge: target ≤ 0.05)", lambda r: fmt(r["extended"]["pass"]))
    line("extended test INCONCLUSIVE", lambda r: fmt(r["extended"]["inconclusive"]))
    line(
        "episodes for 80 % power (v3's true accuracy) vs min_resolved",
        lambda r: (
            f"{r['extended']['episodes_for_80pct_power'] or 'never'} vs "
            f"{r['extended']['min_resolved']}"
        ),
    )
    line("A/B names a winner (equal arms: target ≤ 0.05)", lambda r: fmt(r["ab"]["any_winner"]))
    line("A/B names v3", lambda r: fmt(r["ab"]["v3"]))
    line("A/B inconclusive (underpowered)", lambda r: fmt(r["ab"]["inconclusive"]))
    g = grid
    lines += [
        "",
        f"SYNTHETIC markets: {g['warmup']} warm-up sessions, then {g['blocks']} blocks of "
        f"{g['block_days']} sessions per market, scale {g['scale']}, seeds {list(g['seeds'])}. "
        "This validates IFD's statistics on simulated markets whose answer is known; it is not "
        "evidence about IFD's signals on real markets.",
    ]
    return "\n".join(lines) + "\n"
