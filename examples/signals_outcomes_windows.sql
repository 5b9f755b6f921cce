-- Ad-hoc analysis: each signal of the latest date with its outcome and the pressure window that
-- raised it. Read-only; safe while flows (the live stream included) write the lake.
--   uv run ifd sql "$(cat examples/signals_outcomes_windows.sql)"
SELECT s.date,
       s.algo,
       s.raw_symbol,
       s.direction,
       s.view,
       round(s.confidence, 3)                              AS confidence,
       s.label,
       w.buy_volume,
       w.sell_volume,
       round(w.buy_premium - w.sell_premium)               AS net_premium,
       w.underlying_price,
       w.complete
FROM signals_with_outcomes AS s
JOIN pressure_windows AS w
  ON w.date = s.date AND w.instrument_id = s.instrument_id AND w.window_start = s.window_start
WHERE s.date = (SELECT max(date) FROM signals)
ORDER BY s.decision_ts, s.algo
