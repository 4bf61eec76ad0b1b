"""Backup while the store runs, and restore into a stopped instance."""

from __future__ import annotations

import errno
import json
import threading
from functools import partial
from pathlib import Path

import pytest
from tinydb import TinyDB

from app import main
from storage import controlfile
from storage.errors import CorruptStore, DiskFull, StorageError, StoreLocked
from storage.journal import backup as backup_module
from storage.journal.backup import backup, restore
from storage.journal.format import list_cut_files, list_segments
from storage.tinydb_store import TinyDBRepository
from tests.journal_support import Stores, contents, crash_copy, files
from tests.storage_contract import INDEXES, CounterIds, FixedClock, group, user


def sample(stores: Stores, data_dir: Path):
    """A store with three users, a group of two, and a deleted user."""
    store = stores.open(data_dir)
    with store.transaction() as tx:
        for name in ("ann", "bob", "cid", "dan"):
            tx.insert("User", user(name))
        tx.insert("Group", group("Sales"))  # id-5
        tx.add_members("id-5", ["id-3", "id-1"])
        tx.delete("User", "id-4")
    return store


def test_a_backup_of_a_directory_is_one_tinydb_file_that_restores(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = sample(stores, data_dir)
    target = tmp_path / "backup.json"

    summary = backup(data_dir, target)  # the store is open: read without its lock

    assert (summary.path, summary.users, summary.groups, summary.seq) == (target, 3, 1, 1)
    with TinyDB(target, access_mode="r") as plain:
        assert [u["userName"] for u in plain.table("users").all()] == ["ann", "bob", "cid"]
        assert plain.table("memberships").all() == [{"group": "id-5", "members": ["id-3", "id-1"]}]
    restored = tmp_path / "restored"
    restore(target, restored, INDEXES)
    assert contents(stores.open(restored, prefix="r-")) == contents(store)


def test_a_backup_of_an_open_repository(stores: Stores, data_dir: Path, tmp_path: Path) -> None:
    store = sample(stores, data_dir)

    summary = backup(store, tmp_path / "backup.json")

    assert (summary.users, summary.groups, summary.seq) == (3, 1, 1)
    restore(tmp_path / "backup.json", tmp_path / "restored", INDEXES)
    assert contents(stores.open(tmp_path / "restored", prefix="r-")) == contents(store)


def test_a_backup_while_a_thread_writes_is_consistent_and_restores(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    """Users u0, u1, ... join one group as they are created; compactions run meanwhile."""
    store = stores.open(data_dir, compact_min_bytes=3_000, compact_ratio=0.0)
    with store.transaction() as tx:
        tx.insert("Group", group("All"))  # id-1
    stop = threading.Event()

    def write() -> None:
        number = 0
        while not stop.is_set():
            with store.transaction() as tx:
                created = tx.insert("User", user(f"u{number}"))
                tx.add_members("id-1", [created["id"]])
            number += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        generations, sizes = set(), []
        for number in range(12):
            target = tmp_path / f"backup-{number}.json"
            summary = backup(data_dir, target)
            with TinyDB(target, access_mode="r") as plain:
                users = plain.table("users").all()
                (memberships,) = plain.table("memberships").all() or [{"members": []}]
            assert [u["userName"] for u in users] == [f"u{n}" for n in range(len(users))]
            assert memberships["members"] == [u["id"] for u in users]
            assert summary.seq == len(users) + 1
            sizes.append(len(users))
            generations.add(max(list_segments(data_dir)))
    finally:
        stop.set()
        writer.join()

    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    assert len(generations) > 1  # compactions swapped files during the backups
    restored = tmp_path / "restored"
    restore(target, restored, INDEXES)
    reopened = stores.open(restored, prefix="r-")
    assert reopened.count("User") == sizes[-1]
    with reopened.transaction() as tx:  # and it takes writes again
        tx.insert("User", user("after-restore"))


def test_a_backup_of_a_directory_without_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(StorageError, match="holds no Proware data file"):
        backup(tmp_path / "empty", tmp_path / "backup.json")
    assert not (tmp_path / "backup.json").exists()


def test_restore_is_refused_while_a_server_holds_the_directory(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = sample(stores, data_dir)
    backup(store, tmp_path / "backup.json")
    before = files(data_dir)

    with pytest.raises(StoreLocked, match="is in use by another Proware server"):
        restore(tmp_path / "backup.json", data_dir, INDEXES)

    assert files(data_dir) == before


def changed_since_backup(stores: Stores, data_dir: Path, tmp_path: Path) -> Path:
    """The sample backed up to ``backup.json``, then a user added: a copy of the directory
    as a crash leaves it (a data file and a journal), ready for a restore."""
    store = sample(stores, data_dir)
    backup(store, tmp_path / "backup.json")
    with store.transaction() as tx:
        tx.insert("User", user("later"))
    return crash_copy(data_dir, tmp_path / "crashed")


def test_restore_keeps_the_previous_files_and_replaces_data_and_journal(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    crashed = changed_since_backup(stores, data_dir, tmp_path)
    previous = files(crashed)

    summary = restore(tmp_path / "backup.json", crashed, INDEXES)

    assert summary.previous is not None
    assert summary.previous.name.startswith("proware.before-restore-")
    assert files(summary.previous) == previous
    assert sorted(files(crashed)) == ["proware.json"]
    reopened = stores.open(crashed, prefix="r-")
    assert [u["userName"] for u in reopened.all("User")] == ["ann", "bob", "cid"]
    with reopened.transaction() as tx:
        tx.insert("User", user("after"))
    reopened.close()
    again = stores.open(crashed, prefix="a-")
    assert [u["userName"] for u in again.all("User")] == ["ann", "bob", "cid", "after"]


def test_restore_keeps_a_large_data_file_whole(
    stores: Stores, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept data file is a hard link to the one replaced, which a large replace frees
    a megabyte at a time: that must not cut the kept copy short (a 1.6 MB file was left at
    0.8 MB, invalid JSON, before this was fixed)."""
    crashed = changed_since_backup(stores, data_dir, tmp_path)
    previous = files(crashed)
    # Every data file counts as large: freed in steps of 64 bytes.
    monkeypatch.setattr(
        controlfile, "delete_gradually", partial(controlfile.delete_gradually, step=64)
    )

    summary = restore(tmp_path / "backup.json", crashed, INDEXES)

    assert summary.previous is not None
    assert files(summary.previous) == previous


def test_restore_takes_back_a_directory_a_newer_proware_wrote(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    """The way back a newer data file's refusal names: restore sets the file aside."""
    sample(stores, data_dir)
    backup(data_dir, tmp_path / "backup.json")
    stores.close_all()
    newer = '{"_meta": {"1": {"format": 3}}, "users": {}}'
    (data_dir / "proware.json").write_text(newer)
    with pytest.raises(CorruptStore, match="restore a backup with it"):
        stores.open(data_dir)

    summary = restore(tmp_path / "backup.json", data_dir, INDEXES)

    assert summary.previous is not None
    assert (summary.previous / "proware.json").read_text() == newer
    assert [u["userName"] for u in stores.open(data_dir).all("User")] == ["ann", "bob", "cid"]


def test_restore_accepts_a_format_1_file(stores: Stores, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    old = TinyDBRepository(tmp_path / "old" / "proware.json", INDEXES, FixedClock(), CounterIds())
    with old.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.insert("Group", group("Sales"))
        tx.add_members("id-2", ["id-1"])
    held = contents(old)
    old.close()

    restore(tmp_path / "old" / "proware.json", tmp_path / "new", INDEXES)

    assert contents(stores.open(tmp_path / "new")) == held


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"_meta": {"1": {"format": 2}', "is not valid JSON"),
        ('{"_meta": {"1": {"format": 9}}}', "format 9 is newer"),
        ('{"users": {}}', "not a Proware data file"),
        (
            '{"_meta": {"1": {"format": 1}}, "users": {"1": {"id": "a", "userName": "Ann"},'
            ' "2": {"id": "b", "userName": "ANN"}}}',
            "share the unique userName 'ann'",
        ),
    ],
    ids=["not-json", "newer-format", "foreign", "duplicate-user-name"],
)
def test_restore_refuses_an_unusable_backup_and_changes_nothing(
    stores: Stores, data_dir: Path, tmp_path: Path, content: str, problem: str
) -> None:
    sample(stores, data_dir).close()
    source = tmp_path / "backup.json"
    source.write_text(content)
    before = files(data_dir)

    with pytest.raises(CorruptStore, match=problem) as raised:
        restore(source, data_dir, INDEXES)

    assert str(source) in str(raised.value)
    assert files(data_dir) == before
    assert sorted(path.name for path in data_dir.iterdir() if path.is_dir()) == []


@pytest.mark.parametrize("where", ["copying-the-previous-files", "writing-the-data-file"])
def test_restore_on_a_full_disk_says_so_and_changes_nothing(
    stores: Stores,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    where: str,
) -> None:
    crashed = changed_since_backup(stores, data_dir, tmp_path)
    before = files(crashed)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        if where == "copying-the-previous-files":
            patch.setattr(backup_module.os, "mkdir", full)
        else:  # the previous files are kept (hard links need no space), then
            patch.setattr(controlfile.tempfile, "mkstemp", full)
        with pytest.raises(DiskFull, match="no space left to write"):
            restore(tmp_path / "backup.json", crashed, INDEXES)
        config = tmp_path / "proware.toml"
        config.write_text(f"[storage]\npath = {json.dumps(str(crashed))}\n", encoding="utf-8")
        code = main(["--config", str(config), "restore", str(tmp_path / "backup.json")])

    assert code == 1
    assert "error: " in capsys.readouterr().err
    assert files(crashed) == before
    assert sorted(path.name for path in crashed.iterdir() if path.is_dir()) == []
    reopened = stores.open(crashed, prefix="r-")
    assert [u["userName"] for u in reopened.all("User")] == ["ann", "bob", "cid", "later"]


def test_restore_of_a_missing_file_says_so(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read the backup .*missing.json"):
        restore(tmp_path / "missing.json", data_dir, INDEXES)


def test_a_restored_directory_keeps_the_event_seq(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = stores.open(data_dir)
    with store.transaction() as tx:
        tx.note({"operation": "create"})
        tx.note({"operation": "update"})
    backup(data_dir, tmp_path / "backup.json")
    meta = json.loads((tmp_path / "backup.json").read_text())["_meta"]["1"]
    assert meta == {"format": 2, "generation": 1, "seq": 1, "event_seq": 2}

    restore(tmp_path / "backup.json", tmp_path / "restored", INDEXES)
    restored = stores.open(tmp_path / "restored", prefix="r-")
    seen: list[dict] = []
    restored.add_commit_listener(seen.extend)
    with restored.transaction() as tx:
        tx.note({"operation": "delete"})
    assert seen == [{"operation": "delete", "seq": 3}]


def test_backup_restore_and_migrate_leave_the_cut_journal_tails_alone(
    stores: Stores, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The files keeping what start-up cut from the journal are neither segments nor data:
    a backup, a restore and ``storage migrate`` read around them and leave them be."""
    crashed = changed_since_backup(stores, data_dir, tmp_path)
    (segment,) = list_segments(crashed).values()
    segment.write_bytes(segment.read_bytes()[:-10])  # "later", torn
    store = stores.open(crashed, prefix="r-")
    (cut,) = list_cut_files(crashed)
    kept = cut.read_bytes()

    summary = backup(crashed, tmp_path / "again.json")  # its server runs
    assert summary.users == 3
    store.close()
    restore(tmp_path / "backup.json", crashed, INDEXES)
    assert stores.open(crashed, prefix="a-").count("User") == 3
    stores.close_all()
    config = tmp_path / "proware.toml"
    config.write_text(f"[storage]\npath = {json.dumps(str(crashed))}\n", encoding="utf-8")
    code = main(["--config", str(config), "storage", "migrate", "--to", str(tmp_path / "moved")])

    assert code == 0, capsys.readouterr().err
    assert list_cut_files(crashed) == [cut] and cut.read_bytes() == kept
    assert list_cut_files(tmp_path / "moved") == []
    assert stores.open(tmp_path / "moved", prefix="m-").count("User") == 3
