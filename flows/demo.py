"""The README's main job on embedded default data: simulate → ingest → summary.

Everything it produces is SYNTHETIC and says so. It grows with the project (detection,
backtests, reports); today it simulates the default market, ingests it with validation, and
prints what landed and the data-quality results.
"""

from __future__ import annotations

import time

from rich.console import Console


def run_demo(settings, *, days: int, seed: int, scale: float, console: Console, progress) -> int:
    from ifd_core.marketdata.simulator import simulate_market
    from warehouse.ingest import ingest_files
    from warehouse.lake import Lake
    from warehouse.sql import query

    lake = Lake(settings.data_dir)
    sim_dir = lake.root / "simulated" / f"seed{seed}-days{days}-scale{scale:g}"
    t0 = time.perf_counter()
    console.rule("[bold]IFD demo — SYNTHETIC data[/]")
    with progress() as prog:
        task = prog.add_task("simulating (synthetic)", total=days)
        summary = simulate_market(
            sim_dir, days, seed, scale=scale, progress=lambda d, t: prog.update(task, completed=d)
        )
    t1 = time.perf_counter()
    console.print(
        f"simulated {len(summary.days)} trading days {summary.days[0]}..{summary.days[-1]} "
        f"into {sim_dir} in {t1 - t0:.1f}s ({summary.planted} planted flows, "
        f"{summary.decoys} decoys)",
        highlight=False,
    )
    with progress() as prog:
        task = prog.add_task("ingesting", total=len(summary.files))
        report = ingest_files(summary.files, lake, progress=lambda r: prog.advance(task))
    t2 = time.perf_counter()
    records = sum(report.rows().get(t, 0) for t in ("mbo", "instruments", "statistics"))
    console.print(
        f"ingested {len(report.files)} files, {records:,} records in {t2 - t1:.1f}s "
        f"({records / max(t2 - t1, 1e-9):,.0f} records/s incl. validation)",
        highlight=False,
    )

    from ifd_core.cli import print_frame

    landed = query(
        lake,
        " UNION ALL ".join(
            f"SELECT '{t}' AS \"table\", origin, count(*) AS rows, count(DISTINCT date) AS days, "
            f"min(date) AS first, max(date) AS last FROM {t} GROUP BY ALL"
            for t in ("mbo", "trades", "instruments", "open_interest", "settlements")
        ),
    )
    print_frame(landed, title="What landed in the lake (origin says SYNTHETIC data)")
    dq = query(
        lake,
        """
        SELECT dataset, expectation, "column", count(*) AS batches,
               count(*) FILTER (WHERE success) AS passed, sum(element_count) AS rows_checked,
               sum(unexpected_count) AS unexpected
        FROM dq_results WHERE run_id = ?
        GROUP BY ALL ORDER BY 1, 2, 3""",
        [report.run_id],
    )
    print_frame(dq, title=f"Data-quality results of ingest run {report.run_id}")
    bad = [f for f in report.files if not f.ok]
    for f in bad:
        console.print(f"[red]{f.status}[/] {f.reason}", highlight=False)
    console.print(
        f"\nAll of this is SYNTHETIC. Ground truth: {summary.truth_path}\n"
        f'Try: uv run ifd sql "SELECT date, count(*) FROM trades GROUP BY 1 ORDER BY 1"',
        highlight=False,
    )
    return 1 if bad else 0
