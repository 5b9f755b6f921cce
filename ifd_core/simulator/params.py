"""What the simulator plants, as one frozen value: the knobs of the ``simulator.`` settings group.

The simulator's output is a pure function of ``(days, seed, start, scale, params)``; keeping the
knobs in one hashable, frozen value (instead of reading settings deep inside the planner) is what
makes that true, and lets the ground truth and the provenance file record them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ifd_core.settings import SimulatorSettings

MAX_MOVE_HORIZON_S = 3 * 3600.0  # planted events end by then before the close, so moves fit
IntRange = tuple[int, int]
FloatRange = tuple[float, float]


@dataclass(frozen=True)
class SimParams:
    """Planting knobs; ranges are inclusive ``(low, high)``. See ``SimulatorSettings`` for units."""

    informed_share: float = 0.7
    flows_per_day: IntRange = (2, 4)
    informed_delay_s: FloatRange = (60.0, 300.0)
    informed_move_points: FloatRange = (25.0, 50.0)
    informed_ramp_s: FloatRange = (300.0, 900.0)
    large_prints_per_day: IntRange = (0, 2)
    v1_events_per_day: IntRange = (0, 2)
    shape_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # burst, multi_window, sweep
    # share for the low-OI blocks (IFD v1 events); None: ``informed_share``
    v1_informed_share: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.informed_share <= 1.0:
            raise ValueError(f"informed_share must be in [0, 1], got {self.informed_share}")
        if self.v1_informed_share is not None and not 0.0 <= self.v1_informed_share <= 1.0:
            raise ValueError(f"v1_informed_share must be in [0, 1], got {self.v1_informed_share}")
        for name in (
            "flows_per_day",
            "informed_delay_s",
            "informed_move_points",
            "informed_ramp_s",
            "large_prints_per_day",
            "v1_events_per_day",
        ):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if self.informed_ramp_s[0] <= 0:
            raise ValueError("informed_ramp_s must be positive")
        if self.informed_delay_s[1] + self.informed_ramp_s[1] > MAX_MOVE_HORIZON_S:
            raise ValueError(
                f"informed_delay_s + informed_ramp_s must end within {MAX_MOVE_HORIZON_S:g} s "
                "of the flow: the move has to finish inside the session"
            )
        if len(self.shape_weights) != 3 or min(self.shape_weights) < 0:
            raise ValueError("shape_weights are three non-negative weights")
        if sum(self.shape_weights) <= 0:
            raise ValueError("shape_weights must not all be zero")

    @classmethod
    def from_settings(cls, s: SimulatorSettings) -> SimParams:
        return cls(
            informed_share=s.informed_share,
            v1_informed_share=s.v1_informed_share,
            flows_per_day=_range(s.flows_per_day, int),
            informed_delay_s=_range(s.informed_delay_s, float),
            informed_move_points=_range(s.informed_move_points, float),
            informed_ramp_s=_range(s.informed_ramp_s, float),
            large_prints_per_day=_range(s.large_prints_per_day, int),
            v1_events_per_day=_range(s.v1_events_per_day, int),
            shape_weights=(
                float(s.shape_weights[0]),
                float(s.shape_weights[1]),
                float(s.shape_weights[2]),
            ),
        )

    def to_dict(self) -> dict:
        """JSON-ready record of the knobs (ranges as 2-element lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _range(values: list, kind: type) -> tuple:
    if len(values) != 2:
        raise ValueError(f"a range is two values [low, high], got {values}")
    return (kind(values[0]), kind(values[1]))


def parse_count_range(text: str) -> IntRange:
    """``"3"`` -> (3, 3); ``"2-4"`` -> (2, 4): the CLI's form of a per-day count."""
    parts = text.strip().split("-")
    try:
        if len(parts) == 1:
            n = int(parts[0])
            return (n, n)
        if len(parts) == 2:
            return (int(parts[0]), int(parts[1]))
    except ValueError:
        pass
    raise ValueError(f"not a count or a range A-B: {text!r}")
