"""`ifd serve`: the whole cockpit on one machine with one command.

The equivalent of `prefect server start` + a process work pool + `prefect deploy --all` + a worker:
a Prefect server (started as a child process unless ``PREFECT_API_URL`` already answers) and every
deployment of ``prefect.yaml`` served from this process (``prefect.serve``: each flow run in its
own subprocess). ``prefect.yaml`` stays the single source of the deployments: names, entrypoints,
parameters, schedules (inactive unless ``activate``), concurrency limits.

The UI is told where its API is (``PREFECT_SERVER_UI_API_URL``): Prefect otherwise derives it
from ``PREFECT_SERVER_API_PORT``, not from ``--port``, and a UI on any other port showed "Can't
connect to Server API" (docs/operations.md, "Prefect deployments and `ifd serve`").

Beside the UI, ``<data>/reports/`` is served read-only over HTTP on its own port (UI port + 1
unless ``--reports-port``), and the flow runs get that URL (``IFD_REPORTS_SERVED_URL``) for the
links of their artifacts (flows/report_links.py; docs/operations.md, "Reports over HTTP").

Scale-out is not this command: it is more workers on more machines over the same work pool and a
shared lake (README "Prefect cockpit").
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "prefect.yaml"


def deployment_specs(path: Path = SPEC) -> list[dict]:
    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str):
    """``flows/x.py:name`` → the flow object (imported as a module of this repository)."""
    file, name = entrypoint.split(":")
    module = ".".join(Path(file).with_suffix("").parts)
    return getattr(importlib.import_module(module), name)


def build_deployments(specs: list[dict], *, activate: bool = False) -> list:
    """``RunnerDeployment``s equal to what ``prefect deploy --all`` registers from the specs."""
    from prefect.schedules import Cron

    out = []
    for spec in specs:
        flow = load_flow(spec["entrypoint"])
        schedules = [
            Cron(
                s["cron"],
                timezone=s.get("timezone"),
                active=bool(activate or s.get("active", True)),
            )
            for s in spec.get("schedules") or []
        ]
        out.append(
            flow.to_deployment(
                name=spec["name"],
                description=" ".join(str(spec.get("description", "")).split()) or None,
                parameters=spec.get("parameters") or {},
                schedules=schedules,
                concurrency_limit=spec.get("concurrency_limit"),
                tags=spec.get("tags") or [],
            )
        )
    return out


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def default_address() -> tuple[str, int]:
    """Where ``ifd serve`` listens without options: Prefect's own server settings
    (``PREFECT_SERVER_API_HOST`` / ``PREFECT_SERVER_API_PORT``, 127.0.0.1:4200 by default)."""
    from prefect.settings import get_current_settings

    api = get_current_settings().server.api
    return api.host, api.port


def browser_url(host: str, port: int) -> str:
    """The base URL a browser on this machine opens for a server listening on ``host:port`` (a
    wildcard address is reached through the loopback: browsers refuse 0.0.0.0)."""
    h = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"


def ui_api_url(api_url: str) -> str:
    """The API URL the started server hands its UI: a configured ``PREFECT_UI_API_URL`` (a
    reverse proxy, a remote viewer) wins; otherwise the API of the server being started."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().server.ui
    return ui.api_url if "api_url" in ui.model_fields_set and ui.api_url else api_url


def ui_settings(ui_url: str, timeout: float = 5.0) -> dict | None:
    """What the server tells its UI (``GET /ui-settings``: the API URL the pages call), or None
    when the server serves no UI there."""
    try:
        with urllib.request.urlopen(f"{ui_url.rstrip('/')}/ui-settings", timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def api_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(
    host: str, port: int, say: Callable[[str], None], timeout_s: float = 120.0
) -> Iterator[str]:
    """A Prefect server child process on ``host:port`` for the duration; yields its API URL.
    Reused, not started, when ``PREFECT_API_URL`` already answers."""
    existing = os.environ.get("PREFECT_API_URL")
    if existing and api_healthy(existing):
        say(f"using the Prefect server at {existing}")
        yield existing
        return
    url = f"{browser_url(host, port)}/api"
    if api_healthy(url):
        say(f"using the Prefect server already running at {url}")
        yield url
        return
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI's API URL defaults to PREFECT_API_URL, else these two, never to --port.
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_API_URL": ui_api_url(url),
    }
    env.pop("PREFECT_API_URL", None)
    log = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")) / "ifd-serve-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(port),
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        say(f"starting the Prefect server on {host}:{port} (log: {log})")
        deadline = time.monotonic() + timeout_s
        while not api_healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not answer in {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class ReportsHandler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of files under one directory (the stdlib handler has no write methods). The
    stdlib drops ``..`` segments; a path that still resolves outside the directory (a symlink
    pointing out) is refused with 403."""

    def send_head(self):
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path)).resolve()
        raw = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if ".." in raw.split("/") or not target.is_relative_to(root):
            self.send_error(403, "outside the reports directory")
            return None
        return super().send_head()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # a report rewritten in place shows anew
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # one line per asset of every report would drown serve's own lines


@contextlib.contextmanager
def reports_server(host: str, port: int, directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on ``host:port`` (port 0: any free one) in a daemon thread for
    the duration; yields its base URL as a browser on this machine reaches it."""
    directory.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(ReportsHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve the reports on {host}:{port} ({exc.strerror}); choose another port "
            "with --reports-port"
        ) from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="ifd-reports", daemon=True)
    thread.start()
    try:
        yield browser_url(host, server.server_address[1]) + "/"
    finally:
        server.shutdown()
        server.server_close()


def serve(
    host: str | None = None,
    port: int | None = None,
    *,
    activate: bool = False,
    limit: int = 4,
    reports_port: int | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Start (or reuse) the server, then serve every deployment until interrupted. ``host`` and
    ``port`` default to Prefect's server settings (:func:`default_address`); the reports are
    served on ``reports_port`` (default ``port + 1``)."""
    from flows.report_links import SERVED_URL_ENV
    from ifd_core.settings import get_settings

    default_host, default_port = default_address()
    host = default_host if host is None else host
    port = default_port if port is None else port
    os.environ.setdefault("IFD_REPO_DIR", str(REPO))
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def stop(signum, frame):  # SIGTERM (systemd, kill) unwinds like Ctrl-C: the server stops too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)

    settings = get_settings()
    reports_dir = settings.data_dir / "reports"
    if reports_port is None:
        reports_port = port + 1 if port < 65535 else 0
    with (
        reports_server(host, reports_port, reports_dir) as reports_url,
        prefect_server(host, port, say) as url,
        temporary_settings({PREFECT_API_URL: url}),
    ):
        os.environ["PREFECT_API_URL"] = url  # the flow-run subprocesses read it from here
        os.environ[SERVED_URL_ENV] = reports_url  # and the reports' URL for their links
        say(f"reports: {reports_url} (serving {reports_dir}, read-only)")
        if settings.reports.base_url:
            say(f"report links in artifacts use reports.base_url: {settings.reports.base_url}/")
        deployments = build_deployments(deployment_specs(), activate=activate)
        ui = url.removesuffix("/api")
        state = "active" if activate else "inactive (activate them in the UI, or --activate)"
        say(f"{len(deployments)} deployments served; schedules {state}; UI: {ui}")
        told = (ui_settings(ui) or {}).get("api_url")
        if told and told.rstrip("/") != url.rstrip("/"):
            say(
                f"note: this server's UI calls its API at {told}, not {url}; if its pages say "
                '"Can\'t connect", set PREFECT_UI_API_URL to an address browsers reach'
            )
        prefect_serve(*deployments, limit=limit, print_starting_message=False)
