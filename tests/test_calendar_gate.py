"""Scheduled flows follow the CME calendar: a holiday or weekend run is skipped with its reason,
a run before a session does its work."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.calendar_gate import no_session, today_ny


def test_good_friday_and_weekends_have_no_session_and_say_why():
    assert (
        no_session(dt.date(2026, 4, 3)) == "2026-04-03 is a CME holiday: no session, nothing to do"
    )
    assert "a weekend" in no_session(dt.date(2026, 4, 4))
    assert no_session(dt.date(2026, 4, 2)) is None


def test_new_york_date_not_utc_date():
    # 01:30 UTC on the 3rd is still the 2nd in New York (EDT, UTC-4).
    assert today_ny(dt.datetime(2026, 4, 3, 1, 30, tzinfo=dt.UTC)) == dt.date(2026, 4, 2)


def test_the_evening_before_good_friday_skips_the_baseline_refresh(monkeypatch, prefect_server):
    import flows.baseline_refresh as mod

    monkeypatch.setattr(mod, "today_ny", lambda: dt.date(2026, 4, 2))
    state = mod.baseline_refresh(return_state=True)
    assert state.is_completed()
    assert state.message == "skipped: 2026-04-03 is a CME holiday: no session, nothing to do"


def test_a_refresh_without_history_fails_loudly(prefect_server):
    from flows.baseline_refresh import baseline_refresh

    with pytest.raises(RuntimeError, match="no stored sessions before it"):
        baseline_refresh(trade_date=dt.date(2026, 3, 10))
