"""Every setting is real: changing any leaf key changes something the product builds from it.

The test walks every leaf of the ``Settings`` schema (recursively over ``model_fields``, so a new
key is picked up without touching this file), gives it a different valid value, and compares
what the product's own constructors build from the default and the changed settings: engine and
detector parameters, risk limits, executors, criteria, breakers, alert rules, rollout rules,
simulator parameters, clients... A key that changes nothing any builder builds fails with
"setting X changes nothing that code builds".

A few keys are read only inside long-running loops (the live runner's flush cadence, the
backtest's confidence grid...) that no small constructor exposes; they are listed in
``READ_IN_LOOPS`` with the reason, and for them the test checks that product code reads the
attribute. That list is the honest remainder, not a way out: it must stay short.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from ifd_core import settings as st
from ifd_core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("ifd_core", "warehouse", "expectations", "jobs", "reports", "flows", "ifd_cli")
BASE = {"databento": {"api_key": "db-base-key"}}  # live_params and clients need some key


# ------------------------------------------------------------------ the schema's leaves
def _group(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def leaf_keys(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> list[tuple]:
    """Every leaf path of ``model``: groups are walked, anything else (lists included) is a leaf."""
    out = []
    for name, field in model.model_fields.items():
        sub = _group(field.annotation)
        out.extend(leaf_keys(sub, (*prefix, name)) if sub else [(*prefix, name)])
    return out


def _nested(path: tuple, value: Any) -> dict:
    d: Any = value
    for part in reversed(path):
        d = {part: d}
    return d


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _get(s: Any, path: tuple) -> Any:
    for part in path:
        s = getattr(s, part)
    return s


# Changes the generic rules below cannot make (a sum that must stay 1, names that must exist).
SPECIAL: dict[tuple, list[dict]] = {
    ("analysis", "v3", "weights", "size"): [{"size": 0.40, "imbalance": 0.25}],
    ("analysis", "v3", "weights", "imbalance"): [{"imbalance": 0.35, "prints": 0.30}],
    ("analysis", "v3", "weights", "prints"): [{"prints": 0.40, "size": 0.30}],
    ("profile",): ["conservative_testing"],
    ("log_level",): ["DEBUG"],
    ("ib", "account"): ["DU111"],
    ("ib", "paper_account_prefixes"): [["DU", "U"]],
    ("costs", "prices"): [
        [
            {
                "effective_from": "2026-01-01",
                "subscriptions": {"cme": 100.0},
                "live_usage_per_gb": 1.0,
                "source": "SYNTHETIC test price",
            }
        ]
    ],
    ("rollout", "challenger"): ["v1"],
    ("rollout", "incumbent"): ["v3"],
    ("compute", "dask_address"): ["tcp://127.0.0.1:8786"],
}


def _candidates(path: tuple, value: Any, annotation: Any, tmp: Path) -> list[Any]:
    if path in SPECIAL:
        return SPECIAL[path]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [a for a in args if a != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, SecretStr):
        return ["db-other-key"]
    if isinstance(value, Path) or value is None and Path in args:
        return [tmp / "elsewhere"]
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2]
    if isinstance(value, float):
        return [value * 1.1, value * 0.9, value + 0.01, value - 0.01] if value else [0.1, 0.01]
    if isinstance(value, str):
        return [value + "x", value.lower()]
    if isinstance(value, list):
        if len(value) == 2 and all(isinstance(x, int | float) for x in value):
            return [[value[0], value[1] + 1]]  # a [low, high] range
        if value and isinstance(value[0], str):
            return [[*value, "QX"]]
        if value and isinstance(value[0], float | int):
            return [[2.0, *value[1:]], value[:-1]]
        return [[tmp / "extra"]]
    if value is None:
        return ["http://127.0.0.1:9", 0.2, 1]
    raise AssertionError(f"no candidate values for {'.'.join(path)} = {value!r}")


def changed_settings(path: tuple, tmp: Path) -> tuple[Settings, Any]:
    """Settings with ``path`` set to a different valid value (and that value)."""
    base = st.get_settings(**BASE)
    value = _get(base, path)
    parent = _get(base, path[:-1]) if len(path) > 1 else base
    annotation = type(parent).model_fields[path[-1]].annotation
    for candidate in _candidates(path, value, annotation, tmp):
        override = (
            _nested(path[:-1], candidate)
            if isinstance(candidate, dict) and path in SPECIAL
            else _nested(path, candidate)
        )
        try:
            s = st.get_settings(**_merge(BASE, override))
        except (ValidationError, ValueError):
            continue
        if _get(s, path) != value:
            return s, _get(s, path)
    raise AssertionError(f"found no different valid value for {'.'.join(path)} (now {value!r})")


# ------------------------------------------------------------------ builders (product code)
def _engine(s: Settings):
    from ifd_core.analysis.wiring import engine_params, episode_params

    return engine_params(s), episode_params(s)


def _v1(s: Settings):
    """detect_v1 over a SYNTHETIC grid of options: each threshold sweeps through its gate."""
    from ifd_core.analysis.ifd_v1 import detect_v1

    rows = []
    under = 20_000.0

    def row(volume: float, ratio: float, premium: float, distance_pct: float) -> None:
        rows.append(
            {
                "row": len(rows),
                "right": "C",
                "buy_volume": int(volume),
                "sell_volume": 0,
                "unsigned_volume": 0,
                "open_interest": max(int(volume / ratio), 1),
                "premium": premium,
                "underlying_price": under,
                "strike": under * (1 + distance_pct / 100.0),
            }
        )

    for i in range(400):  # vol/OI from 5 to 105: the gate and the tiers
        row(10_000, 5 + i * 0.25, 1e6, 1.0)
    for v in range(100, 2_000, 10):  # volume gate
        row(v, 40.0, 1e6, 1.0)
    for p in range(50_000, 200_000, 1_000):  # premium gate
        row(1_000, 40.0, float(p), 1.0)
    for i in range(100):  # distance: actionable
        row(1_000, 40.0, 1e6, i * 0.05)
    out = detect_v1(pl.DataFrame(rows), s.analysis.v1)
    return out.select("row", "tier", "actionable").sort("row").rows()


def _labels(s: Settings):
    from ifd_core.trading.labels import BarrierParams

    return BarrierParams.from_settings(s)


def _executor(s: Settings):
    from ifd_core.trading.paper import executor_from_settings, limits_from_settings

    ex = executor_from_settings("v3", s, halted=lambda: None, run_id="r", mode="backtest")
    return ex.cfg, ex.limits, ex.equity, limits_from_settings(s)


def _broker(s: Settings):
    from ifd_core.broker.factory import broker_from_settings

    b = broker_from_settings(s)
    return type(b).__name__, getattr(b, "fee_per_contract", None)


def _decode_limits(s: Settings):
    from ifd_core.marketdata.dbn_files import DecodeLimits

    return DecodeLimits.from_settings(s)


def _lake_root(s: Settings):
    from warehouse.lake import Lake

    return Lake(s.data_dir).root


def _historical_client(s: Settings):
    from ifd_core.marketdata.historical import make_client

    c = make_client(s)
    return c.key, c.gateway


def _barchart_client(s: Settings):
    """What the Barchart client was built with: the key and URL it would send, the root it asks
    for, its timeout, its throttle and where it caches."""
    from ifd_core.marketdata.barchart import make_client

    c = make_client(s)
    lim = c.limiter
    return c._key, c.base_url, c.root, c.timeout_s, lim.per_minute, lim.per_day, c.cache_dir


def _barchart_check(s: Settings):
    """The cross-check's rule columns over a SYNTHETIC grid of differences between Databento's
    and Barchart's open interest and settlements (jobs/barchart_check.py's own call)."""
    from expectations.derive import CROSS_CHECKS, cross_check

    exp = dt.date(2026, 6, 18)
    n = 400
    keys = {"expiration": [exp] * n, "strike": [20_000.0 + 25 * i for i in range(n)]}
    d = pl.DataFrame(
        {**keys, "right": ["C"] * n, "open_interest": [1_000] * n, "settlement": [100.0] * n}
    )
    b = pl.DataFrame(
        {
            **keys,
            "right": ["C"] * n,
            "symbol": [f"S{i}" for i in range(n)],
            "open_interest": [1_000 + i for i in range(n)],
            "settlement": [100.0 + 0.0005 * i for i in range(n)],
        }
    )
    b = b.with_columns(pl.col("open_interest").cast(pl.Int64))
    checked = cross_check(d, b, s.barchart.oi_tolerance, s.barchart.settlement_tolerance)
    return checked.select(*CROSS_CHECKS).rows()


def _massive_client(s: Settings):
    """What the Massive client was built with: the key and URL, the underlyings, the contract
    filters and limits, the pagination, the quote lookback, the timeout and its throttle."""
    from ifd_core.marketdata.massive_options import make_client

    c = make_client(s)
    return (
        c._key,
        c.base_url,
        c.underlyings,
        c.expiry_days,
        c.strike_band_pct,
        c.max_contracts,
        c.page_limit,
        c.max_pages,
        c.quote_lookback_ns,
        c.timeout_s,
        c.limiter.per_minute,
    )


def _confidence_weight(s: Settings):
    """The confidence a SYNTHETIC v3 signal (0.6) of an episode with a stored SYNTHETIC
    confirmation (0.9) trades with: what run_backtest hands the v3 executor."""
    from ifd_core.analysis.cross_asset import weighted_confidence

    sig = pl.DataFrame({"algo": ["v3"], "episode_id": ["e1"], "confidence": [0.6]})
    conf = pl.DataFrame({"episode_id": ["e1"], "confirmation": [0.9]})
    return weighted_confidence(sig, conf, s.massive.confidence_weight)["confidence"].to_list()


def _oi_fallback(s: Settings):
    """v1's open interest source on a SYNTHETIC date without Databento's statistics: what
    jobs/oi_fallback.py hands the v1 detector (None: v1 gets no open interest that day)."""
    from jobs.oi_fallback import choose_fallback

    day = dt.date(2026, 3, 10)
    exp = int(dt.datetime(2026, 3, 20, 20, tzinfo=dt.UTC).timestamp()) * 10**9
    defs = pl.DataFrame(
        {"instrument_id": [1], "expiration": [exp], "strike": [21000.0], "instrument_class": ["C"]},
        schema={
            "instrument_id": pl.UInt32,
            "expiration": pl.UInt64,
            "strike": pl.Float64,
            "instrument_class": pl.String,
        },
    )
    chain = pl.DataFrame(
        {
            "date": [day],
            "root": [s.barchart.root],
            "expiration": [dt.date(2026, 3, 20)],
            "strike": [21000.0],
            "right": ["C"],
            "open_interest": [40],
        }
    )
    got = choose_fallback(s, day, False, chain, defs)
    return None if got is None else got.rows()


def _live_params(s: Settings):
    from jobs.live.runner import live_params

    return live_params(s, "127.0.0.1", 13000)


def _session_periods(s: Settings):
    from ifd_core.calendar import next_period

    t0 = int(dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp() * 1e9)
    return [next_period(t0 + h * 3_600 * 10**9, s.live.session_policy) for h in range(0, 48, 3)]


def _budget(s: Settings):
    from ifd_core.ops.budget import BudgetGate

    gate = BudgetGate(s.budget)
    grid = [
        gate.authorize(amount, "historical", spent)
        for amount in (0.5, 3.0, 4.9, 5.2, 6.0, 9.9, 10.5, 12.0, 25.0, 60.0, 90.0)
        for spent in (0.0, 50.0, 100.0, 130.0, 140.0, 150.0, 160.0, 165.0, 170.0)
    ]
    return gate.monthly_budget, gate.alert_thresholds(), [repr(a) for a in grid]


def _prices(s: Settings):
    return st.price_on(s, dt.date(2026, 6, 1))


def _cost_advice(s: Settings):
    """The pure cost advice over a SYNTHETIC grid: strikes every 0.1 % from the underlying out
    to 20 %, each traded in its own New York hour band, and one far-strike signal per session
    going back 30 sessions, each a step farther out (so both the band and the quiet window
    move what is advised)."""
    from ifd_core.ops.cost_advice import AdviceParams, advise
    from warehouse.tables import TABLES

    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(30)]
    usage = pl.DataFrame(
        [
            {
                "date": d,
                "schema": "mbo",
                "origin": "historical",
                "instrument_id": k,
                "raw_symbol": f"S{k}",
                "root": "NQ",
                "strike": 100.0 * (1 + k / 1000),
                "underlying_price": 100.0,
                "hour": k % 24,
                "records": 1 + k % 7,
                "bytes": 56 * (1 + k % 7),
            }
            for d in days
            for k in range(200)
        ]
    )
    sig = pl.DataFrame(
        [
            {
                "date": d,
                "algo": "v3",
                "signal_id": f"x{i}",
                "episode_id": None,
                "strike": 100.0 * (1 + (60 + 5 * (29 - i)) / 1000),
                "underlying_price": 100.0,
                "hour": (60 + 5 * (29 - i)) % 24,
            }
            for i, d in enumerate(days)
        ]
    )
    r = advise(
        usage,
        sig,
        TABLES["cost_ledger"].empty(),
        AdviceParams.from_settings(s.costs),
        days[0],
        days[-1],
        "GLBX.MDP3",
    )
    return r.to_dict()


def _alerts(s: Settings):
    from ifd_core.ops.alerts import rules_from

    return rules_from(s.alerts)


def _breaker(s: Settings):
    """A Breaker on a fake clock through failures, a failure share, slow calls and re-trips."""
    from ifd_core.ops.resilience import Breaker

    now = [0.0]

    def make() -> Breaker:
        return Breaker("probe", s.resilience.breaker, clock=lambda: now[0])

    trace: list = []
    b = make()  # consecutive failures
    for _ in range(8):
        b.record(False, 0.01)
        trace.append(b.state)
    for share in [0.30 + 0.02 * k for k in range(20)]:  # failure shares, evenly spread
        b = make()
        for i in range(60):
            b.record(int((i + 1) * share) == int(i * share), 0.01)
            trace.append(b.state)
    b = make()  # slow calls, ever slower
    for i in range(60):
        b.record(True, 2.0 + i * 0.1)
        trace.append(b.state)
    b = make()  # open, then wait, probe, re-trip, ... (cool-downs double up to the cap)
    for _ in range(s.resilience.breaker.consecutive_failures):
        b.record(False, 0.01)
    for step in range(4_000):
        now[0] += 1.0
        if b.allow():
            b.record(step > 2_500, 0.01)  # probes fail for a while, then succeed
        trace.append((b.state, b.snapshot()["cooldown_s"]))
    return trace


def _retry(s: Settings):
    from ifd_core.ops.resilience import retrying_reads

    r = retrying_reads(s.resilience.retry, sleep=lambda _: None)
    return r.stop.max_attempt_number, r.wait.multiplier, r.wait.max


def _criteria(s: Settings):
    from ifd_core.trading.extended import Criteria

    return Criteria.from_settings(s.extended)


def _simulator(s: Settings):
    from ifd_core.simulator.params import SimParams

    return SimParams.from_settings(s.simulator)


def _monte_carlo(s: Settings):
    """Monte Carlo of a SYNTHETIC daily P&L series (the backtest's own _monte_carlo)."""
    from types import SimpleNamespace

    from jobs.backtest import _monte_carlo

    days = [dt.date(2026, 3, 2) + dt.timedelta(days=i) for i in range(30)]
    pnl = [(-1) ** i * 40_000.0 * (i % 4) + 500.0 for i in range(30)]
    daily = pl.DataFrame({"algo": ["v3"] * 30, "date": days, "net_pnl": pnl})
    result = SimpleNamespace(algos=["v3"], daily=daily, capital=100_000.0)
    summary, _ = _monte_carlo(result, s)
    return summary


def _walk_forward(s: Settings):
    from jobs.backtest import _walk_forward

    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(60)]
    rows = pl.DataFrame(
        [
            {"algo": "v3", "date": d, "min_confidence": c, "net_pnl": float((i * 7 + j * 13) % 11)}
            for i, d in enumerate(days)
            for j, c in enumerate((0.0, 0.5, 0.7))
        ]
    )
    return _walk_forward(rows, days, s)


def _ab_of(s: Settings):
    """The A/B statistics of a SYNTHETIC finished backtest (daily P&L only): the bootstrap."""
    from types import SimpleNamespace

    from jobs.ab import ab_of

    days = [dt.date(2026, 3, 2) + dt.timedelta(days=i) for i in range(20)]
    daily = pl.DataFrame(
        {
            "algo": ["v3"] * 20 + ["v1"] * 20,
            "date": days * 2,
            "net_pnl": [float((i * 37) % 23) for i in range(20)]
            + [float((i * 11) % 19) for i in range(20)],
        }
    )
    bt = SimpleNamespace(outcomes=pl.DataFrame(), signals=pl.DataFrame(), daily=daily)
    return ab_of(bt, s).pnl_diff_ci


def _ab_decision(s: Settings):
    """ab_stats.decide with the settings' bars over a grid of SYNTHETIC arm accuracies."""
    from ifd_core.trading.ab_stats import decide
    from ifd_core.trading.metrics import accuracy_stats
    from jobs.ab import decision_rule

    def arm(correct: int, n: int):
        return accuracy_stats(["correct"] * correct + ["incorrect"] * (n - correct))

    out = []
    for c3 in range(204, 280, 4):
        v = decide(arm(c3, 300), arm(210, 300), pnl_diff_ci=(5.0, 1.0, 9.0), **decision_rule(s.ab))
        out.append(repr(v))
    return out


def _rollout(s: Settings):
    from ifd_core.trading import rollout as ro

    r = s.rollout
    since = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ev = ro.StageEvidence(
        sessions=6,
        resolved_c=120,
        correct_c=86,
        resolved_i=120,
        correct_i=84,
        pnl_per_trade_ci_low=-40.0,
        pnl_per_trade=12.0,
        trades=80,
        latency_p95_ms=95.0,
        uptime_rth=0.9992,
        cost_per_signal=4.8,
        critical_incidents=0,
    )
    weak = dataclasses.replace(ev, resolved_c=55, correct_c=31)
    strong = dataclasses.replace(
        ev, sessions=12, resolved_c=300, correct_c=270, resolved_i=300, correct_i=240
    )
    out: list = [ro.share_of(x, r) for x in ro.STAGES]
    out += [ro.min_sessions(x, r) for x in ro.STAGES]
    for stage in ro.STAGES:
        state = ro.RolloutState(stage, ro.share_of(stage, r), since, dt.date(2026, 3, 2))
        out.append(ro.promotion_rules(state, ev, r))
        for e in (ev, strong):
            out.append(ro.review_session(state, e, r, since + dt.timedelta(days=9)))
        for h in (
            ro.LiveHealth(feed_unhealthy_s=61.0),
            *(ro.LiveHealth(error_windows=n, failed_windows=3) for n in (19, 20, 21, 22, 40)),
            ro.LiveHealth(realized_daily_loss=2_100.0, capital=100_000.0),
            ro.LiveHealth(realized_daily_loss=52.0, capital=100_000.0),
            ro.LiveHealth(open_risk=5_200.0, capital=100_000.0),
            ro.LiveHealth(severe_latency_s=310.0),
        ):
            out.append(ro.immediate_rules(state, h, r))
    for n in (49, 50, 51, 55):
        out.append(ro.soft_demotion_rules(dataclasses.replace(weak, resolved_c=n), r))
    back = ro.RolloutState("ROLLED_BACK", 0, since, None, since, "CANARY")
    for minutes in (30, 59, 61, 65, 90):
        try:
            out.append(ro.operator_promote(back, r, since + dt.timedelta(minutes=minutes), None, 1))
        except ro.RolloutRefused as refused:  # before the cool-down: refused, with its rules
            out.append(refused.rules)
    out.append([ro.routed(f"sig-{i}", r.salt, 50) for i in range(64)])
    return out


def _rollout_controller(s: Settings):
    from jobs.rollout import RolloutController
    from warehouse.lake import Lake

    ctl = RolloutController(Lake(s.data_dir), s)
    return [ctl.executes(algo, "sig-1") for algo in ("v1", "v3")]


def _ib(s: Settings):
    """The IB broker and quotes clients against a recording fake: what they connect with and
    which account they accept (the first managed account is a live one)."""
    from ifd_core.broker.ib_broker import IBBroker
    from ifd_core.broker.ib_quotes import UnderlyingRecorder

    class Hook:
        def __iadd__(self, handler):
            return self

        def __call__(self, *a, **k) -> list:
            return []

    class FakeIB:
        def __init__(self) -> None:
            self.calls: list = []

        def isConnected(self) -> bool:  # noqa: N802 - ib_async's name
            return False

        def connect(self, *a, **k) -> None:
            self.calls.append((a, tuple(sorted(k.items()))))

        def managedAccounts(self) -> list[str]:  # noqa: N802
            return ["U222", "DU111"]

        def __getattr__(self, name: str):  # events accept handlers, requests return nothing
            return Hook()

    out = []
    for make in (
        lambda ib: IBBroker(s.ib, confirm_live=True, ib=ib),
        lambda ib: UnderlyingRecorder(s.ib, ib=ib),
    ):
        ib = FakeIB()
        client = make(ib)
        try:
            client.connect()
            outcome = getattr(client, "account", "connected")
        except Exception as exc:  # the refusal is the behaviour under test
            outcome = type(exc).__name__
        out.append((ib.calls, outcome))
    return out


def _logging(s: Settings):
    from ifd_core.logs import IFD_LOGGERS, configure_logging

    before = {
        n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in IFD_LOGGERS
    }
    try:
        return configure_logging(s.log_level)
    finally:  # leave logging as it was: later tests capture records their own way
        for n, (level, handlers) in before.items():
            logger = logging.getLogger(n)
            logger.setLevel(level)
            logger.handlers[:] = handlers


def _profile(s: Settings):
    return _engine(s), _executor(s)


def _task_runners(s: Settings):
    # Each key configures the runner it belongs to: workers the process pool and the local Dask
    # cluster, dask_address the Dask runner; runner picks one of them.
    from flows.fanout import task_runner_for

    built = []
    for runner in ("inline", "processes", "dask"):
        r = task_runner_for(s.compute.model_copy(update={"runner": runner}))
        built.append(
            (
                type(r).__name__,
                getattr(r, "_max_workers", None),
                getattr(r, "address", None),
                str(getattr(r, "cluster_kwargs", None)),
            )
        )
    return s.compute.runner, built


def _report_link(s: Settings):
    from flows.report_links import report_link

    return report_link(Path(s.data_dir) / "reports" / "r.html", s).url


BUILDERS: dict[str, list[Callable[[Settings], Any]]] = {
    "profile": [_profile],
    "data_dir": [_lake_root],
    "log_level": [_logging],
    "databento.api_key": [_historical_client, _live_params],
    "databento.dataset": [_live_params],
    "databento.historical_gateway": [_historical_client],
    "barchart": [_barchart_client, _barchart_check],
    "massive": [_massive_client],
    "barchart.oi_fallback": [_oi_fallback],
    "massive.confidence_weight": [_confidence_weight],
    "warehouse.data_dir": [_lake_root],
    "warehouse.max_": [_decode_limits],
    "budget": [_budget],
    "costs.prices": [_prices],
    "costs.advice_": [_cost_advice],
    "analysis": [_engine],
    "analysis.v1": [_v1],
    "labels": [_labels],
    "risk": [_executor],
    "paper": [_executor, _broker],
    "ab": [_ab_decision],
    "ib": [_ib],
    "execution.broker": [_broker],
    "backtest": [_monte_carlo, _walk_forward, _ab_of],
    "extended": [_criteria],
    "live": [_live_params, _session_periods],
    "resilience.breaker": [_breaker],
    "resilience.retry": [_retry],
    "rollout": [_rollout, _rollout_controller],
    "alerts": [_alerts],
    "simulator": [_simulator],
    "reports": [_report_link],
    "compute": [_task_runners],
}

# Read only inside long-running loops that no small constructor exposes: the attribute must be
# read by product code (checked), and the reason says why no builder reaches it.
READ_IN_LOOPS: dict[str, str] = {
    "costs.allocation": "jobs/cost_report.month_to_date, over the lake's ledgers",
    "costs.live_streaming_budget_stop": "the live runner's budget check, mid-stream",
    "execution.settle_s": "the real-time desk's wait for flattening fills at the session end",
    "backtest.confidence_grid": "run_backtest's variant executors, over a lake replay",
    "extended.sessions": "jobs/extended: how many stored sessions the test replays",
    "live.stale_after_s": "the live runner's per-date FeedLiveness",
    "live.flush_every_s": "the live runner's flush cadence",
    "live.flush_every_records": "the live runner's flush cadence",
    "live.backfill_enabled": "the live runner's LiveSource (gap backfill)",
    "live.min_backfill_gap_s": "the live runner's LiveSource (gap backfill)",
    "live.option_roots": "subscriptions_for, from the lake's definitions",
    "live.future_root": "subscriptions_for, from the lake's definitions",
    "warehouse.sql_allowed_directories": "`ifd sql`'s connection (connect_read_only)",
}


def _builders_for(key: str) -> list[Callable[[Settings], Any]]:
    return [
        b
        for prefix, bs in BUILDERS.items()
        for b in bs
        if key == prefix
        or key.startswith(prefix + ".")
        or key.startswith(prefix)
        and prefix.endswith("_")
    ]


def _read_by_product(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    pattern = re.compile(rf"\.{leaf}\b")
    for pkg in PRODUCT:
        for path in (ROOT / pkg).rglob("*.py"):
            if path.name == "settings.py" and pkg == "ifd_core":
                continue
            if pattern.search(path.read_text()):
                return True
    return False


KEYS = [".".join(p) for p in leaf_keys()]


def test_the_walk_sees_every_group():
    # A guard for the walker itself: nested groups are walked, and their leaves are found.
    assert "analysis.v3.weights.size" in KEYS and "resilience.breaker.cooldown_s" in KEYS
    assert "analysis.v3" not in KEYS and len(KEYS) > 150


@pytest.mark.parametrize("key", KEYS)
def test_setting_changes_what_code_builds(key, tmp_path):
    if key in READ_IN_LOOPS:
        assert _read_by_product(key), f"setting {key} is read by no product code"
        return
    builders = _builders_for(key)
    assert builders, f"setting {key} has no builder: add the product constructor that reads it"
    path = tuple(key.split("."))
    base = st.get_settings(**BASE)
    changed, value = changed_settings(path, tmp_path)
    for build in builders:
        if build(base) != build(changed):
            return
    names = ", ".join(b.__name__.lstrip("_") for b in builders)
    pytest.fail(f"setting {key} changes nothing that code builds ({key} = {value!r}; {names})")


def test_read_in_loops_stays_an_exception():
    assert set(READ_IN_LOOPS) <= set(KEYS), "READ_IN_LOOPS names keys that no longer exist"
    assert len(READ_IN_LOOPS) <= 15
