"""The URLs of HTML reports in Prefect link artifacts (docs/operations.md, "Reports over HTTP").

A ``file://`` link opened from the Prefect UI is refused by browsers and means nothing on
another machine, so a link points at ``<data>/reports/`` served over HTTP, from, in order:

1. the ``reports.base_url`` setting (``IFD_REPORTS__BASE_URL``): a reverse proxy, a remote
   viewer's address;
2. the URL ``ifd serve`` serves the reports at, which it exports to the flow runs it starts as
   ``IFD_REPORTS_SERVED_URL``;
3. neither (a flow run outside ``ifd serve``): the ``file://`` URI, and the artifact's
   description says so, never silently.

Every description keeps the report's absolute path as text, whatever the link.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ifd_core.settings import Settings

SERVED_URL_ENV = "IFD_REPORTS_SERVED_URL"


@dataclass(frozen=True)
class ReportLink:
    url: str
    path: Path  # absolute
    source: str  # "reports.base_url", "ifd serve" or "file"

    def description(self, what: str) -> str:
        text = f"{what}: HTML report. File: `{self.path}`"
        if self.source == "file":
            text += (
                " (no HTTP URL: reports.base_url is unset and this run was not started by "
                "`ifd serve`, so the link is a file:// URI, which browsers refuse to open from "
                "the UI; open the file above)"
            )
        else:
            text += f" (served at {self.url} via {self.source})"
        return text


def report_url_base(settings: Settings) -> tuple[str, str] | None:
    """(base URL of ``<data>/reports/``, where it came from), or None outside HTTP."""
    if settings.reports.base_url:
        return settings.reports.base_url, "reports.base_url"
    served = os.environ.get(SERVED_URL_ENV, "").strip()
    if served:
        return served.rstrip("/"), "ifd serve"
    return None


def report_link(path: Path, settings: Settings) -> ReportLink:
    """The link to ``path``, a file under ``<data>/reports/`` (a file elsewhere, which no
    server serves, gets its file:// URI)."""
    path = Path(path).resolve()
    reports = (Path(settings.data_dir) / "reports").resolve()
    base = report_url_base(settings)
    if base is not None and path.is_relative_to(reports):
        rel = urllib.parse.quote(path.relative_to(reports).as_posix())
        return ReportLink(f"{base[0]}/{rel}", path, base[1])
    return ReportLink(path.as_uri(), path, "file")


def publish_report_link(key: str, path: Path, what: str, settings: Settings) -> ReportLink:
    """A Prefect link artifact to the report at ``path``."""
    from prefect.artifacts import create_link_artifact

    link = report_link(path, settings)
    create_link_artifact(
        key=key, link=link.url, link_text=link.path.name, description=link.description(what)
    )
    return link
