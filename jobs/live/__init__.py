"""The live run: the Live feed through the FlowEngine into the lake, split by concern
(docs/operations.md, "Live"): ``runner`` (the loop and its wiring), ``dates`` (one trade date's
state machine), ``rows`` (the lake rows it writes), ``capture`` and ``checkpoint`` (the files a
restart resumes from), ``feed`` (subscriptions and connection), ``guard``, ``desk``,
``backfill``.
"""
