"""ControlFile: a JSON object shared safely between the server and CLI processes."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage import controlfile
from storage.controlfile import ControlFile, write_atomically
from storage.errors import CorruptStore, DamagedDocument, DiskFull, PermissionDenied

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "control.json"


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files ControlFile parses from now on, one entry a parse."""
    parsed: list[Path] = []
    real_decode = controlfile.decode_json

    def counting_decode(source: Path, raw: bytes) -> object:
        parsed.append(source)
        return real_decode(source, raw)

    monkeypatch.setattr(controlfile, "decode_json", counting_decode)
    return parsed


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock a second ahead: every version read is settled (controlfile.SETTLE_NS), so
    what is counted is the cache's work alone, not the re-reads of a fresh version."""
    monkeypatch.setattr(controlfile, "_clock_ns", lambda: time.time_ns() + 1_000_000_000)


def increment(document: dict) -> None:
    document["counter"] = document.get("counter", 0) + 1


def test_a_missing_file_reads_as_an_empty_object(path: Path) -> None:
    assert ControlFile(path).read() == {}
    assert not path.exists()


def test_update_writes_the_change_with_owner_only_permissions(path: Path) -> None:
    result = ControlFile(path).update(increment)

    assert result == {"counter": 1}
    assert json.loads(path.read_text()) == {"counter": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.with_name("control.json.lock").exists()


def test_update_applies_the_change_to_the_latest_content(path: Path) -> None:
    mine, theirs = ControlFile(path), ControlFile(path)
    mine.read()  # cache an old version
    theirs.update(lambda document: document.update(theirs_key="kept"))

    mine.update(increment)

    assert json.loads(path.read_text()) == {"theirs_key": "kept", "counter": 1}


def test_read_sees_another_writers_update_at_once(path: Path) -> None:
    reader, writer = ControlFile(path), ControlFile(path)
    assert reader.read() == {}

    for expected in (1, 2, 3):
        writer.update(increment)
        assert reader.read() == {"counter": expected}


def test_read_parses_the_file_only_when_it_changed(
    path: Path, parses: list[Path], settled: None
) -> None:
    control = ControlFile(path)
    control.update(increment)
    parses.clear()
    other = ControlFile(path)
    for _ in range(5):
        assert other.read() == {"counter": 1}
    assert len(parses) == 1

    control.update(increment)
    assert other.read() == {"counter": 2}
    assert len(parses) == 3  # update re-reads under the lock, then the reader once


def test_read_returns_a_copy(path: Path) -> None:
    control = ControlFile(path)
    control.update(lambda document: document.update(items=[1]))

    control.read()["items"].append(2)

    assert control.read() == {"items": [1]}


def test_derived_state_is_built_once_per_change_of_the_file(path: Path, settled: None) -> None:
    """What the server derives per request (token index, switch) is rebuilt only when the
    file changed, including when another process (another ControlFile) changed it."""
    reader, writer = ControlFile(path), ControlFile(path)
    builds: list[dict] = []

    def counter(document: dict) -> int:
        builds.append(document)
        return document.get("counter", 0)

    assert [reader.derived(counter) for _ in range(3)] == [0, 0, 0]
    writer.update(increment)
    assert [reader.derived(counter) for _ in range(3)] == [1, 1, 1]
    writer.update(increment)
    assert reader.derived(counter) == 2
    assert builds == [{}, {"counter": 1}, {"counter": 2}]


def test_a_version_written_within_one_tick_of_the_file_clock_is_read_again_at_each_use(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writes within one tick can leave the inode number, mtime and size a reader
    cached, with other content (the stamp alone would keep the old content in use)."""
    reader = ControlFile(path)
    ControlFile(path).update(lambda document: document.update(provisioning="on"))

    def switch(document: dict) -> str:
        return document["provisioning"]

    first = os.stat(path)
    monkeypatch.setattr(controlfile, "_clock_ns", lambda: first.st_mtime_ns + 1_000_000)
    assert reader.read() == {"provisioning": "on"}
    assert reader.derived(switch) == "on"

    # The second write, as the tick left it: same inode, same size, same mtime.
    content = path.read_bytes().replace(b'"on"', b'"no"')
    with open(path, "r+b") as file:
        file.write(content)
    os.utime(path, ns=(first.st_atime_ns, first.st_mtime_ns))
    assert controlfile._stamp(os.stat(path)) == controlfile._stamp(first)

    assert reader.read() == {"provisioning": "no"}
    assert reader.derived(switch) == "no"


def test_a_change_that_raises_writes_nothing(path: Path) -> None:
    control = ControlFile(path)
    control.update(increment)
    before = path.read_bytes()

    def fail(document: dict) -> None:
        document["counter"] = 99
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        control.update(fail)

    assert path.read_bytes() == before
    assert control.read() == {"counter": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"tokens": [}',
            "not valid JSON: Expecting value at line 1 column 13; nothing was changed: repair it",
        ),
        (
            '{"format": 1,\n"tokens": ',
            "not valid JSON: Expecting value at line 2 column 11; nothing was changed: repair it",
        ),
        ("[1, 2]", "holds a JSON list, not an object"),
        ("  \n", "is empty"),
        ('{"name": "\xff"}', "is not UTF-8: invalid byte at offset 10; nothing was changed"),
    ],
    ids=["bad-value", "truncated", "not-an-object", "blank", "latin-1"],
)
def test_a_corrupt_file_is_refused_naming_it(path: Path, content: str, message: str) -> None:
    path.write_bytes(content.encode("latin-1"))

    for action in (ControlFile(path).read, lambda: ControlFile(path).update(increment)):
        with pytest.raises(CorruptStore) as raised:
            action()
        assert str(raised.value).startswith(str(path))
        assert message in str(raised.value)
    assert path.read_bytes() == content.encode("latin-1")


def test_a_file_damaged_after_use_is_refused_once_logged_never_written_and_used_once_repaired(
    path: Path, parses: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A hand edit that breaks the file while the server runs: every use is refused (never
    the last good content), the first refusal alone asks to be logged, the file is parsed
    once per damaged version and never written; once repaired it is used again."""
    control = ControlFile(path)
    control.update(increment)
    good = path.read_bytes()
    path.write_bytes(good[:-3])  # cut off the closing brace
    parses.clear()
    refusals = []
    for action in (control.read, lambda: control.derived(len), control.read):
        with pytest.raises(DamagedDocument) as raised:
            action()
        refusals.append(raised.value)
    with pytest.raises(DamagedDocument):
        control.update(increment)

    assert [refusal.first_report for refusal in refusals] == [True, False, False]
    assert "control.json is not valid JSON" in str(refusals[0])
    assert refusals[0].detail == (
        "the server's control file control.json is damaged: repair it or restore it (the "
        "server log says where the damage is); nothing was changed"
    )
    assert str(path.parent) not in refusals[0].detail
    assert len(parses) == 1
    assert path.read_bytes() == good[:-3]

    path.write_bytes(good[:-3] + b"]")  # another edit, still broken: a new damage
    with pytest.raises(DamagedDocument) as raised:
        control.read()
    assert raised.value.first_report

    with caplog.at_level(logging.INFO, logger="proware.storage"):
        path.write_bytes(good)
        assert control.read() == {"counter": 1}
    assert "control.json can be read again" in caplog.text
    assert control.update(increment) == {"counter": 2}


def test_a_damage_is_reported_in_one_error_line_however_often_it_is_refused(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control = ControlFile(path)
    path.write_text("{")
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            with pytest.raises(DamagedDocument) as raised:
                control.read()
            raised.value.report(logging.getLogger("proware.test"))

    (line,) = caplog.records
    assert line.levelname == "ERROR" and line.exc_info is None
    assert line.getMessage().startswith(f"{path} is not valid JSON: ")
    assert "once repaired it is used again, without a restart" in line.getMessage()


def test_a_lock_file_this_user_may_not_open_is_named_with_its_remedy(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """control.json.lock left root's (README, "Running as a systemd service"): `token
    create` said "the write failed (Permission denied)", the server a 503 "could not write
    to its disk" and a traceback per save, none saying whose the file is or what to do."""
    ControlFile(path).update(lambda data: data.update(a=1))
    lock_path = path.with_name("control.json.lock")
    real_open = os.open

    def open_file(name: object, *args: object, **kwargs: object) -> int:
        if Path(str(name)) == lock_path:
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controlfile.os, "open", open_file)

    with pytest.raises(PermissionDenied) as refused:
        ControlFile(path).update(lambda data: data.update(a=2))

    assert str(refused.value).startswith(f"cannot open {lock_path}: Permission denied; ")
    monkeypatch.undo()
    assert ControlFile(path).read() == {"a": 1}


def test_update_removes_temp_files_left_by_a_dead_writer(path: Path) -> None:
    stray = path.with_name(".control.json.abc123.tmp")
    stray.write_text("{")

    ControlFile(path).update(increment)

    assert sorted(os.listdir(path.parent)) == ["control.json", "control.json.lock"]


def test_an_atomic_write_is_on_disk_before_the_rename_and_the_rename_after_it(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes the replace survive a power cut: the new file's fsync before the rename
    (else the rename can reach the disk before the data, leaving an empty file where the
    tokens or the switch were), and the directory's fsync after it (else the rename itself,
    already reported done, can be lost)."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        directory = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        steps.append("fsync directory" if directory else "fsync file")
        real_fsync(descriptor)

    def replace(source: str, target: Path) -> None:
        steps.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(controlfile.os, "fsync", fsync)
    monkeypatch.setattr(controlfile.os, "replace", replace)
    write_atomically(path, b'{"enabled": true}')

    assert steps == ["fsync file", "rename", "fsync directory"]
    assert json.loads(path.read_bytes()) == {"enabled": True}


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_atomically(path, b'{"old": true}')

    def refuse(source: str, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(controlfile.os, "replace", refuse)
    with pytest.raises(DiskFull, match=f"{path}: no space left"):
        write_atomically(path, b'{"new": true}')

    assert path.read_bytes() == b'{"old": true}'
    assert os.listdir(path.parent) == ["control.json"]


def test_updates_from_two_processes_at_once_lose_nothing(path: Path) -> None:
    """Each process increments the counter 50 times; the file ends at 100."""
    child = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPOSITORY_ROOT)!r})
        from storage.controlfile import ControlFile

        def increment(document):
            document["counter"] = document.get("counter", 0) + 1

        control = ControlFile(Path({str(path)!r}))
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(50):
            control.update(increment)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline().strip() == "ready"
    process.stdin.write("go\n")
    process.stdin.flush()

    control = ControlFile(path)
    for _ in range(50):
        control.update(increment)
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    process.stdout.close()

    assert ControlFile(path).read() == {"counter": 100}


def test_delete_gradually_truncates_in_steps_then_removes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big file's blocks are freed a step at a time (a fsync beside it never waits for a
    whole file's worth), then the file is gone."""
    big = tmp_path / "segment"
    big.write_bytes(b"x" * 10_500)
    sizes: list[int] = []
    monkeypatch.setattr(controlfile.time, "sleep", lambda seconds: sizes.append(big.stat().st_size))

    controlfile.delete_gradually(big, step=1000)

    assert sizes == list(range(9500, 0, -1000))
    assert not big.exists()
    controlfile.delete_gradually(big)  # already gone: nothing to do


def test_delete_gradually_leaves_a_file_with_another_name_whole(tmp_path: Path) -> None:
    """A hard-linked copy (restore's ``.bak``) shares the blocks: only the name goes."""
    big = tmp_path / "segment"
    big.write_bytes(b"x" * 10_500)
    kept = tmp_path / "kept"
    os.link(big, kept)

    controlfile.delete_gradually(big, step=1000)

    assert not big.exists()
    assert kept.read_bytes() == b"x" * 10_500


def test_a_large_replace_frees_the_old_file_gradually_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "proware.json"
    target.write_bytes(b"old" * 1000)
    retired: list[Path] = []
    real = controlfile.delete_gradually

    def recording(path: Path, **kwargs: object) -> None:
        retired.append(path)
        assert path.read_bytes() == b"old" * 1000  # the old content, still whole until now
        real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controlfile, "delete_gradually", recording)
    write_atomically(target, [b"new ", b"content"], large=True)

    assert target.read_bytes() == b"new content"
    assert [path.name for path in retired] == [".proware.json.retired.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["proware.json"]


def test_a_retired_file_left_by_a_crash_is_a_stray_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "proware.json"
    target.write_bytes(b"{}")
    left = tmp_path / ".proware.json.retired.tmp"
    left.write_bytes(b"old")

    assert controlfile.remove_stray_temp_files(target) == [left]
    assert not left.exists()
