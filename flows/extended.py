"""Prefect flow `extended_test`: the two-week validation. Historical mode replays the last
sessions; real-time mode (a `test_id`) adds the newest stored session each day after the close
and reports the verdict so far; artifacts and an HTML report either way."""

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
    name="extended_test",
    log_prints=True,
    flow_run_name=run_name(
        lambda p: (
            f"extended-{p['realtime_test_id']}"
            if p["realtime_test_id"]
            else f"extended-{span(p['start'], p['end'], 'last-sessions')}"
        )
    ),
)
def extended_test(
    start: dt.date | None = None,
    end: dt.date | None = None,
    realtime_test_id: str | None = None,
) -> dict | State:
    """PASS / FAIL(reasons) / INCONCLUSIVE(reasons) for v3 against the configured criteria.

    Args:
        start: First session of a replayed test. Empty (with end): the last 10 stored sessions.
        end: Last session of a replayed test. Empty: the latest stored session.
        realtime_test_id: A real-time test to extend with the newest session (each evening);
            empty for a replay.
    """
    from jobs.extended import run_extended
    from reports.trading import write_extended_report
    from warehouse.lake import Lake

    if (skip := skip_scheduled_holiday("extended-test")) is not None:
        return skip
    log = get_run_logger()
    settings = flow_settings()
    # The days' detection pass as task runs on compute.runner (docs/operations.md, "Scaling out").
    with prefect_mapper(settings.compute) as mapper:
        res = run_extended(
            Lake(settings.data_dir),
            settings,
            start=start,
            end=end,
            realtime_test_id=realtime_test_id,
            progress=log.info,
            mapper=mapper,
        )
    report = write_extended_report(settings.data_dir, res)
    lines = [
        f"{len(res.days)} sessions ({res.mode}), complete: {res.complete}.",
        "",
        f"Verdict: **{res.verdict}**",
    ]
    publish(
        "extended-test", f"Extended test {res.test_id}", res.synthetic, lines, res.final, report
    )
    from ifd_core.trading.extended import verdict
    from jobs.extended import criteria_from

    statistical = verdict(res.daily, criteria_from(settings), operational=False)
    return {
        "test_id": res.test_id,
        "verdict": str(res.verdict),
        "report": str(report),
        "statistical_verdict": str(statistical),
    }
