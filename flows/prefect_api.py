"""The Prefect API that flow runs started from the command line (`ifd demo`) talk to.

``PREFECT_API_URL`` when set, checked first; else Prefect's temporary local server, started here
before the first flow run. Prefect gives that server 20 s to come up, and a first `ifd demo` on a
busy 2-core machine took longer (a raw traceback after 21 s), so IFD waits
``EPHEMERAL_STARTUP_S`` unless ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` is configured
(environment, profile, or prefect.toml when run from the repository root). A server that does not
answer is an outside failure: :class:`PrefectUnavailable`, one line (docs/operations.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

EPHEMERAL_STARTUP_S = 120  # what the tests' harness allows too (tests/conftest.py)


class PrefectUnavailable(RuntimeError):
    """No Prefect API to run flows against: the configured server does not answer, or the
    temporary one did not start."""


@dataclass(frozen=True)
class PrefectApi:
    """The API flow runs of this process use; ``temporary`` when it is Prefect's own server,
    which lives as long as this process (its runs stay in ``$PREFECT_HOME``'s database)."""

    url: str
    temporary: bool


class _TemporaryServerNotices(logging.Filter):
    """Drops Prefect's "Starting/Stopping temporary server" notices (two INFO records of the
    ``prefect`` logger); everything else it logs passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Starting temporary server", "Stopping temporary"))


def ephemeral_startup_timeout() -> int:
    """Seconds the temporary server gets to start: the configured Prefect setting, else IFD's."""
    from prefect.settings import get_current_settings

    eph = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in eph.model_fields_set:
        return eph.startup_timeout_seconds
    return EPHEMERAL_STARTUP_S


def ensure_prefect_api() -> PrefectApi:
    """Check ``PREFECT_API_URL``, or start the temporary server (later flow runs reuse it)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings

    from flows.serve import api_healthy

    url = PREFECT_API_URL.value()
    if url:
        if not api_healthy(url, timeout=10):
            raise PrefectUnavailable(f"the Prefect server at PREFECT_API_URL={url} does not answer")
        return PrefectApi(url, temporary=False)
    if not get_current_settings().server.ephemeral.enabled:
        raise PrefectUnavailable(
            "no PREFECT_API_URL, and Prefect's temporary server is disabled "
            "(PREFECT_SERVER_EPHEMERAL_ENABLED=false)"
        )
    from prefect.server.api.server import SubprocessASGIServer, subprocess_server_logger

    # Its start and stop notices go to stderr, where a failure must be one line; the caller says
    # on stdout that a temporary server runs.
    subprocess_server_logger.addFilter(_TemporaryServerNotices())
    timeout = ephemeral_startup_timeout()
    server = SubprocessASGIServer()
    try:
        # Prefect reads `timeout or <its setting>`: 0 falls through to the setting, also 0 then.
        server.start(timeout=timeout)
    except Exception as exc:
        first = str(exc).split(". ")[0].strip().rstrip(".")
        raise PrefectUnavailable(
            f"Prefect's temporary server did not start within {timeout} s ({first}); "
            "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS on a busy machine, or set "
            "PREFECT_API_URL to a running server (`ifd serve`)"
        ) from exc
    return PrefectApi(server.api_url, temporary=True)
