"""A process that forks IFD commands on request, so crash tests pay the imports once.

Importing the CLI with Great Expectations takes seconds; a crash test runs dozens of commands,
each killed at a different failpoint. This server imports everything once, never runs a polars
operation itself (a process whose polars thread pool exists cannot fork safely), and forks one
child per request. The child runs the command exactly as `ifd` would and dies as the failpoint
says: a real SIGKILL or SIGINT of a real process.

Protocol (one JSON object per line): request ``{"argv": [...]}`` (the ``ifd`` arguments) or
``{"call": "compact"}`` (of the data root in the env), with ``"env": {...}`` set in the child; reply
``{"status": <exit code, or -signal>}``.
"""

from __future__ import annotations

import json
import os
import sys


def _child(req: dict) -> None:
    os.environ.update(req.get("env", {}))
    try:
        if "argv" in req:
            from ifd_cli.app import app

            app(req["argv"], prog_name="ifd")
        elif req.get("call") == "compact":
            import datetime as dt

            from warehouse.compaction import compact_lake
            from warehouse.lake import Lake

            lake = Lake(os.environ["IFD_WAREHOUSE__DATA_DIR"])
            compact_lake(lake, min_files=2, today=dt.date(2030, 1, 1))
        else:
            raise ValueError(f"unknown request {req}")
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except KeyboardInterrupt:
        os._exit(130)
    except BaseException as exc:  # noqa: BLE001 - reported as the exit status
        print(f"child failed: {exc!r}", file=sys.stderr)
        os._exit(70)
    os._exit(0)


def main() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import databento  # noqa: F401 - the slow imports, paid once (IFD imports these two lazily)
    import great_expectations  # noqa: F401

    import expectations.runner  # noqa: F401
    import ifd_cli.app  # noqa: F401
    import jobs.detect  # noqa: F401
    import warehouse.compaction  # noqa: F401
    import warehouse.ingest  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdin.close()
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout is the protocol's
            _child(req)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"status": code}), flush=True)


if __name__ == "__main__":
    main()
