"""`ifd serve` builds its deployments from prefect.yaml, the same source `prefect deploy --all`
reads: every flow importable, every schedule in New York time (or UTC for the ledger's month end),
inactive unless asked, typed parameters that the UI renders as a form."""

from __future__ import annotations

from flows.serve import build_deployments, deployment_specs, load_flow

EXPECTED = {
    "historical-ingest",
    "baseline-refresh",
    "nightly-backtest",
    "extended-test",
    "cost-report",
    "lake-compaction",
    "live-stream",
    "detection",
}


def test_every_flow_of_the_issue_has_a_deployment_with_a_schedule():
    specs = deployment_specs()
    names = {s["name"] for s in specs}
    assert names >= EXPECTED
    for s in specs:
        assert s["schedules"], f"{s['name']} has no schedule"
        for sch in s["schedules"]:
            assert sch["timezone"] in ("America/New_York", "UTC")
    live = next(s for s in specs if s["name"] == "live-stream")
    assert live["concurrency_limit"] == 1  # one run per session


def test_served_deployments_match_the_yaml_and_stay_inactive_unless_asked():
    specs = deployment_specs()
    deps = build_deployments(specs)
    assert [d.name for d in deps] == [s["name"] for s in specs]
    for d, s in zip(deps, specs, strict=True):
        assert [sch.schedule.cron for sch in d.schedules] == [x["cron"] for x in s["schedules"]]
        assert not any(sch.active for sch in d.schedules)
        assert d.parameters == (s.get("parameters") or {})
    assert all(sch.active for d in build_deployments(specs, activate=True) for sch in d.schedules)


def test_dates_and_numbers_render_as_typed_form_fields():
    from prefect.utilities.callables import parameter_schema

    flows = {s["name"]: load_flow(s["entrypoint"]) for s in deployment_specs()}
    ingest = parameter_schema(flows["historical-ingest"].fn).model_dump()["properties"]
    assert "date" in str(ingest["trade_date"])  # a date picker, not free text
    refresh = parameter_schema(flows["baseline-refresh"].fn).model_dump()["properties"]
    assert "date" in str(refresh["trade_date"])
    compaction = parameter_schema(flows["lake-compaction"].fn).model_dump()["properties"]
    assert compaction["min_files"]["type"] == "integer"
