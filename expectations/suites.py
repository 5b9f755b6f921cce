"""Great Expectations suites as code, one per dataset.

Built lazily (GX takes seconds to import) and only from plain data: ``SUITES`` lists, for each
dataset, the expectation class name and its keyword arguments, so tests and docs can read the
rules without importing GX.
"""

from __future__ import annotations

ACTIONS = ["A", "C", "M", "R", "T", "F", "N"]
SIDES = ["A", "B", "N"]
STAT_TYPES = list(range(1, 20))

Rule = tuple[str, dict]


def _true(col: str) -> Rule:
    return ("ExpectColumnValuesToBeInSet", {"column": col, "value_set": [True]})


def _common() -> list[Rule]:
    return [
        ("ExpectColumnValuesToNotBeNull", {"column": "instrument_id"}),
        _true("chk_known"),
        _true("chk_sorted"),  # ts_recv never decreases (computed in derive.py)
        ("ExpectColumnValuesToBeInSet", {"column": "chk_duplicate", "value_set": [False]}),
    ]


SUITES: dict[str, list[Rule]] = {
    "mbo": [
        ("ExpectColumnValuesToBeInSet", {"column": "action", "value_set": ACTIONS}),
        ("ExpectColumnValuesToBeInSet", {"column": "side", "value_set": SIDES}),
        _true("chk_on_grid"),
        _true("chk_trade_size"),
        _true("chk_ts_recv_ge_event"),
        *_common(),
    ],
    "trades": [
        ("ExpectColumnValuesToBeInSet", {"column": "side", "value_set": SIDES}),
        ("ExpectColumnValuesToBeBetween", {"column": "size", "min_value": 1}),
        _true("chk_on_grid"),
        _true("chk_ts_recv_ge_event"),
        # No duplicate rule: identical prints in one event are separate matches (see derive.py).
        *_common()[:3],
    ],
    "instruments": [
        ("ExpectColumnValuesToNotBeNull", {"column": "instrument_id"}),
        ("ExpectColumnValuesToNotBeNull", {"column": "raw_symbol"}),
        (
            "ExpectColumnValuesToBeInSet",
            {
                "column": "instrument_class",
                "value_set": ["B", "C", "F", "K", "M", "P", "S", "T", "X"],
            },
        ),
        _true("chk_option_fields"),
        ("ExpectColumnValuesToBeInSet", {"column": "chk_duplicate", "value_set": [False]}),
    ],
    "statistics": [
        ("ExpectColumnValuesToBeInSet", {"column": "stat_type", "value_set": STAT_TYPES}),
        _true("chk_oi_nonnegative"),
        _true("chk_ts_recv_ge_event"),
        *_common(),
    ],
    "bbo": [_true("chk_ts_recv_ge_event"), *_common()],
    "status": [_true("chk_ts_recv_ge_event"), *_common()],
    "ohlcv": [_true("chk_bar_order"), *[r for r in _common() if r[1]["column"] != "chk_sorted"]],
    # Databento against Barchart per (expiration, strike, right), over the expirations both list
    # (expectations/derive.py ``cross_check``; null = the rule does not apply to the row).
    "barchart_check": [
        _true("chk_oi_agrees"),
        _true("chk_settlement_agrees"),
        _true("chk_in_databento"),
        _true("chk_in_barchart"),
    ],
}
# Derived tables (trades from mbo, open interest and settlements from statistics) are checked
# through the dataset they are derived from, except trades, which real trade files also feed.
VALIDATED_TABLES = tuple(d for d in SUITES if d != "barchart_check")


def build_suite(dataset: str):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"ifd_{dataset}")
    for cls_name, kwargs in SUITES[dataset]:
        suite.add_expectation(getattr(gxe, cls_name)(**kwargs))
    return suite
