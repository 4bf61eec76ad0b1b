"""Starting the journal store: crashes, damage, foreign and old files, and the directory lock."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import signal
import stat
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from tinydb import TinyDB

from storage.errors import CorruptStore, DiskFull, StoreLocked
from storage.journal import JournalRepository, recovery
from storage.journal.format import list_cut_files, list_segments
from storage.tinydb_store import TinyDBRepository
from tests.journal_support import (
    Stores,
    contents,
    crash_copy,
    files,
    newest_segment,
    record_starts,
)
from tests.storage_contract import INDEXES, CounterIds, FixedClock, group, user

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def crashed(stores: Stores, data_dir: Path, tmp_path: Path) -> Path:
    """A directory left by a crash after three commits: ann, bob (with an event), cid."""
    store = stores.open(data_dir)
    for name in ("ann", "bob", "cid"):
        with store.transaction() as tx:
            tx.insert("User", user(name))
            if name == "bob":
                tx.note({"operation": "create", "name": "bob"})
    return crash_copy(data_dir, tmp_path / "crashed")


def names(store: JournalRepository) -> list[str]:
    return [document["userName"] for document in store.all("User")]


def open_plain(data_dir: Path) -> JournalRepository:
    return JournalRepository(data_dir, INDEXES, FixedClock(), CounterIds("x-"))


# -- torn final record ----------------------------------------------------------------------


def test_a_torn_final_record_is_cut_away_wherever_the_crash_hit(
    stores: Stores, crashed: Path, tmp_path: Path
) -> None:
    """Cut the journal at every byte of its last record: the first two commits survive."""
    segment = newest_segment(crashed)
    data, last = segment.read_bytes(), record_starts(segment)[-1]

    for cut in range(last, len(data)):
        directory = crash_copy(crashed, tmp_path / f"cut-{cut}")
        (directory / segment.name).write_bytes(data[:cut])

        store = open_plain(directory)
        assert names(store) == ["ann", "bob"], cut
        assert (directory / segment.name).read_bytes() == data[:last]
        kept = [path.read_bytes() for path in list_cut_files(directory)]
        assert kept == ([data[last:cut]] if cut > last else []), cut
        store.close()


@pytest.mark.parametrize(
    "tail",
    [lambda record: b"\x00" * len(record), lambda record: b"\x00" * 100],
    ids=["zero-filled-record", "zero-filled-prefix"],
)
def test_a_zero_filled_final_record_is_cut_away(stores: Stores, crashed: Path, tail) -> None:
    segment = newest_segment(crashed)
    data, last = segment.read_bytes(), record_starts(segment)[-1]
    segment.write_bytes(data[:last] + tail(data[last:]))

    store = stores.open(crashed, prefix="r-")

    assert names(store) == ["ann", "bob"]
    assert list_cut_files(crashed) == []  # zero bytes hold nothing worth keeping
    with store.transaction() as tx:
        tx.insert("User", user("dan"))
    assert segment.read_bytes().startswith(data[:last])
    assert names(stores.open(crash_copy(crashed, crashed.with_name("again")), "a-")) == [
        "ann",
        "bob",
        "dan",
    ]


def test_a_last_record_edited_by_hand_is_kept_in_a_file_the_warning_names(
    crashed: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand edit of the last line cannot be told from a torn write: it is cut away, but
    its bytes are written (and fsync'd, before the cut) to a file beside the segment."""
    segment = newest_segment(crashed)
    data, last = segment.read_bytes(), record_starts(segment)[-1]
    edited = data[last:].replace(b"cid", b"Cid")
    segment.write_bytes(data[:last] + edited)
    synced: list[str] = []
    real_fsync = recovery.os.fsync

    def noting_fsync(descriptor: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    monkeypatch.setattr(recovery.os, "fsync", noting_fsync)
    with caplog.at_level(logging.WARNING, logger="proware.storage"):
        store = open_plain(crashed)

    assert names(store) == ["ann", "bob"]
    assert segment.read_bytes() == data[:last]
    (kept,) = list_cut_files(crashed)
    assert kept.read_bytes() == edited
    assert re.fullmatch(rf"{segment.name}\.cut-\d{{8}}T\d{{6}}\.\d{{6}}Z", kept.name)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # it holds directory data
    # Kept durably (the file, then its name in the directory) before the cut.
    assert synced == [kept.name, crashed.name, segment.name]
    (warning,) = caplog.records
    message = warning.getMessage()
    assert f"{segment}: cut away {len(edited)} bytes after its last complete record" in message
    assert f"kept in {kept};" in message
    assert "never acknowledged to a client" in message
    store.close()


def test_only_the_newest_cut_files_are_kept(stores: Stores, crashed: Path, tmp_path: Path) -> None:
    segment = newest_segment(crashed)
    data, last = segment.read_bytes(), record_starts(segment)[-1]
    older = [
        crashed / f"proware.journal.00000001.cut-2026010{day}T000000.000000Z"
        for day in range(1, 10)
    ] + [crashed / "proware.journal.00000002.cut-20260110T000000.000000Z"]
    for path in older:
        path.write_bytes(b"older")
    segment.write_bytes(data[:-10])

    stores.open(crashed)

    kept = list_cut_files(crashed)
    assert len(kept) == recovery.CUT_FILES_KEPT == 10
    assert kept[:-1] == older[1:]  # the oldest went
    assert kept[-1].read_bytes() == data[last:-10]


def test_cut_bytes_that_cannot_be_kept_stop_the_start_and_change_nothing(
    crashed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = newest_segment(crashed)
    segment.write_bytes(segment.read_bytes()[:-10])
    before = files(crashed)

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(recovery.os, "fsync", full)
        with pytest.raises(DiskFull) as raised:
            open_plain(crashed)

    message = str(raised.value)
    assert message.startswith(f"{segment}: the ") and "could not be kept first" in message
    assert "no space left to write" in message and "nothing was changed" in message
    assert files(crashed) == before
    assert names(open_plain(crashed)) == ["ann", "bob"]  # space freed


def test_closing_after_a_crash_compacts_the_replayed_journal(crashed: Path) -> None:
    store = open_plain(crashed)
    store.close()

    assert list(list_segments(crashed)) == [2]
    assert newest_segment(crashed).read_bytes() == b""
    data = json.loads((crashed / "proware.json").read_text())
    assert [u["userName"] for u in data["users"].values()] == ["ann", "bob", "cid"]
    assert data["_meta"]["1"] == {"format": 2, "generation": 2, "seq": 3, "event_seq": 1}


# -- damage that is refused -----------------------------------------------------------------


def _record(body: bytes) -> bytes:
    return b"%d %08x %s\n" % (len(body), zlib.crc32(body), body)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda line: line.replace(b"bob", b"bOb"), "checksum mismatch"),
        (lambda line: b"x" + line[1:], "no '<length> <crc32> ' header"),
        (lambda line: line[:-5] + line[-4:], "does not match the"),
        (lambda line: _record(b'{"seq": 2,'), "the JSON is invalid"),
        (lambda line: _record(b"[2]"), "not an object with an integer seq"),
        (lambda line: line[:40] + b"\n", "does not match the"),
    ],
    ids=["flipped-byte", "bad-header", "byte-missing", "bad-json", "not-object", "cut-short"],
)
def test_a_damaged_record_before_the_last_is_refused_naming_file_and_offset(
    crashed: Path, damage, problem: str
) -> None:
    segment = newest_segment(crashed)
    data, starts = segment.read_bytes(), record_starts(segment)
    second = data[starts[1] : starts[2]]
    segment.write_bytes(data[: starts[1]] + damage(second) + data[starts[2] :])
    before = files(crashed)

    with pytest.raises(CorruptStore) as raised:
        open_plain(crashed)

    message = str(raised.value)
    assert message.startswith(f"{segment}: damaged journal record at byte offset {starts[1]}")
    assert "(line 2)" in message
    assert problem in message
    assert files(crashed) == before


def test_a_torn_record_in_an_older_segment_is_refused(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = stores.open(data_dir)
    for name in ("ann", "bob"):
        with store.transaction() as tx:
            tx.insert("User", user(name))
    store.add_compaction_hook(lambda: 1 / 0)  # the compaction stops after the rotation
    with pytest.raises(ZeroDivisionError):
        store.compact()
    with store.transaction() as tx:
        tx.insert("User", user("cid"))
    copy = crash_copy(data_dir, tmp_path / "crash")
    older = copy / "proware.journal.00000001"
    older.write_bytes(older.read_bytes()[:-10])
    before = files(copy)

    with pytest.raises(CorruptStore, match=f"{older}: damaged journal record at byte offset"):
        open_plain(copy)
    assert files(copy) == before


def test_a_missing_segment_is_refused(stores: Stores, data_dir: Path, tmp_path: Path) -> None:
    store = stores.open(data_dir)
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
    store.add_compaction_hook(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        store.compact()
    copy = crash_copy(data_dir, tmp_path / "crash")
    (copy / "proware.journal.00000001").unlink()
    before = files(copy)

    with pytest.raises(CorruptStore, match="journal segment 1 is missing"):
        open_plain(copy)
    assert files(copy) == before


def test_a_journal_that_does_not_follow_the_data_file_is_refused(
    stores: Stores, crashed: Path, tmp_path: Path
) -> None:
    other = stores.open(tmp_path / "other")
    with other.transaction() as tx:
        tx.insert("User", user("zed"))
    # A copy of another store's data: it includes seq 1, where this journal starts.
    other.snapshot_to(crashed / "proware.json")
    before = files(crashed)

    with pytest.raises(CorruptStore, match=r"record 1 \(seq 1\) does not follow seq 1"):
        open_plain(crashed)
    assert files(crashed) == before


def test_journal_segments_without_a_data_file_are_refused(crashed: Path) -> None:
    (crashed / "proware.json").unlink()
    before = files(crashed)

    with pytest.raises(CorruptStore, match="has journal segments but no proware.json"):
        open_plain(crashed)
    assert files(crashed) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"_meta": {"1": {"format": 2}},\n "users": {"1": {"id": "a",}}}', "line 2 column"),
        ('{"_meta": {"1": {"format": 2}}, "users": {"1"', "line 1 column 46"),
        ("\x00\x00\x00\x00", "line 1 column 1"),
        ("", "is empty"),
        ("[]", "holds a JSON list"),
        ('{"users": {}}', "no valid _meta format"),
        ('{"_meta": {"1": {"format": "2"}}}', "no valid _meta format"),
        ('{"_meta": {"1": {"format": 2}}}', "lacks the generation, seq and event_seq"),
        ('{"_meta": {"1": {"format": 1}}, "users": []}', "table 'users' is not a TinyDB table"),
        ('{"_meta": {"1": {"format": 1}}, "users": {"1": {"userName": "a"}}}', "no string id"),
        (
            '{"_meta": {"1": {"format": 1}}, "users": {"1": {"id": "a"}, "2": {"id": "a"}}}',
            "repeats the id 'a'",
        ),
        (
            '{"_meta": {"1": {"format": 2, "generation": 1, "seq": 0, "event_seq": 0}},'
            ' "memberships": {"1": {"group": "g", "members": ["u"]}}}',
            "memberships name the group 'g'",
        ),
        (
            '{"_meta": {"1": {"format": 1}}, "users": {}, "groups": {"1": {"id": "g",'
            ' "_members": ["u"]}}}',
            "has members that do not exist: ['u']",
        ),
        (
            '{"_meta": {"1": {"format": 1}}, "users": {"1": {"id": "a", "userName": "Ann"},'
            ' "2": {"id": "b", "userName": "ANN"}}}',
            "share the unique userName 'ann'",
        ),
    ],
    ids=[
        "trailing-comma",
        "truncated",
        "zeroed",
        "empty",
        "array",
        "no-meta",
        "format-not-int",
        "no-counters",
        "table-not-object",
        "no-string-id",
        "repeated-id",
        "members-of-no-group",
        "members-that-do-not-exist",
        "duplicate-user-name",
    ],
)
def test_a_data_file_that_cannot_be_used_is_refused_and_left_untouched(
    data_dir: Path, content: str, problem: str
) -> None:
    data_dir.mkdir()
    (data_dir / "proware.json").write_text(content)
    before = files(data_dir)

    with pytest.raises(CorruptStore) as raised:
        open_plain(data_dir)

    assert str(data_dir) in str(raised.value)
    assert problem in str(raised.value)
    assert files(data_dir) == before


def test_a_newer_format_is_refused_and_left_untouched(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "proware.json").write_text('{"_meta": {"1": {"format": 3}}, "users": {}}')
    before = files(data_dir)

    with pytest.raises(CorruptStore) as raised:
        open_plain(data_dir)

    assert str(raised.value) == (
        f"{data_dir / 'proware.json'}: format 3 is newer than this version of Proware supports "
        "(2); run the newer Proware to open it, or, to come back to this version, restore a "
        "backup with it (python app.py restore FILE keeps this file aside); the file was left "
        "unchanged"
    )
    assert files(data_dir) == before


# -- left-overs of an interrupted compaction ------------------------------------------------


def test_stray_temp_files_are_removed_on_start(stores: Stores, data_dir: Path) -> None:
    stores.open(data_dir).close()
    stray = data_dir / ".proware.json.k3j2h1.tmp"
    stray.write_text('{"half": ')
    unrelated = data_dir / "notes.tmp"
    unrelated.write_text("keep")

    stores.open(data_dir, prefix="b-")

    assert not stray.exists()
    assert unrelated.exists()


def test_segments_a_finished_compaction_had_not_deleted_are_removed(
    stores: Stores, data_dir: Path
) -> None:
    store = stores.open(data_dir)
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
    store.close()  # compacts: the data file now starts at segment 2
    leftover = data_dir / "proware.journal.00000001"
    leftover.write_bytes(b"anything: the data file already holds it")

    reopened = stores.open(data_dir, prefix="b-")

    assert not leftover.exists()
    assert names(reopened) == ["ann"]


# -- migration from format 1 ----------------------------------------------------------------


def format1_store(data_dir: Path) -> dict:
    """A data file written by TinyDBRepository (format 1); returns what it holds."""
    data_dir.mkdir()
    old = TinyDBRepository(data_dir / "proware.json", INDEXES, FixedClock(), CounterIds())
    with old.transaction() as tx:
        for name in ("ann", "bob", "cid"):
            tx.insert("User", user(name))
        tx.insert("Group", group("Sales"))
        tx.insert("Group", group("Empty"))
        tx.add_members("id-4", ["id-3", "id-1"])
    held = contents(old)
    old.close()
    return held


def test_a_format_1_file_is_migrated_and_the_original_kept(stores: Stores, data_dir: Path) -> None:
    held = format1_store(data_dir)
    original = (data_dir / "proware.json").read_bytes()

    store = stores.open(data_dir, prefix="new-")

    assert contents(store) == held
    assert (data_dir / "proware.json.format1.bak").read_bytes() == original
    with TinyDB(data_dir / "proware.json", access_mode="r") as plain:
        assert plain.table("_meta").all()[0]["format"] == 2
        assert plain.table("memberships").all() == [{"group": "id-4", "members": ["id-3", "id-1"]}]
        assert all("_members" not in g for g in plain.table("groups").all())
    with store.transaction() as tx:
        tx.add_members("id-5", ["id-2"])
    store.close()
    reopened = stores.open(data_dir, prefix="again-")
    assert reopened.members("id-5") == ["id-2"]
    assert sorted(p.name for p in data_dir.glob("*.bak")) == ["proware.json.format1.bak"]


def test_a_migration_interrupted_after_the_copy_runs_again(stores: Stores, data_dir: Path) -> None:
    held = format1_store(data_dir)
    original = (data_dir / "proware.json").read_bytes()
    (data_dir / "proware.json.format1.bak").write_bytes(original)

    assert contents(stores.open(data_dir)) == held
    assert sorted(p.name for p in data_dir.glob("*.bak")) == ["proware.json.format1.bak"]


def test_a_format_1_file_beside_journal_segments_is_refused(data_dir: Path) -> None:
    format1_store(data_dir)
    (data_dir / "proware.journal.00000001").write_bytes(b"")
    before = files(data_dir)

    with pytest.raises(CorruptStore, match="format-1 file but journal segments lie beside it"):
        open_plain(data_dir)
    assert files(data_dir) == before


# -- one process per directory --------------------------------------------------------------


def _child(script: str, data_dir: Path) -> subprocess.Popen:
    """A Python process running ``script`` with DATA_DIR set; it prints "ready" when set up."""
    prelude = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPOSITORY_ROOT)!r})
        from storage.journal import JournalRepository
        from storage.errors import StoreLocked
        from tests.storage_contract import INDEXES, user
        DATA_DIR = Path({str(data_dir)!r})
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


HOLD = """
    store = JournalRepository(DATA_DIR, INDEXES)
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
"""


def test_a_second_store_in_the_same_process_is_refused(stores: Stores, data_dir: Path) -> None:
    stores.open(data_dir)

    with pytest.raises(StoreLocked) as raised:
        open_plain(data_dir)

    assert str(raised.value).startswith(
        f"data directory {data_dir} is in use by another Proware server (pid {os.getpid()})"
    )


def test_another_process_is_refused_until_the_holder_stops(data_dir: Path) -> None:
    holder = _child(HOLD, data_dir)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        with pytest.raises(StoreLocked) as raised:
            open_plain(data_dir)
        assert f"in use by another Proware server (pid {holder.pid})" in str(raised.value)
    finally:
        holder.communicate("stop\n", timeout=10)

    open_plain(data_dir).close()


def test_the_directory_is_free_once_its_holder_is_killed(data_dir: Path) -> None:
    with _child(HOLD, data_dir) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        holder.send_signal(signal.SIGKILL)

    open_plain(data_dir).close()


def test_a_child_process_is_refused_while_this_one_holds_the_directory(
    stores: Stores, data_dir: Path
) -> None:
    stores.open(data_dir)
    child = _child(
        """
        try:
            JournalRepository(DATA_DIR, INDEXES)
        except StoreLocked as refused:
            print(refused, flush=True)
        """,
        data_dir,
    )
    output, _ = child.communicate(timeout=10)

    assert f"is in use by another Proware server (pid {os.getpid()})" in output


# -- kill -9 under load ---------------------------------------------------------------------

WRITER = """
    store = JournalRepository(DATA_DIR, INDEXES, compact_min_bytes=20_000, compact_ratio=0.0)
    with store.transaction() as tx:
        group = tx.find("Group", "displayName", "all")
        group = group or [tx.insert("Group", {"displayName": "all"})["id"]]
    print("ready", flush=True)
    number = store.count("User")
    while True:
        with store.transaction() as tx:
            created = tx.insert("User", user(f"u{number}"))
            tx.add_members(group[0], [created["id"]])
            tx.note({"operation": "create", "number": number})
        print(number, flush=True)  # acknowledged: the commit returned
        number += 1
"""


def test_kill_9_at_random_moments_loses_no_acknowledged_commit(data_dir: Path) -> None:
    chance = random.Random(7)
    acknowledged = -1
    for _ in range(6):
        with _child(WRITER, data_dir) as writer:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
            for _ in range(chance.randrange(20, 400)):
                acknowledged = int(writer.stdout.readline())
            writer.send_signal(signal.SIGKILL)
            # Commits printed after the last line read were acknowledged too.
            for line in writer.stdout.read().splitlines():
                acknowledged = int(line)

        store = open_plain(data_dir)
        numbers = [int(name[1:]) for name in names(store)]
        # Every acknowledged commit is there, in order; at most the one in flight beyond.
        assert numbers[: acknowledged + 1] == list(range(acknowledged + 1))
        assert numbers == list(range(len(numbers)))
        assert len(numbers) <= acknowledged + 2
        (all_group,) = store.find("Group", "displayName", "all")
        assert store.members(all_group) == [u["id"] for u in store.all("User")]
        journaled = [event["number"] for event in store.recent_events()]
        assert journaled == numbers[len(numbers) - len(journaled) :]
        store.close()
    assert json.loads((data_dir / "proware.json").read_text())["_meta"]["1"]["generation"] > 6
    assert len(list_segments(data_dir)) == 1


def test_a_journal_written_in_utf_8_by_an_earlier_version_still_replays(tmp_path: Path) -> None:
    """Records used to be UTF-8 JSON (ensure_ascii=False) with docs before members; now
    they are ASCII-only with docs last. A crash left one of the old kind: it replays."""
    store = JournalRepository(tmp_path / "data", INDEXES, FixedClock(), CounterIds("id-"))
    with store.transaction() as tx:
        tx.insert("User", user("first"))
    crashed = crash_copy(tmp_path / "data", tmp_path / "crashed", store)
    store.close()
    document = user("zoë", id="id-old", displayName="Zoë Ångström")
    old = {"seq": 2, "docs": [["User", "id-old", document]]}
    body = json.dumps(old, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    segments = list_segments(crashed)
    with segments[max(segments)].open("ab") as file:
        file.write(b"%d %08x %s\n" % (len(body), zlib.crc32(body), body))

    reopened = JournalRepository(crashed, INDEXES, FixedClock(), CounterIds("r-"))
    try:
        assert [u["userName"] for u in reopened.all("User")] == ["first", "zoë"]
        assert reopened.get("User", "id-old")["displayName"] == "Zoë Ångström"
    finally:
        reopened.close()
