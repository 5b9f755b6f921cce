"""Scheduled runs follow the CME calendar: a run on a day without a session is skipped, not run on
empty data (a cron says "Monday to Friday"; only the exchange calendar knows Good Friday).

A skipped run ends ``Completed`` with the reason as its state message and a markdown artifact, so
the UI shows why nothing happened; a run given an explicit date is never skipped.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from ifd_core.calendar import is_trading_day

NY = ZoneInfo("America/New_York")


def today_ny(now: dt.datetime | None = None) -> dt.date:
    """The calendar date in New York (schedules are in New York time)."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(NY).date()


def no_session(day: dt.date) -> str | None:
    """Why ``day`` has no CME session (weekend or exchange holiday), or None when it has one."""
    if is_trading_day(day):
        return None
    kind = "a weekend" if day.weekday() >= 5 else "a CME holiday"
    return f"{day} is {kind}: no session, nothing to do"


def skipped(flow_key: str, reason: str) -> State:
    """The final state of a skipped run (and its artifact)."""
    create_markdown_artifact(key=f"{flow_key}-skipped", markdown=f"# Skipped\n\n{reason}")
    return Completed(message=f"skipped: {reason}", data={"skipped": reason})


def auto_scheduled() -> bool:
    """Whether the running flow run was created by its deployment's schedule (a run triggered by
    hand from the UI or the CLI is never skipped: someone asked for it)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.auto_scheduled)


def skip_scheduled_holiday(flow_key: str) -> State | None:
    """For flows scheduled on trading days: the skipped state when a scheduled run falls on a day
    without a session, else None (the run goes on)."""
    if not auto_scheduled():
        return None
    reason = no_session(today_ny())
    return skipped(flow_key, reason) if reason else None
