"""Flow runs are named from their parameters (flows/run_names.py), so the UI's runs list says
what each run did: `detection-2026-03-30-both`, not a random adjective-animal pair."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.run_names import with_defaults
from flows.serve import deployment_specs, load_flow

D = dt.date(2026, 3, 30)


def name_of(flow, **given) -> str:
    """The name Prefect gives a run of ``flow`` called with ``given`` (defaults filled in)."""
    return flow.flow_run_name.render(with_defaults(flow.fn, given))


def test_every_deployed_flow_names_its_runs():
    for spec in deployment_specs():
        flow = load_flow(spec["entrypoint"])
        assert callable(flow.flow_run_name), spec["name"]
        assert name_of(flow, **(spec.get("parameters") or {}))  # the scheduled run's name


@pytest.mark.parametrize(
    ("entrypoint", "given", "expected"),
    [
        ("flows/detection.py:detection", {"day": D}, "detection-2026-03-30-both"),
        ("flows/detection.py:detection", {"algo": "v3"}, "detection-latest-v3"),
        ("flows/historical_ingest.py:historical_ingest", {"trade_date": D}, "ingest-2026-03-30"),
        ("flows/historical_ingest.py:historical_ingest", {"paths": ["a", "b"]}, "ingest-2-files"),
        ("flows/historical_ingest.py:historical_ingest", {}, "ingest-today"),
        ("flows/baseline_refresh.py:baseline_refresh", {}, "baselines-tonight"),
        ("flows/nightly_backtest.py:nightly_backtest", {}, "backtest-last-20"),
        (
            "flows/nightly_backtest.py:nightly_backtest",
            {"start": dt.date(2026, 3, 2), "end": D},
            "backtest-2026-03-02-to-2026-03-30",
        ),
        ("flows/extended.py:extended_test", {}, "extended-last-sessions"),
        ("flows/extended.py:extended_test", {"realtime_test_id": "rt-1"}, "extended-rt-1"),
        ("flows/cost_report.py:cost_report", {"day": "2026-03-31"}, "cost-report-2026-03-31"),
        ("flows/live_stream.py:live_stream", {}, "live-next-session-both"),
        ("flows/lake_compaction.py:lake_compaction", {}, "compaction-8-files-2-days-old"),
        ("flows/demo.py:demo", {}, "demo-seed7-30-days-scale0.3"),
    ],
)
def test_run_names_follow_the_parameters(entrypoint, given, expected):
    assert name_of(load_flow(entrypoint), **given) == expected


def test_a_real_run_carries_the_name(prefect_server, data_dir):
    """Prefect applies the name inside the run, with only the given parameters at hand."""
    from prefect.client.orchestration import get_client

    from flows.lake_compaction import lake_compaction

    state = lake_compaction(min_files=3, return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.name == "compaction-3-files-2-days-old"
