"""Backfilling a live-feed gap through the Historical client, behind the budget gate.

Used when the live gateway will not replay from before the gap (docs/operations.md §Live run): each
subscription's records of ``[gap.start_ns, gap.end_ns)`` are quoted, authorized against the month's
budget and downloaded by ``fetch_historical`` (which books the quote and the spend in the cost
ledger), then merged into one ts_recv-ordered stream. A refusal raises ``BudgetRefused``; the live
source then records the gap as ``skipped_budget`` and its windows as incomplete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ifd_core.marketdata.historical import fetch_historical
from ifd_core.marketdata.live_source import Gap, Subscription
from ifd_core.marketdata.record_source import FileReplaySource, RecordBatch
from ifd_core.settings import Settings
from warehouse.cost_ledger import LakeCostLedger
from warehouse.lake import Lake


class HistoricalBackfiller:
    def __init__(self, lake: Lake, settings: Settings, client=None) -> None:
        self.lake = lake
        self.settings = settings
        self.client = client

    def __call__(self, gap: Gap, subscriptions: Sequence[Subscription]) -> list[RecordBatch]:
        out_dir = self.lake.raw / "backfill"
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for sub in subscriptions:
            result = fetch_historical(
                self.settings,
                LakeCostLedger(self.lake),
                start=int(gap.start_ns),
                end=int(gap.end_ns or gap.start_ns + 1),
                schema=sub.schema,
                symbols=list(sub.symbols),
                stype_in=sub.stype_in,
                out_dir=out_dir,
                client=self.client,
                filename=f"gap-{gap.start_ns}-{gap.end_ns}-{sub.schema}.dbn.zst",
            )
            paths.append(Path(result.path))
        return list(FileReplaySource(paths, batch_records=500_000, origin="backfill").batches())
