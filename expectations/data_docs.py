"""Great Expectations Data Docs of IFD's validations, in ``<data>/reports/data-docs/``.

GX users look for Data Docs (an ``index.html`` listing each suite and validation, one page per
validation result). The validating context stays ephemeral (expectations/runner.py): its
in-memory results store fills as batches are validated. :func:`publish_data_docs` moves those
results into a results store on disk beside the site (``data-docs/validations-json/``, so the
history survives the process) and renders only the new pages plus the index: GX rebuilds the
index from the site's own pages and drops pages whose result is missing from the source store,
so the source has to persist across processes for the history to stay listed.

Called once per ingest run, not per batch (docs/operations.md, "Data-quality reports"): a
build renders one page per new result and rewrites the index.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

DATA_DOCS_DIR = "data-docs"  # under <data>/reports/, which `ifd serve` serves
RESULTS_SUBDIR = "validations-json"  # GX's JSON results, the site's source store
SITE = "ifd_data_docs"
STORE = "ifd_validation_results"

_lock = threading.Lock()  # the flow's tasks share one GX context (one process)


@dataclass(frozen=True)
class DataDocs:
    index: Path  # <data>/reports/data-docs/index.html
    published: int  # validation results added to the site by this call
    suites: tuple[str, ...]  # suite names of the added results


def data_docs_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "reports" / DATA_DOCS_DIR


def data_docs_index(data_dir: Path) -> Path:
    """Where the site's index page is (whether it was built yet or not)."""
    return data_docs_dir(data_dir) / "index.html"


def _configure(ctx, site_dir: Path) -> None:
    """The persistent results store and the site, added to the context once per site directory
    (a process may publish to several data roots, the tests do)."""
    base = str(site_dir.resolve())
    sites = ctx.variables.data_docs_sites or {}
    current = sites.get(SITE, {}).get("store_backend", {}).get("base_directory")
    if current == base:
        return
    if current is not None:
        ctx.delete_data_docs_site(SITE)
        ctx.delete_store(STORE)
    ctx.add_store(
        STORE,
        {
            "class_name": "ValidationResultsStore",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(site_dir.resolve() / RESULTS_SUBDIR),
            },
        },
    )
    ctx.add_data_docs_site(
        SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": base},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "site_section_builders": {
                "validations": {"source_store_name": STORE},
                "profiling": "None",
            },
        },
    )


def publish_data_docs(data_dir: Path) -> DataDocs:
    """Move this process's validation results into the site's store and build the site.

    Every suite is registered first: the index lists the suites the context knows and would
    otherwise drop the pages of suites this process did not happen to validate."""
    from expectations.runner import _context, _definition
    from expectations.suites import SUITES

    site_dir = data_docs_dir(data_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx, _ = _context()
        for dataset in SUITES:
            _definition(dataset)
        _configure(ctx, site_dir)
        memory, disk = ctx.validation_results_store, ctx.stores[STORE]
        keys = memory.list_keys()
        for key in keys:
            disk.set(key, memory.get(key))
            memory.remove_key(key)  # bounded memory: the site's store holds them now
        keys += _take_stashed(site_dir)
        # Only the new pages (and the suites' pages, a few): without identifiers GX re-renders
        # every result the store ever held.
        ctx.build_data_docs(
            site_names=[SITE], resource_identifiers=[*keys, *ctx.expectations_store.list_keys()]
        )
    suites = tuple(sorted({k.expectation_suite_identifier.name for k in keys}))
    return DataDocs(site_dir / "index.html", len(keys), suites)


PENDING_SUBDIR = "pending"  # keys of results stashed by workers, not rendered yet


def stash_results(data_dir: Path) -> int:
    """Move this process's validation results into the site's store without rendering: a
    worker of a fanned-out ingest (another process or machine) does it after each file, and the
    run's ``publish_data_docs`` renders them. Returns how many were stashed.

    Each result is its own file in the store and each worker writes its own pending list, by
    rename, so workers never overwrite each other's (docs/operations.md, "Scaling out")."""
    import json
    import os
    import uuid

    from expectations.runner import _context

    site_dir = data_docs_dir(data_dir)
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx, _ = _context()
        _configure(ctx, site_dir)
        memory, disk = ctx.validation_results_store, ctx.stores[STORE]
        keys = memory.list_keys()
        for key in keys:
            disk.set(key, memory.get(key))
            memory.remove_key(key)
    if keys:
        pending = site_dir / PENDING_SUBDIR
        pending.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = pending / f".{name}.tmp"
        tmp.write_text(json.dumps([list(k.to_tuple()) for k in keys]))
        os.replace(tmp, pending / f"{name}.json")
    return len(keys)


def _take_stashed(site_dir: Path) -> list:
    """The keys workers stashed (their lists are removed: rendered once)."""
    import json

    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

    keys = []
    pending = site_dir / PENDING_SUBDIR
    for f in sorted(pending.glob("*.json")) if pending.is_dir() else []:
        keys += [ValidationResultIdentifier.from_tuple(tuple(k)) for k in json.loads(f.read_text())]
        f.unlink()
    return keys
