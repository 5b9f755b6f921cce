"""Flow-run names from a run's parameters (``detection-2026-03-30-both``) instead of Prefect's
random adjective-animal pairs, so the runs list says what each run did.

Prefect calls a ``flow_run_name`` callable without arguments inside the run; the parameters it
holds then are only those given (a deployment's or the caller's), so the flow's defaults are
filled in from its signature first. Names are for people: an unset date says what the flow
does instead ("latest", "today").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def run_name(render: Callable[[dict[str, Any]], str]) -> Callable[[], str]:
    """A ``flow_run_name`` for ``@flow``: ``render`` gets every parameter, defaults included."""

    def name() -> str:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if ctx is None:  # Prefect names runs inside one; nothing to name outside
            raise RuntimeError("a flow-run name is rendered inside its flow run")
        return render(with_defaults(ctx.flow.fn, ctx.parameters or {}))

    name.render = render  # type: ignore[attr-defined]  # tests render names without a run
    return name


def with_defaults(fn: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` completed with the defaults of ``fn``'s signature."""
    params = dict(given)
    for key, p in inspect.signature(fn).parameters.items():
        if p.default is not inspect.Parameter.empty:
            params.setdefault(key, p.default)
    return params


def span(start: object, end: object, unset: str) -> str:
    """A date range for a name: ``2026-03-02-to-2026-03-13``, ``unset`` when neither is given."""
    if start is None and end is None:
        return unset
    return f"{start or 'first'}-to-{end or 'latest'}"
