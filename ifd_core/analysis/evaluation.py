"""Detection quality against a simulator ground truth (SYNTHETIC data only).

Every signal is ``found`` (on a planted flow's instrument, direction and time), ``wrong_direction``,
``decoy`` (a leg of a straddle or churn) or ``stray`` (reported per session-hour). The matching
rules: docs/simulator.md §Ground truth. Numbers from simulated markets say whether the detector
finds what was planted; they are not evidence about real markets, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ifd_core.units import NS

WINDOW_NS = 300 * NS


@dataclass
class Evaluation:
    algo: str
    planted: int
    found: int
    missed: list[dict] = field(default_factory=list)
    decoys: int = 0
    decoy_signals: int = 0
    wrong_direction: int = 0
    strays: int = 0
    signals: int = 0
    session_hours: float = 0.0
    per_flow: list[dict] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.planted if self.planted else None

    @property
    def strays_per_session_hour(self) -> float | None:
        return self.strays / self.session_hours if self.session_hours else None

    def to_dict(self) -> dict:
        return {
            "algo": self.algo,
            "data": "SYNTHETIC",
            "planted_flows": self.planted,
            "found": self.found,
            "recall": self.recall,
            "missed": self.missed,
            "decoys": self.decoys,
            "signals_on_decoys": self.decoy_signals,
            "wrong_direction": self.wrong_direction,
            "stray_signals": self.strays,
            "signals": self.signals,
            "session_hours": round(self.session_hours, 3),
            "strays_per_session_hour": self.strays_per_session_hour,
            "flows": self.per_flow,
        }


def _overlaps(sig: dict, start: int, end: int) -> bool:
    return sig["window_start"] < end and sig["window_end"] > start


def _on_leg(sig: dict, exp: str | None, e: dict) -> bool:
    """On one of the event's instruments: a sweep's signal on any of its strikes finds it."""
    same_series = exp == e["expiration"] and sig["option_type"] == e["option_type"]
    if e.get("instrument_ids"):  # the instrument names the strike; a sweep's legs share the rest
        return same_series and sig["instrument_id"] in e["instrument_ids"]
    return same_series and float(sig["strike"]) == float(e["strike"])


def evaluate(
    signals: pl.DataFrame, events: list[dict], algo: str, session_hours: float
) -> Evaluation:
    """Classify ``signals`` (SIGNAL_SCHEMA rows of one algorithm) against truth ``events``."""
    planted = [e for e in events if e["kind"] == "institutional"]
    decoys = [e for e in events if e["kind"].startswith("decoy")]
    ev = Evaluation(algo, len(planted), 0, decoys=len(decoys), session_hours=session_hours)
    rows = signals.to_dicts()
    ev.signals = len(rows)
    found_by: dict[int, list[dict]] = {i: [] for i in range(len(planted))}
    for sig in rows:
        exp = sig["expiration"].isoformat() if sig["expiration"] else None
        kind = "stray"
        for i, e in enumerate(planted):
            same_option = _on_leg(sig, exp, e)
            if same_option and _overlaps(sig, e["start_ns"], e["end_ns"]):
                if sig["direction"] == e["direction"]:
                    kind = "found"
                    found_by[i].append(sig)
                    break
                kind = "wrong_direction"
        if kind == "stray":
            for e in decoys:
                legs = {leg["instrument_id"] for leg in e["legs"]}
                span = (e["start_ns"] - WINDOW_NS, e["end_ns"] + WINDOW_NS)
                if sig["instrument_id"] in legs and _overlaps(sig, *span):
                    kind = "decoy"
                    break
        if kind == "wrong_direction":
            ev.wrong_direction += 1
        elif kind == "decoy":
            ev.decoy_signals += 1
        elif kind == "stray":
            ev.strays += 1
    for i, e in enumerate(planted):
        hits = found_by[i]
        summary = {
            "date": e["date"],
            "raw_symbol": e["raw_symbols"][0],
            "expiration": e["expiration"],
            "strike": e["strike"],
            "option_type": e["option_type"],
            "direction": e["direction"],
            "contracts": e["contracts"],
            "shape": e.get("shape"),
            "informed": e.get("informed"),
            "signals": len(hits),
            "best_confidence": max((h["confidence"] for h in hits), default=None),
        }
        ev.per_flow.append(summary)
        if hits:
            ev.found += 1
        else:
            ev.missed.append(summary)
    return ev
