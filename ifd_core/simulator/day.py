"""One simulated session, from the listing to the sorted MBO array and the ground truth."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import databento_dbn as dbn
import numpy as np

from ifd_core.calendar import et_to_ns, previous_trading_day
from ifd_core.simulator.book import KeySpace, build_tape, make_shape, slot_key_space
from ifd_core.simulator.chain import ChainBook, DayChain, definition_records
from ifd_core.simulator.churn import BusyIndex, churn_batches
from ifd_core.simulator.contracts import front_future
from ifd_core.simulator.events import MboDay, assemble
from ifd_core.simulator.noise import future_noise_plan, option_noise_plan, option_noise_rates
from ifd_core.simulator.params import SimParams
from ifd_core.simulator.path import initial_index_level, simulate_day_path, with_moves
from ifd_core.simulator.plant import plan_planted, plants_on
from ifd_core.simulator.requotes import requote_batches, snapshot_batch
from ifd_core.simulator.stats import OpenInterestLedger, settlement_records
from ifd_core.simulator.streams import Stream, stream_rng
from ifd_core.simulator.trades import TradePlan, execute, space_out
from ifd_core.simulator.truth import truth_records

ORDER_ID_BASE = 6_400_000_000_000  # CME-like 13-digit order ids
ORDER_IDS_PER_DAY = 1_000_000_000


def utc_midnight_ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9


@dataclass
class MarketState:
    """What one session hands to the next: listings, the price level, open interest."""

    chains: ChainBook = field(default_factory=ChainBook)
    index_level: float | None = None
    open_interest: OpenInterestLedger = field(default_factory=OpenInterestLedger)
    prev_day: dt.date | None = None


@dataclass
class DayResult:
    day: dt.date
    chain: DayChain
    start_ns: int
    end_ns: int
    definitions: list[dbn.InstrumentDefMsg]
    statistics: list[dbn.StatMsg]
    mbo: MboDay
    truth: list[dict]


def simulate_day(
    seed: int,
    index: int,
    n_days: int,
    day: dt.date,
    state: MarketState,
    scale: float,
    params: SimParams | None = None,
) -> DayResult:
    """One session: plan the planted events on the unmoved path first, add the informed moves
    to the path, then build books, noise and trades from the moved path."""
    params = params or SimParams()
    day_start = utc_midnight_ns(day)
    open_abs, close_abs = et_to_ns(day, 9, 30), et_to_ns(day, 16, 0)
    open_rel, close_rel = open_abs - day_start, close_abs - day_start

    futures = state.chains.futures_for(day)
    if state.index_level is None:
        state.index_level = initial_index_level(front_future(day), open_abs)
    path = simulate_day_path(
        stream_rng(seed, index, Stream.PATH),
        state.index_level,
        day_start,
        open_rel,
        close_rel,
        futures,
        first_day=index == 0,
    )
    chain = state.chains.list_day(
        day, {f.raw_symbol: path.open_price(f.raw_symbol) for f in futures}
    )
    shape = make_shape(stream_rng(seed, index, Stream.BOOK_SHAPE), chain, path)
    rates = option_noise_rates(chain, path, scale)
    # The morning's OI depends only on earlier sessions; the planner needs it (low-OI blocks).
    prev = state.prev_day or previous_trading_day(day)
    statistics = state.open_interest.publish(
        stream_rng(seed, index, Stream.OPEN_INTEREST),
        chain,
        path,
        first_day=index == 0,
        ts=et_to_ns(day, 6, 0),
        ts_ref=utc_midnight_ns(prev),
    )

    events, planted = [], None
    if plants_on(index, n_days):
        published = {int(r.instrument_id): int(r.quantity) for r in statistics}
        oi = np.array([published.get(int(i), -1) for i in chain.ids], dtype=np.int64)
        events, planted = plan_planted(
            stream_rng(seed, index, Stream.PLANTED),
            chain,
            path,
            rates,
            shape,
            day_start,
            open_rel,
            close_rel,
            params,
            oi,
        )
    moves = [ev.move for ev in events if ev.move is not None]
    path = with_moves(path, moves, day_start, futures)
    tape = build_tape(
        stream_rng(seed, index, Stream.QUOTES),
        chain,
        shape,
        path,
        day_start,
        open_rel,
        close_rel,
        scale,
    )
    quiet = [(inst, ev.t0, ev.t1) for ev in events for inst in ev.legs]
    noise = TradePlan.concat(
        [
            option_noise_plan(
                stream_rng(seed, index, Stream.NOISE_TRADES),
                chain,
                path,
                open_rel,
                close_rel,
                scale,
                quiet,
            ),
            future_noise_plan(
                stream_rng(seed, index, Stream.FUTURE_TRADES),
                chain,
                front_future(day).raw_symbol,
                open_rel,
                close_rel,
                scale,
                moves,
            ),
        ]
    )
    plans = [space_out(noise, tape, keep_tags=False)]
    if planted is not None:
        plans.append(space_out(planted, tape, keep_tags=True))
    keys = KeySpace(slot_key_space(chain.n))
    trade_batches, executed = execute(TradePlan.concat(plans), chain, shape, tape, keys)
    busy = BusyIndex.build(tape, executed)
    churn = churn_batches(
        stream_rng(seed, index, Stream.CHURN),
        chain,
        shape,
        tape,
        busy,
        keys,
        rates,
        open_rel,
        close_rel,
        scale,
    )
    batches = [
        snapshot_batch(chain, shape, tape, open_rel),
        *requote_batches(stream_rng(seed, index, Stream.REQUOTE_MODES), chain, shape, tape),
        *trade_batches,
        *churn,
    ]
    mbo = assemble(
        batches,
        chain.ids,
        chain.channel,
        day_start,
        ORDER_ID_BASE + index * ORDER_IDS_PER_DAY,
        slot_key_space(chain.n),
        stream_rng(seed, index, Stream.LATENCY),
    )

    statistics += settlement_records(chain, path, close_abs, day_start)
    state.open_interest.close_session(chain, executed)
    state.index_level = float(path.index_level[-1])
    state.prev_day = day
    return DayResult(
        day=day,
        chain=chain,
        start_ns=day_start,
        end_ns=utc_midnight_ns(day + dt.timedelta(days=1)),
        definitions=definition_records(chain, day_start),
        statistics=statistics,
        mbo=mbo,
        truth=truth_records(events, executed, chain, day, day_start),
    )
