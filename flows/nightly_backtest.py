"""Prefect flow `nightly_backtest`: the backtest (both algorithms) and the A/B test over the
recent stored sessions, with table, markdown and link artifacts and the HTML reports."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.states import State

from flows.calendar_gate import skip_scheduled_holiday
from flows.fanout import prefect_mapper
from flows.run_names import run_name, span
from flows.settings import flow_settings
from flows.trading_reports import publish


@flow(
    name="nightly_backtest",
    log_prints=True,
    flow_run_name=run_name(
        lambda p: f"backtest-{span(p['start'], p['end'], 'last-' + str(p['sessions']))}"
    ),
)
def nightly_backtest(
    sessions: int = 20,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict | State:
    """Backtest v3 and v1 (default: the last `sessions` stored sessions) and run the A/B test on
    the same days; publishes metrics, Monte Carlo, the A/B verdict and the report links.

    Args:
        sessions: How many sessions (the last ones up to end) to backtest when start is empty.
        start: First session backtested (then every stored session from it to end).
        end: Last session backtested. Empty: the latest stored session.
    """
    from jobs.ab import run_ab
    from jobs.backtest import metrics_of, trading_days
    from reports.trading import write_ab_report, write_backtest_report
    from warehouse.lake import Lake

    if (skip := skip_scheduled_holiday("nightly-backtest")) is not None:
        return skip
    log = get_run_logger()
    settings = flow_settings()
    lake = Lake(settings.data_dir)
    days = trading_days(lake, start or dt.date(1900, 1, 1), end or dt.date(2999, 12, 31))
    if not days:
        raise ValueError("no stored sessions to backtest: ingest data first")
    days = days[-sessions:] if not start else days
    # The days' detection pass as task runs on compute.runner (docs/operations.md, "Scaling out").
    with prefect_mapper(settings.compute) as mapper:
        ab = run_ab(lake, settings, days[0], days[-1], progress=log.info, mapper=mapper)
    bt = ab.backtest
    metrics = metrics_of(bt)
    report = write_backtest_report(settings.data_dir, bt, metrics)
    ab_report = write_ab_report(settings.data_dir, ab, metrics)
    lines = [f"{len(bt.days)} sessions {bt.days[0]} to {bt.days[-1]}, run `{bt.run_id}`.", ""]
    for algo, mc in bt.monte_carlo.items():
        lines.append(
            f"- {algo}: Monte Carlo 5th pct terminal return {mc['terminal_return_p5']:+.2%}, "
            f"worst-5% drawdown {mc['worst5_drawdown']:.2%}, P(loss) {mc['prob_loss']:.1%}"
        )
    lines += ["", f"A/B verdict: **{ab.verdict.text}**", f"A/B report: `{ab_report}`"]
    publish(
        "nightly-backtest", "Nightly backtest and A/B test", bt.synthetic, lines, metrics, report
    )
    return {
        "run_id": bt.run_id,
        "report": str(report),
        "ab_report": str(ab_report),
        "verdict": ab.verdict.text,
        "accuracy": ab.accuracy,
    }
