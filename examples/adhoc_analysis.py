# %% [markdown]
# # Ad-hoc analysis of the IFD warehouse (runs as a script or as notebook cells)
#
# Open in Jupyter/VS Code (`# %%` cells) or run `uv run python examples/adhoc_analysis.py`. Reads
# only: DuckDB opens the catalog read-only and the lake's writers publish whole files by atomic
# rename, so this is safe while flows run, the live stream included. Data made by `make demo` is
# SYNTHETIC: nothing here is evidence about real markets.

# %%
from pathlib import Path

from ifd_core.settings import get_settings
from warehouse.lake import Lake
from warehouse.sql import query

lake = Lake(get_settings().data_dir)
sql = (Path(__file__).resolve().parent / "signals_outcomes_windows.sql").read_text()

# %% Signals of the latest date with their outcome and their pressure window
signals = query(lake, sql)
print(signals)

# %% Accuracy so far per algorithm (resolved signals only)
print(
    query(
        lake,
        """
        SELECT algo, count(*) AS signals,
               count(*) FILTER (WHERE label IN ('correct', 'incorrect')) AS resolved,
               round(avg(CASE label WHEN 'correct' THEN 1.0 WHEN 'incorrect' THEN 0.0 END), 3)
                 AS accuracy
        FROM signals_with_outcomes GROUP BY algo ORDER BY algo
        """,
    )
)
