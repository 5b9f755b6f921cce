"""Cost views of the catalog: the budget dashboard, cost per signal and the month-end projection.

They are views (and macros) over the append-only ``cost_ledger`` (plus ``signals`` and
``engine_runs``), never tables of their own, so they cannot drift from the ledger or double count;
every view counts an ``entry_id`` once. Settings stay out of SQL: the budget, the executor's
confidence floor and the "as of" day are macro parameters, and each plain view is its macro at the
default. The views and their columns: docs/operations.md §Costs and warehouse/README.md.
"""

from __future__ import annotations

import duckdb

from ifd_core.ops.costs import DATA_COST_TYPES, FIXED_COST_TYPES, QUOTE_TYPES, TRADING_COST_TYPES
from warehouse.lake import Lake

VIEWS = ("cost_daily", "cost_monthly", "cost_per_signal", "cost_projection")
MACROS = ("cost_monthly_vs_budget", "cost_per_signal_at", "cost_projection_asof")


def _in(types: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{t}'" for t in types) + ")"


def create_cost_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Create (or replace) the cost views and macros; needs the cost_ledger, signals and
    engine_runs views of the earlier migrations."""
    data, fixed = _in(DATA_COST_TYPES), _in(FIXED_COST_TYPES)
    trading, quote = _in(TRADING_COST_TYPES), _in(QUOTE_TYPES)
    con.execute(
        f"""
        CREATE OR REPLACE VIEW cost_daily AS
        WITH e AS (
            SELECT * FROM cost_ledger
            QUALIFY row_number() OVER (PARTITION BY entry_id ORDER BY ts) = 1
        )
        SELECT date, month, entry_type, category,
               sum(amount_usd) AS amount,
               count(*) AS entries,
               CASE WHEN entry_type IN {data} THEN 'data'
                    WHEN entry_type IN {trading} THEN 'trading'
                    WHEN entry_type IN {quote} THEN 'quote' END AS cost_class,
               entry_type IN {data} AS is_data_cost,
               entry_type IN {trading} AS is_trading_cost
        FROM e
        GROUP BY ALL
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE VIEW cost_monthly AS
        SELECT month,
               coalesce(sum(amount) FILTER (WHERE is_data_cost), 0) AS data_cost,
               coalesce(sum(amount) FILTER (WHERE entry_type IN {fixed}), 0)
                   AS subscription_cost,
               coalesce(sum(amount) FILTER (WHERE is_data_cost AND entry_type NOT IN {fixed}), 0)
                   AS marginal_data_cost,
               coalesce(sum(amount) FILTER (WHERE is_trading_cost), 0) AS trading_cost,
               coalesce(sum(amount) FILTER (WHERE entry_type IN {quote}), 0) AS quoted,
               min(date) AS first_date,
               max(date) AS last_date,
               CAST(sum(entries) AS BIGINT) AS entries
        FROM cost_daily
        GROUP BY month
        """
    )
    con.execute(
        """
        CREATE OR REPLACE MACRO cost_monthly_vs_budget(budget) AS TABLE
        SELECT month, data_cost, CAST(budget AS DOUBLE) AS budget,
               data_cost / budget AS utilization, budget - data_cost AS remaining
        FROM cost_monthly
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE MACRO cost_per_signal_at(min_confidence, through := DATE '9999-12-31')
        AS TABLE
        WITH cost AS (
            SELECT month,
                   coalesce(sum(amount) FILTER (WHERE is_data_cost), 0) AS data_cost,
                   coalesce(sum(amount) FILTER (
                       WHERE is_data_cost AND entry_type NOT IN {fixed}), 0) AS marginal_data_cost
            FROM cost_daily WHERE date <= CAST(through AS DATE) GROUP BY month
        ),
        sig AS (
            SELECT strftime(date, '%Y-%m') AS month, algo,
                   count(DISTINCT signal_id) FILTER (
                       WHERE coalesce(origin, '') <> 'synthetic'
                         AND coalesce(confidence, 0) >= min_confidence) AS actionable_signals,
                   count(DISTINCT signal_id) FILTER (WHERE origin = 'synthetic')
                       AS synthetic_signals
            FROM signals WHERE date <= CAST(through AS DATE) GROUP BY ALL
        ),
        runs AS (
            SELECT strftime(date, '%Y-%m') AS month,
                   trim(unnest(string_split(detectors, ','))) AS algo, records
            FROM engine_runs
            WHERE coalesce(origin, '') <> 'synthetic' AND detectors IS NOT NULL
              AND date <= CAST(through AS DATE)
        ),
        rec AS (
            SELECT month, algo, CAST(sum(records) AS BIGINT) AS records FROM runs GROUP BY ALL
        ),
        algos AS (SELECT month, algo FROM sig UNION SELECT month, algo FROM rec),
        per_algo AS (
            SELECT a.month, a.algo,
                   coalesce(s.actionable_signals, 0) AS actionable_signals,
                   coalesce(s.synthetic_signals, 0) AS synthetic_signals,
                   coalesce(r.records, 0) AS records_consumed
            FROM algos a
            LEFT JOIN sig s USING (month, algo)
            LEFT JOIN rec r USING (month, algo)
        ),
        months AS (
            SELECT month FROM cost UNION SELECT month FROM per_algo
        ),
        total AS (
            SELECT m.month, 'all' AS algo,
                   CAST(coalesce(sum(p.actionable_signals), 0) AS BIGINT) AS actionable_signals,
                   CAST(coalesce(sum(p.synthetic_signals), 0) AS BIGINT) AS synthetic_signals,
                   CAST(coalesce(sum(p.records_consumed), 0) AS BIGINT) AS records_consumed
            FROM months m LEFT JOIN per_algo p USING (month)
            GROUP BY m.month
        ),
        shares AS (
            SELECT p.*, p.records_consumed / nullif(t.records_consumed, 0) AS share
            FROM per_algo p JOIN total t USING (month)
            UNION ALL
            SELECT *, 1.0 AS share FROM total
        )
        SELECT s.month, s.algo, s.actionable_signals, s.synthetic_signals, s.records_consumed,
               coalesce(c.data_cost, 0) * s.share AS data_cost,
               coalesce(c.marginal_data_cost, 0) * s.share AS marginal_data_cost,
               coalesce(c.data_cost, 0) * s.share / nullif(s.actionable_signals, 0)
                   AS cost_per_signal,
               coalesce(c.marginal_data_cost, 0) * s.share / nullif(s.actionable_signals, 0)
                   AS marginal_cost_per_signal
        FROM shares s LEFT JOIN cost c USING (month)
        ORDER BY s.month, s.algo = 'all' DESC, s.algo
        """
    )
    con.execute("CREATE OR REPLACE VIEW cost_per_signal AS SELECT * FROM cost_per_signal_at(0.0)")
    con.execute(
        """
        CREATE OR REPLACE MACRO cost_projection_asof(d) AS TABLE
        WITH spent AS (
            SELECT month,
                   coalesce(sum(amount) FILTER (WHERE is_data_cost), 0) AS spent,
                   dayofmonth(last_day(CAST(month || '-01' AS DATE))) AS days_in_month
            FROM cost_daily
            WHERE date <= CAST(d AS DATE)
            GROUP BY month
        )
        SELECT month, spent,
               CASE WHEN month = strftime(CAST(d AS DATE), '%Y-%m')
                    THEN dayofmonth(CAST(d AS DATE)) ELSE days_in_month END AS elapsed_days,
               days_in_month,
               spent / (CASE WHEN month = strftime(CAST(d AS DATE), '%Y-%m')
                             THEN dayofmonth(CAST(d AS DATE)) ELSE days_in_month END)
                     * days_in_month AS projection
        FROM spent
        ORDER BY month
        """
    )
    con.execute(
        "CREATE OR REPLACE VIEW cost_projection AS "
        "SELECT * FROM cost_projection_asof(CAST(timezone('UTC', now()) AS DATE))"
    )
