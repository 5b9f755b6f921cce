"""The emergency stop fails closed: whatever ``control/halt.json`` holds (nothing, empty, truncated
JSON, the wrong shape, binary garbage, a directory, a dangling or looping symlink, no permission),
``ifd halt`` engages the stop, ``ifd resume`` lifts it, the bad file is kept aside and recorded in
the history, and every reader in the meantime treats trading as halted and says what to run.
An empty reason is refused; ``ifd status`` shows an active halt."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ifd_cli.app import app
from ifd_core.trading.halt import NO_REASON, EmergencyStop

runner = CliRunner()

# name -> bytes written in place of the file
CORRUPT_BYTES = {
    "empty": b"",
    "whitespace": b"  \n\t\n",
    "truncated": b'{"halted": true, "reason": "fat fin',
    "list": b'[{"halted": false, "reason": null, "history": []}]',
    "null": b"null",
    "string": b'"halted"',
    "missing_history": b'{"halted": false, "reason": null}',
    "missing_reason": b'{"halted": false, "history": []}',
    "missing_halted": b'{"reason": null, "history": []}',
    "halted_as_text": b'{"halted": "false", "reason": null, "history": []}',
    "halted_as_number": b'{"halted": 0, "reason": null, "history": []}',
    "reason_as_number": b'{"halted": true, "reason": 5, "history": []}',
    "history_as_object": b'{"halted": false, "reason": null, "history": {}}',
    "history_of_strings": b'{"halted": false, "reason": null, "history": ["halt"]}',
    "since_as_number": b'{"halted": false, "reason": null, "since": 3, "history": []}',
    "binary": bytes(range(256)) * 4,
    "latin1": '{"halted": false, "reason": "é", "history": []}'.encode("latin-1"),
    "nul_bytes": b"\x00" * 64,
}


def _make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("something")


def _make_dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere.json")


def _make_symlink_loop(path: Path) -> None:
    path.symlink_to(path)  # ELOOP: an OSError even for root


CORRUPT_MAKERS = {
    **{name: (lambda p, b=b: p.write_bytes(b)) for name, b in CORRUPT_BYTES.items()},
    "directory": _make_directory,
    "dangling_symlink": _make_dangling_symlink,
    "symlink_loop": _make_symlink_loop,
}


@pytest.fixture
def stop(data_dir) -> EmergencyStop:
    return EmergencyStop(data_dir)


def corrupt(stop: EmergencyStop, kind: str) -> None:
    stop.path.parent.mkdir(parents=True, exist_ok=True)
    CORRUPT_MAKERS[kind](stop.path)


def valid_doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    assert isinstance(doc["halted"], bool) and isinstance(doc["history"], list)
    return doc


def kept_aside(stop: EmergencyStop) -> list[Path]:
    return sorted(stop.path.parent.glob("halt.json.unreadable-*"))


def assert_fails_closed(stop: EmergencyStop) -> None:
    why = stop.reason()
    assert why is not None, "an unreadable stop file must read as halted"
    assert str(stop.path) in why and "unreadable" in why
    assert "ifd halt --reason" in why and "ifd resume" in why
    st = stop.state()
    assert st.halted and st.unreadable and st.reason == why
    assert stop.history() == []


# ---------------------------------------------------------------------- readers
@pytest.mark.parametrize("kind", sorted(CORRUPT_MAKERS))
def test_every_corrupt_state_reads_as_halted_and_says_what_to_run(stop, kind):
    corrupt(stop, kind)
    assert_fails_closed(stop)


def test_an_unreadable_file_reads_as_halted(stop):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    stop.halt("x")
    stop.resume()
    stop.path.chmod(0)
    try:
        assert_fails_closed(stop)
        assert "permission denied" in stop.reason()
        change = stop.halt("after chmod")
        assert change.unreadable == "permission denied" and change.kept_as.exists()
        assert stop.reason() == "after chmod"
    finally:
        for p in kept_aside(stop):
            p.chmod(0o644)


def test_reasons_name_what_is_wrong(stop):
    stop.path.parent.mkdir(parents=True)
    cases = {
        b"": "it is empty",
        b'{"halted": tru': "not valid JSON",
        b"[]": "expected a JSON object, found list",
        b'{"halted": "yes", "reason": null, "history": []}': "'halted'",
        bytes(range(200, 256)): "not UTF-8",
    }
    for content, words in cases.items():
        stop.path.write_bytes(content)
        assert words in stop.reason(), content
    stop.path.unlink()
    stop.path.mkdir()
    assert "directory" in stop.reason()


def test_no_file_is_not_halted_and_resume_writes_nothing(stop):
    assert stop.reason() is None and not stop.state().halted and stop.history() == []
    change = stop.resume()
    assert not change and not change.changed
    assert not stop.path.exists()


def test_a_file_written_by_the_previous_version_still_reads(stop):
    stop.path.parent.mkdir(parents=True)
    old = {
        "halted": True,
        "reason": "operator: news",
        "since": "2026-03-10T15:00:00+00:00",
        "history": [
            {
                "event": "halt",
                "at": "2026-03-10T15:00:00+00:00",
                "reason": "operator: news",
                "by": "cli",
            }
        ],
    }
    stop.path.write_text(json.dumps(old, indent=1))
    assert stop.reason() == "operator: news" and stop.state().unreadable is None
    stop.path.write_text(json.dumps({**old, "reason": ""}))
    assert stop.reason() == NO_REASON
    assert stop.resume() and stop.reason() is None
    assert [h["event"] for h in stop.history()] == ["halt", "resume"]


# ---------------------------------------------------------------------- halt / resume
@pytest.mark.parametrize("kind", sorted(CORRUPT_MAKERS))
def test_halt_engages_whatever_the_file_holds_and_keeps_the_bad_one_aside(stop, kind):
    corrupt(stop, kind)
    before = stop.path.read_bytes() if stop.path.is_file() else None
    change = stop.halt("  bad fill on the open  ", by="test")
    assert change.changed and change.unreadable and change.kept_as is not None
    assert stop.reason() == "bad fill on the open"
    doc = valid_doc(stop.path)
    assert doc["halted"] is True and doc["reason"] == "bad fill on the open"
    first, second = doc["history"]
    assert first["event"] == "unreadable" and first["reason"] == change.unreadable
    assert first["kept_as"] == str(change.kept_as)
    assert second == {
        "event": "halt",
        "at": doc["since"],
        "reason": "bad fill on the open",
        "by": "test",
    }
    (aside,) = kept_aside(stop)
    assert aside == change.kept_as and aside.name.startswith("halt.json.unreadable-")
    if kind == "directory":
        assert (aside / "inside.txt").read_text() == "something"
    elif aside.is_symlink():
        assert kind in ("dangling_symlink", "symlink_loop")
    else:
        assert aside.read_bytes() == before
    # and it lifts normally afterwards
    assert stop.resume(by="test") and stop.reason() is None
    assert [h["event"] for h in stop.history()] == ["unreadable", "halt", "resume"]


@pytest.mark.parametrize("kind", sorted(CORRUPT_MAKERS))
def test_resume_lifts_an_unreadable_stop_and_keeps_the_bad_file_aside(stop, kind):
    corrupt(stop, kind)
    change = stop.resume(by="test")
    assert change, "an unreadable file was a halt for every reader: resuming changes that"
    assert change.kept_as is not None and os.path.lexists(change.kept_as)
    assert stop.reason() is None
    doc = valid_doc(stop.path)
    assert doc["halted"] is False and doc["reason"] is None
    assert [h["event"] for h in doc["history"]] == ["unreadable", "resume"]
    assert doc["history"][0]["kept_as"] == str(change.kept_as)
    assert doc["history"][1]["reason"] == f"the file was unreadable ({change.unreadable})"


def test_a_second_bad_file_in_the_same_instant_never_overwrites_the_first(stop):
    corrupt(stop, "truncated")
    first = stop.halt("one").kept_as
    stop.path.write_bytes(b"garbage")
    second = stop.halt("two").kept_as
    assert first != second and first.read_bytes() != second.read_bytes()
    assert len(kept_aside(stop)) == 2


def test_an_empty_reason_is_refused_and_nothing_is_written(stop):
    for bad in ("", "   ", "\n\t"):
        with pytest.raises(ValueError, match="must not be empty"):
            stop.halt(bad)
    assert not stop.path.exists()


def test_halt_resume_history_in_order(stop):
    stop.halt("first")
    stop.halt("second")
    assert stop.reason() == "second"
    assert stop.resume() and not stop.resume()
    assert [(h["event"], h["reason"]) for h in stop.history()] == [
        ("halt", "first"),
        ("halt", "second"),
        ("resume", "second"),
    ]
    assert list(stop.path.parent.glob("*.tmp")) == []


def _halt_many(data_dir: str, who: int, n: int) -> None:
    stop = EmergencyStop(Path(data_dir))
    for i in range(n):
        stop.halt(f"writer {who} #{i}", by=f"p{who}")


def test_concurrent_writers_neither_clobber_temp_files_nor_lose_history(stop):
    """Eight processes halting at once: every write lands (no shared temp file swapped from
    under another writer, no read-modify-write losing an entry), and no temp file is left."""
    corrupt(stop, "binary")
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_halt_many, args=(str(stop.path.parents[1]), w, 15)) for w in range(8)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    doc = valid_doc(stop.path)
    events = [h["event"] for h in doc["history"]]
    assert events.count("unreadable") == 1 and events.count("halt") == 8 * 15
    assert len(kept_aside(stop)) == 1
    assert [p.name for p in stop.path.parent.iterdir() if p.name.endswith(".tmp")] == []


# ---------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("kind", ["truncated", "binary", "directory", "list", "symlink_loop"])
def test_ifd_halt_and_resume_work_on_a_corrupt_file(stop, kind):
    corrupt(stop, kind)
    res = runner.invoke(app, ["halt", "--reason", "bad data [ops]"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "was unreadable" in res.stdout and "kept as" in res.stdout
    assert "HALTED: bad data [ops]" in res.stdout
    assert stop.reason() == "bad data [ops]"
    stop.path.unlink()
    corrupt(stop, kind)
    res = runner.invoke(app, ["resume"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "was unreadable" in res.stdout and "trading resumed" in res.stdout
    assert stop.reason() is None and len(kept_aside(stop)) == 2


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
def test_ifd_halt_refuses_an_empty_reason_with_one_line(stop, reason):
    res = runner.invoke(app, ["halt", "--reason", reason])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "reason must not be empty" in lines[0], res.stderr
    assert not stop.path.exists()


def test_ifd_halt_fails_clearly_when_the_control_folder_cannot_hold_the_file(stop):
    stop.path.parent.parent.mkdir(parents=True)
    stop.path.parent.write_text("a file where the control folder should be")
    res = runner.invoke(app, ["halt", "--reason", "x"])
    assert res.exit_code == 1
    assert "could not record the halt" in res.stderr and "treated as HALTED" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_ifd_status_shows_an_active_halt_in_text_and_json(stop):
    res = runner.invoke(app, ["status", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["halt"]["halted"] is False
    comp = next(c for c in doc["components"] if c["name"] == "emergency stop")
    assert comp["health"] == "ok"

    stop.halt("[desk] fat finger")
    doc = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert doc["halt"]["halted"] is True and doc["halt"]["reason"] == "[desk] fat finger"
    assert doc["overall"] == "critical"
    comp = next(c for c in doc["components"] if c["name"] == "emergency stop")
    assert comp["health"] == "critical" and "[desk] fat finger" in comp["detail"]
    text = runner.invoke(app, ["status"]).stdout
    line = next(ln for ln in text.splitlines() if "emergency stop" in ln)
    assert "critical" in line and "HALTED since" in line and "[desk] fat finger" in line

    stop.path.write_bytes(b"\xff\xfegarbage")
    doc = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert doc["halt"]["halted"] is True and "UTF-8" in doc["halt"]["unreadable"]
    text = runner.invoke(app, ["status"]).stdout
    assert "unreadable" in text and "ifd resume" in text
