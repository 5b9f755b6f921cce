"""The live run: the Live feed through the FlowEngine into the lake, split by concern
(docs/operations.md, "Live")."""
