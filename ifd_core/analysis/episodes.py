"""Signal episodes: one flow, one unit of evidence.

A detector fires on every window a flow stays anomalous, so one order worked for twenty minutes is
four v3 signals; counting four outcomes overstates the evidence and trading each stacks four
positions on one idea. ``EpisodeTracker`` groups signals into episodes with stable ids, window by
window (streaming and batch agree), and ``first_per_episode`` picks the signal the executor acts on
and whose label is the episode's outcome. Rules: docs/algorithms.md §8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import polars as pl

from ifd_core.units import NS

# What makes two signals comparable at all: one algorithm, one date, one side of one expiry.
_KEY = ("algo", "date", "option_type", "expiration", "view")
_NEEDS = (
    *_KEY,
    "signal_id",
    "instrument_id",
    "strike",
    "underlying_price",
    "window_start",
    "window_end",
    "decision_ts",
)


@dataclass(frozen=True)
class EpisodeParams:
    window_s: int = 300  # the pressure window length (analysis.window_minutes)
    max_gap_windows: int = 0  # empty windows an episode may skip (analysis.episode_max_gap_windows)
    band_pct: float = 0.5  # coordination band, % of the underlying (V3Params.coordination_band_pct)

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.max_gap_windows < 0 or self.band_pct < 0:
            raise ValueError(f"invalid episode parameters {self}")


def episode_id(algo: str, date, window_start: int, instrument_id: int) -> str:
    """Stable id of the episode whose first signal is this one (a hash, never wall clock)."""
    key = f"episode|{algo}|{date}|{int(window_start)}|{int(instrument_id)}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass
class _Episode:
    eid: str
    key: tuple
    first_end: int
    last_end: int
    instruments: set[int] = field(default_factory=set)


@dataclass
class EpisodeTracker:
    """Streaming assignment: ``assign`` takes the signals of one or more *whole* closed windows
    (in window order across calls) and returns them with ``episode_id`` set."""

    params: EpisodeParams = field(default_factory=EpisodeParams)
    _open: list[_Episode] = field(default_factory=list)

    def assign(self, signals: pl.DataFrame) -> pl.DataFrame:
        if signals.height == 0:
            return _with_ids(signals, [])
        missing = [c for c in _NEEDS if c not in signals.columns]
        if missing:
            raise ValueError(f"signals lack columns needed for episodes: {missing}")
        ordered = signals.with_row_index("_row").sort(
            "date", "window_end", "decision_ts", "signal_id"
        )
        ids: dict[int, str] = {}
        for _, part in ordered.group_by(["date", "window_end"], maintain_order=True):
            ids.update(self._window(part.to_dicts()))
        out = [ids[i] for i in range(signals.height)]
        return _with_ids(signals, out)

    def _window(self, rows: list[dict]) -> dict[int, str]:
        """One closed window's signals (sorted by decision_ts, signal_id)."""
        end = int(rows[0]["window_end"])
        day = rows[0]["date"]
        reach = (self.params.max_gap_windows + 1) * self.params.window_s * NS
        self._open = [e for e in self._open if e.key[1] == day and end - e.last_end <= reach]
        out: dict[int, str] = {}
        for comp in self._components(rows):
            key = tuple(comp[0][k] for k in _KEY)
            iids = {int(r["instrument_id"]) for r in comp}
            hits = [e for e in self._open if e.key == key and e.instruments & iids]
            if hits:
                ep = min(hits, key=lambda e: (e.first_end, e.eid))
            else:
                first = comp[0]
                eid = episode_id(first["algo"], day, first["window_start"], first["instrument_id"])
                ep = _Episode(eid, key, end, end)
                self._open.append(ep)
            ep.last_end = end
            ep.instruments |= iids
            for r in comp:
                out[r["_row"]] = ep.eid
        return out

    def _components(self, rows: list[dict]) -> list[list[dict]]:
        """Coordinated strikes of one window: same key, strikes within the band (transitively);
        each component in (decision_ts, signal_id) order, components by their first row."""
        parent = list(range(len(rows)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        pct = self.params.band_pct / 100.0
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                a, b = rows[i], rows[j]
                if any(a[k] != b[k] for k in _KEY):
                    continue
                if abs(float(a["strike"]) - float(b["strike"])) <= _band(a, b, pct):
                    parent[find(j)] = find(i)
        groups: dict[int, list[dict]] = {}  # insertion order: by each component's first row
        for i, r in enumerate(rows):
            groups.setdefault(find(i), []).append(r)
        return list(groups.values())


def _band(a: dict, b: dict, pct: float) -> float:
    """The band in strike points for a pair: pct of their mean underlying price (one side's when
    the other is unknown, 0 — the same strike only — when both are)."""
    prices = [float(x) for x in (a["underlying_price"], b["underlying_price"]) if x is not None]
    return pct * sum(prices) / len(prices) if prices else 0.0


def _with_ids(signals: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    return signals.with_columns(pl.Series("episode_id", ids, dtype=pl.String))


def assign_episodes(signals: pl.DataFrame, params: EpisodeParams | None = None) -> pl.DataFrame:
    """Episodes of a finished set of signals (any algorithms, any dates): one fresh tracker per
    algorithm over all its windows in order — what the detectors' trackers produce streaming."""
    if signals.height == 0:
        return _with_ids(signals, [])
    parts = []
    for _, part in signals.with_row_index("_order").group_by(["algo"], maintain_order=True):
        parts.append(EpisodeTracker(params or EpisodeParams()).assign(part))
    return pl.concat(parts).sort("_order").drop("_order")


def first_per_episode(df: pl.DataFrame) -> pl.DataFrame:
    """One row per episode: its first signal (``decision_ts``, then ``signal_id``, when the frame
    has them; else the frame's order). Rows without an episode are an error, not their own
    episode: counting them would silently count signals again."""
    if "episode_id" not in df.columns:
        raise ValueError(
            "no episode_id column: evidence is counted in signal episodes; re-run `ifd detect` "
            "on lakes detected before episodes existed"
        )
    if df.height == 0:
        return df
    n_null = df["episode_id"].null_count()
    if n_null:
        raise ValueError(
            f"{n_null} signal(s) without an episode_id; re-run `ifd detect` for their dates"
        )
    order = [c for c in ("decision_ts", "signal_id") if c in df.columns]
    ranked = df.sort(order, maintain_order=True) if order else df
    return ranked.unique("episode_id", keep="first", maintain_order=True)
