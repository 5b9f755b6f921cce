"""The one signal schema every chain analyzer emits (docs/algorithms.md §9).

The reference's analyzers each returned their own dict shape, synthesis read keys that did not
exist, and "EV" meant three incomparable things. A ``ChainSignal`` carries the same fields from
every source, and its ``id`` is a hash of its content, so the same snapshot and parameters give
the same ids in a replay, a backtest and the live flow.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from ifd_core.analysis.chain.expected_value import TradeEvaluation

BULLISH, BEARISH, NEUTRAL_VOL = "BULLISH", "BEARISH", "NEUTRAL_VOL"
DIRECTIONS = (BULLISH, BEARISH, NEUTRAL_VOL)
DIRECTION_SIGN = {BULLISH: 1.0, BEARISH: -1.0, NEUTRAL_VOL: 0.0}


@dataclass(frozen=True, eq=False)
class ChainSignal:
    source: str  # analyzer name
    source_version: str
    event_time_ns: int  # the snapshot's as_of_ns
    underlying_id: int
    expiration_ns: int | None  # None when the evidence spans expiries
    strikes: tuple[float, ...]
    rights: tuple[str, ...]
    direction: str  # BULLISH | BEARISH | NEUTRAL_VOL
    horizon_s: float | None
    score: float  # [0, 1], ranking strength; not a probability
    probability: float | None = None  # calibrated probability of the call; None until fitted
    expected_move: float | None = None  # points, signed
    move_band: tuple[float, float] | None = None  # points relative to the price (lo, hi)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    data_quality: tuple[str, ...] = ()
    notional_premium: float = 0.0  # $ traded behind the signal (tie-break)
    trade_plan: TradeEvaluation | None = None
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if not (0.0 <= self.score <= 1.0) or math.isnan(self.score):
            raise ValueError(f"score must lie in [0, 1], got {self.score}")
        if self.probability is not None and not (0.0 <= self.probability <= 1.0):
            raise ValueError(f"probability must lie in [0, 1], got {self.probability}")
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))
        object.__setattr__(self, "id", content_id(self))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChainSignal) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def sign(self) -> float:
        return DIRECTION_SIGN[self.direction]

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["evidence"] = dict(self.evidence)
        if self.trade_plan is not None:
            out["trade_plan"] = {
                f.name: getattr(self.trade_plan, f.name) for f in fields(self.trade_plan)
            }
        return out


def content_id(sig: ChainSignal) -> str:
    """First 16 hex digits of the SHA-256 of the signal's content (every field but ``id``)."""
    payload = {f.name: getattr(sig, f.name) for f in fields(sig) if f.name != "id"}
    payload["evidence"] = dict(sig.evidence)
    if sig.trade_plan is not None:
        payload["trade_plan"] = {
            f.name: getattr(sig.trade_plan, f.name) for f in fields(sig.trade_plan)
        }
    text = json.dumps(payload, sort_keys=True, default=_jsonable, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return dict(x)
    if isinstance(x, tuple | list | set | frozenset):
        return list(x)
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    return repr(x)


def composite_score(scores: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Σ score × weight / Σ weight over the analyses present in both (docs/algorithms.md §9).

    An analysis with a weight but no score leaves the denominator; with no analysis in common
    the result is None ("no data"), not 0.
    """
    common = [k for k in scores if k in weights]
    den = sum(float(weights[k]) for k in common)
    if not common or den == 0:
        return None
    return sum(float(scores[k]) * float(weights[k]) for k in common) / den
