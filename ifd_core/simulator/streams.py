"""Named random streams for the simulator.

Each concern (price path, quotes, noise trades, churn, planted flows, open interest) draws from
its own generator, derived from ``(seed, day index, stream)``. That keeps the planted flows and
the price path identical when only ``scale`` changes, and lets one concern change its number of
draws without reshuffling every other one.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    PATH = 1
    BOOK_SHAPE = 2
    QUOTES = 3
    NOISE_TRADES = 4
    FUTURE_TRADES = 5
    CHURN = 6
    PLANTED = 7
    OPEN_INTEREST = 8
    LATENCY = 9
    REQUOTE_MODES = 10


def stream_rng(seed: int, day_index: int, stream: Stream) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(day_index), int(stream)]))
