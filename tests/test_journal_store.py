"""JournalRepository at work: durable commits, compaction, events in order, many writers.

The storage contract (tests/test_repository_contract.py) covers the rules; these tests cover
what the journal adds. A copy of the data directory taken while a store is open is what
``kill -9`` would leave, so reopening the copy shows what survives a crash.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tinydb import TinyDB

from storage.errors import Conflict, DiskFull
from storage.journal import file as journal_file
from storage.journal import pacing
from storage.journal.file import JournalBroken
from storage.journal.format import list_segments
from storage.journal.snapshot import DATA_FILE, read_snapshot
from storage.repository import Repository
from tests.journal_support import Stores, contents, crash_copy, newest_segment
from tests.storage_contract import group, user


def insert(store: Repository, kind: str, document: dict) -> dict:
    with store.transaction() as tx:
        return tx.insert(kind, document)


def data_file(data_dir: Path) -> dict:
    return json.loads((data_dir / "proware.json").read_text())


# -- durability -----------------------------------------------------------------------------


def test_a_new_directory_gets_an_empty_format_2_data_file_and_journal(
    stores: Stores, data_dir: Path
) -> None:
    stores.open(data_dir)

    assert data_file(data_dir) == {
        "_meta": {"1": {"format": 2, "generation": 1, "seq": 0, "event_seq": 0}},
        "users": {},
        "groups": {},
        "memberships": {},
        "joined": {},
    }
    assert sorted(os.listdir(data_dir)) == [
        "proware.journal.00000001",
        "proware.json",
        "proware.lock",
    ]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in data_dir.iterdir()}
    assert set(modes.values()) == {0o600}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_every_commit_is_on_disk_before_its_transaction_returns(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    """After each commit, a copy of the files (what kill -9 leaves) opens to the same store."""
    store = stores.open(data_dir)
    steps = [
        lambda tx: [tx.insert("User", user(name)) for name in ("ann", "bob", "cid")],
        lambda tx: tx.insert("Group", group("Sales")),
        lambda tx: tx.add_members("id-4", ["id-2", "id-1", "id-3"]),
        lambda tx: tx.replace("User", "id-1", user("Annie", title="Boss")),
        lambda tx: tx.remove_members("id-4", ["id-2"]),
        lambda tx: tx.delete("User", "id-1"),
        lambda tx: tx.insert("Group", group("Support")) and tx.add_members("id-5", ["id-3"]),
        lambda tx: tx.delete("Group", "id-4"),
    ]
    for number, step in enumerate(steps):
        with store.transaction() as tx:
            step(tx)

        copy = crash_copy(data_dir, tmp_path / f"crash-{number}")
        assert contents(stores.open(copy, prefix=f"c{number}-")) == contents(store), number


def test_adding_one_member_appends_a_short_record_whatever_the_group_size(
    stores: Stores, data_dir: Path
) -> None:
    store = stores.open(data_dir)
    with store.transaction() as tx:
        ids = [tx.insert("User", user(f"u{number}"))["id"] for number in range(2002)]
        tx.insert("Group", group("Big"))  # id-2003
        tx.add_members("id-2003", ids[:2000])
    segment = newest_segment(data_dir)
    before = segment.stat().st_size

    with store.transaction() as tx:
        tx.add_members("id-2003", [ids[2000]])

    record = segment.read_bytes()[before:]
    assert len(record) < 500
    assert json.loads(record.split(b" ", 2)[2])["members"] == [["add", "id-2003", ["id-2001"]]]
    assert store.members("id-2003")[-2:] == ["id-2000", "id-2001"]


def test_a_kind_without_a_table_is_refused_and_nothing_written(
    stores: Stores, data_dir: Path
) -> None:
    store = stores.open(data_dir)
    before = newest_segment(data_dir).read_bytes()

    with pytest.raises(ValueError, match="only User, Group"), store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.insert("Device", {"name": "printer"})

    assert newest_segment(data_dir).read_bytes() == before
    assert store.count("User") == 0


def test_other_readers_see_a_commit_only_once_it_is_durable(
    stores: Stores, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores.open(data_dir)
    syncing, release = threading.Event(), threading.Event()
    real_sync = os.fdatasync

    def slow_sync(descriptor: int) -> None:
        syncing.set()
        release.wait(5)
        real_sync(descriptor)

    monkeypatch.setattr(journal_file.os, "fdatasync", slow_sync)
    writer = threading.Thread(target=insert, args=(store, "User", user("ann")))
    writer.start()
    assert syncing.wait(5)

    assert not store.exists("User", "id-1")
    assert store.find("User", "userName", "ann") == []
    release.set()
    writer.join()
    assert store.get("User", "id-1")["userName"] == "ann"


def test_a_commit_written_during_another_commits_fsync_waits_for_an_fsync_of_its_own(
    stores: Stores, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits share fsyncs, but an fsync covers only what was written before it began. A
    record appended while one runs (its commit holds no lock by then) is acknowledged only
    after the next: counted as covered by the running one, its 2xx would go out for a change
    a power cut can still lose."""
    store = stores.open(data_dir)
    insert(store, "User", user("ann"))  # the segment is created and synced before the test
    covered: list[int] = []  # the segment's size as each fsync began: what it can cover
    in_sync, release, second_written = threading.Event(), threading.Event(), threading.Event()
    real_sync, real_append = os.fdatasync, journal_file.JournalFile.append

    def slow_first_sync(descriptor: int) -> None:
        covered.append(os.fstat(descriptor).st_size)
        if len(covered) == 1:
            in_sync.set()
            release.wait(5)
        real_sync(descriptor)

    def noting_append(journal: journal_file.JournalFile, data: bytes, seq: int) -> None:
        real_append(journal, data, seq)
        if in_sync.is_set():
            second_written.set()

    monkeypatch.setattr(journal_file.os, "fdatasync", slow_first_sync)
    monkeypatch.setattr(journal_file.JournalFile, "append", noting_append)
    first = threading.Thread(target=insert, args=(store, "User", user("bob")))
    first.start()
    assert in_sync.wait(5)
    second = threading.Thread(target=insert, args=(store, "User", user("cid")))
    second.start()
    assert second_written.wait(5)
    release.set()
    first.join()
    second.join()

    assert len(covered) == 2
    assert covered[-1] == newest_segment(data_dir).stat().st_size


def test_each_new_segments_name_is_made_durable_before_a_record_in_it_is_acknowledged(
    stores: Stores, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record fsync'd into a file whose directory entry is not yet on disk is lost with
    the file on a power cut: the directory is fsync'd when a segment is created (the first,
    and each one a compaction starts)."""
    durable: set[str] = set()  # the segment names each directory fsync made durable
    real_fsync_directory = journal_file.fsync_directory

    def recording(directory: Path) -> None:
        real_fsync_directory(directory)
        durable.update(path.name for path in list_segments(directory).values())

    monkeypatch.setattr(journal_file, "fsync_directory", recording)
    store = stores.open(data_dir)
    acknowledged = []
    insert(store, "User", user("ann"))
    acknowledged.append(newest_segment(data_dir).name)
    store.compact()
    insert(store, "User", user("bob"))
    acknowledged.append(newest_segment(data_dir).name)

    assert acknowledged[0] != acknowledged[1]
    assert set(acknowledged) <= durable


def test_after_a_failed_fsync_nothing_unsynced_shows_and_writes_are_refused(
    stores: Stores, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores.open(data_dir)
    insert(store, "User", user("ann"))

    def failing(descriptor: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(journal_file.os, "fdatasync", failing)
        with pytest.raises(JournalBroken, match="fsync failed"):
            insert(store, "User", user("bob"))

    assert store.find("User", "userName", "bob") == []
    with pytest.raises(JournalBroken, match="until the server restarts"):
        insert(store, "User", user("cid"))
    assert [document["userName"] for document in store.all("User")] == ["ann"]


def test_a_failed_append_leaves_the_journal_as_before_and_the_store_usable(
    stores: Stores, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores.open(data_dir)
    insert(store, "User", user("ann"))
    before = newest_segment(data_dir).read_bytes()
    real_write = os.write

    def disk_fills_up(descriptor: int, data: bytes) -> int:
        real_write(descriptor, bytes(data[:10]))  # part of the record reaches the file
        monkeypatch.setattr(journal_file.os, "write", refuse)
        return 10

    def refuse(descriptor: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_file.os, "write", disk_fills_up)
    with pytest.raises(DiskFull, match="No space"):
        insert(store, "User", user("bob"))
    monkeypatch.undo()

    assert newest_segment(data_dir).read_bytes() == before
    assert store.find("User", "userName", "bob") == []
    insert(store, "User", user("cid"))
    reopened = stores.open(crash_copy(data_dir, tmp_path / "crash"), prefix="c-")
    assert [document["userName"] for document in reopened.all("User")] == ["ann", "cid"]


# -- compaction -----------------------------------------------------------------------------


def test_compaction_writes_a_file_plain_tinydb_reads_and_starts_a_new_journal(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = stores.open(data_dir)
    with store.transaction() as tx:
        for name in ("ann", "bob", "cid"):
            tx.insert("User", user(name, displayName=f"{name.title()} Ørsted"))
        tx.insert("Group", group("Sales"))
        tx.add_members("id-4", ["id-3", "id-1", "id-2"])
        tx.delete("User", "id-2")

    store.compact()

    assert list(list_segments(data_dir)) == [2]
    assert newest_segment(data_dir).read_bytes() == b""
    with TinyDB(data_dir / "proware.json", access_mode="r") as plain:
        assert [u["displayName"] for u in plain.table("users").all()] == [
            "Ann Ørsted",
            "Cid Ørsted",
        ]
        assert plain.table("memberships").all() == [{"group": "id-4", "members": ["id-3", "id-1"]}]
        assert plain.table("_meta").all() == [
            {"format": 2, "generation": 2, "seq": 1, "event_seq": 0}
        ]
    insert(store, "User", user("dan"))
    reopened = stores.open(crash_copy(data_dir, tmp_path / "crash"), prefix="c-")
    assert contents(reopened) == contents(store)


def test_compaction_starts_by_itself_while_commits_go_on(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = stores.open(data_dir, compact_min_bytes=2_000, compact_ratio=0.0)
    insert(store, "Group", group("All"))

    for number in range(150):
        with store.transaction() as tx:
            created = tx.insert("User", user(f"u{number}"))
            tx.add_members("id-1", [created["id"]])
    deadline = time.monotonic() + 5
    while data_file(data_dir)["_meta"]["1"]["generation"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert data_file(data_dir)["_meta"]["1"]["generation"] >= 3
    reopened = stores.open(crash_copy(data_dir, tmp_path / "crash", store), prefix="c-")
    assert contents(reopened) == contents(store)
    assert len(reopened.members("id-1")) == 150


def test_a_rotation_makes_the_records_still_waiting_for_their_fsync_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction starts a new segment while commits written to the old one may still wait
    for their fsync; theirs would then go to the new file, so the rotation syncs the old one
    first, or those commits are acknowledged with their records never synced."""
    synced: list[tuple[int, int]] = []  # (inode, size) of each file as an fsync of it began
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def recording(real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(descriptor: int) -> None:
            status = os.fstat(descriptor)
            synced.append((status.st_ino, status.st_size))
            real(descriptor)

        return sync

    journal = journal_file.JournalFile(tmp_path, 1)
    try:
        journal.append(b'{"seq": 1}\n', 1)  # written; its commit has not reached sync yet
        old = journal.path.stat()
        monkeypatch.setattr(journal_file.os, "fsync", recording(real_fsync))
        monkeypatch.setattr(journal_file.os, "fdatasync", recording(real_fdatasync))
        journal.rotate(2)
        journal.sync(1)
    finally:
        journal.close()

    assert (old.st_ino, old.st_size) in synced


def test_close_compacts_and_releases_the_directory(stores: Stores, data_dir: Path) -> None:
    store = stores.open(data_dir)
    insert(store, "User", user("ann"))

    store.close()
    store.close()  # a second close is harmless

    assert [u["userName"] for u in data_file(data_dir)["users"].values()] == ["ann"]
    assert newest_segment(data_dir).read_bytes() == b""
    with pytest.raises(RuntimeError, match="closed"), store.transaction():
        pass
    assert stores.open(data_dir, prefix="b-").get("User", "id-1")["userName"] == "ann"


def test_compaction_hooks_run_once_events_are_delivered_and_before_the_journal_goes(
    stores: Stores, data_dir: Path
) -> None:
    store = stores.open(data_dir)
    delivered: list[dict] = []
    store.add_commit_listener(delivered.extend)
    seen_by_hook: list[tuple[list[int], list[int]]] = []
    store.add_compaction_hook(
        lambda: seen_by_hook.append(
            ([event["seq"] for event in delivered], list(list_segments(data_dir)))
        )
    )
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.note({"operation": "create"})

    store.compact()

    assert seen_by_hook == [([1], [1, 2])]
    assert list(list_segments(data_dir)) == [2]


def test_a_failing_compaction_hook_keeps_the_journal(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = stores.open(data_dir)
    insert(store, "User", user("ann"))

    def audit_log_unavailable() -> None:
        raise OSError(errno.EIO, "audit log unavailable")

    store.add_compaction_hook(audit_log_unavailable)
    with pytest.raises(OSError, match="audit log"):
        store.compact()

    assert list(list_segments(data_dir)) == [1, 2]
    assert data_file(data_dir)["users"] == {}
    insert(store, "User", user("bob"))
    reopened = stores.open(crash_copy(data_dir, tmp_path / "crash"), prefix="c-")
    assert [u["userName"] for u in reopened.all("User")] == ["ann", "bob"]


# -- events ---------------------------------------------------------------------------------


def test_listeners_get_each_commits_events_in_commit_order_numbered_by_seq(
    stores: Stores, data_dir: Path
) -> None:
    store = stores.open(data_dir)
    batches: list[list[dict]] = []
    store.add_commit_listener(batches.append)
    start = threading.Barrier(8)

    def work(thread: int) -> None:
        start.wait()
        for number in range(10):
            with store.transaction() as tx:
                tx.insert("User", user(f"t{thread}-{number}"))
                tx.note({"thread": thread, "number": number, "part": 1})
                tx.note({"thread": thread, "number": number, "part": 2})

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    events = [event for batch in batches for event in batch]
    assert [event["seq"] for event in events] == list(range(1, 161))
    assert all(len({(e["thread"], e["number"]) for e in batch}) == 1 for batch in batches)
    for thread in range(8):
        numbers = [e["number"] for e in events if e["thread"] == thread and e["part"] == 1]
        assert numbers == list(range(10))
    # Commit order is journal order: the users were created in the events' order.
    created = [u["userName"] for u in store.all("User")]
    assert created == [f"t{e['thread']}-{e['number']}" for e in events if e["part"] == 1]


def test_events_are_kept_in_the_journal_and_seq_goes_on_after_a_restart(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    store = stores.open(data_dir)
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.note({"operation": "create", "name": "ann"})
        tx.note({"operation": "enable", "name": "ann"})
    with store.transaction() as tx:
        tx.note({"operation": "refused"})  # an event alone is committed too

    crashed = stores.open(crash_copy(data_dir, tmp_path / "crash"), prefix="c-")
    assert [e["seq"] for e in crashed.recent_events()] == [1, 2, 3]
    assert crashed.recent_events(after_seq=2) == [{"operation": "refused", "seq": 3}]
    seen: list[dict] = []
    crashed.add_commit_listener(seen.extend)
    with crashed.transaction() as tx:
        tx.note({"operation": "delete"})
    assert seen == [{"operation": "delete", "seq": 4}]

    crashed.close()
    restarted = stores.open(tmp_path / "crash", prefix="r-")
    assert restarted.recent_events() == []  # compacted away by the close
    restarted.add_commit_listener(seen.extend)
    with restarted.transaction() as tx:
        tx.note({"operation": "create"})
    assert seen[-1]["seq"] == 5


def test_a_listener_that_writes_to_the_store_is_refused(stores: Stores, data_dir: Path) -> None:
    store = stores.open(data_dir)
    refusals: list[str] = []

    def writes_back(events: list[dict]) -> None:
        try:
            with store.transaction():
                pass
        except RuntimeError as refused:
            refusals.append(str(refused))

    store.add_commit_listener(writes_back)
    with store.transaction() as tx:
        tx.note({"operation": "create"})

    assert refusals == [
        "commit listeners must not write to the repository: later commits wait for them"
    ]


# -- many writers ---------------------------------------------------------------------------


def test_concurrent_commits_share_fsyncs(
    stores: Stores, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores.open(data_dir)
    fsyncs = 0
    real_sync = os.fdatasync

    def slow_sync(descriptor: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        time.sleep(0.002)  # a slow disk, so that commits pile up behind each fsync
        real_sync(descriptor)

    monkeypatch.setattr(journal_file.os, "fdatasync", slow_sync)
    start = threading.Barrier(16)

    def work(thread: int) -> None:
        start.wait()
        for number in range(10):
            insert(store, "User", user(f"t{thread}-{number}"))

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert store.count("User") == 160
    assert 0 < fsyncs < 100


def test_sixteen_threads_writing_at_once_lose_nothing(
    stores: Stores, data_dir: Path, tmp_path: Path
) -> None:
    """Creates, renames, counter updates and membership moves, with compactions meanwhile."""
    store = stores.open(data_dir, compact_min_bytes=20_000, compact_ratio=0.0)
    with store.transaction() as tx:
        tx.insert("User", user("counter", nickName="0"))  # id-1
        for name in ("g0", "g1", "g2", "g3"):
            tx.insert("Group", group(name))  # id-2 .. id-5
    threads, rounds = 16, 12
    start = threading.Barrier(threads)
    conflicts: list[str] = []

    def work(thread: int) -> None:
        start.wait()
        previous_group = None
        for number in range(rounds):
            with store.transaction() as tx:
                mine = tx.insert("User", user(f"t{thread}-{number}"))
            try:
                name = f"shared-{number % 4}"
                insert(store, "User", user(name.upper() if thread % 2 else name))
            except Conflict:
                conflicts.append(name)
            with store.transaction() as tx:  # read-modify-write: no update may be lost
                counter = tx.get("User", "id-1")
                counter["nickName"] = str(int(counter["nickName"]) + 1)
                tx.replace("User", "id-1", counter)
            with store.transaction() as tx:
                tx.replace("User", mine["id"], user(f"T{thread}-{number}-renamed"))
                target = f"id-{2 + (thread + number) % 4}"
                tx.add_members(target, [mine["id"]])
                if previous_group is not None:
                    tx.remove_members(previous_group[0], [previous_group[1]])
                previous_group = (target, mine["id"])

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    users = list(store.all("User"))
    names = [u["userName"].casefold() for u in users]
    assert len(names) == len(set(names)) == 1 + threads * rounds + 4
    assert len(conflicts) == threads * rounds - 4
    assert store.get("User", "id-1")["nickName"] == str(threads * rounds)
    memberships = [
        (g["id"], member) for g in store.all("Group") for member in store.members(g["id"])
    ]
    assert len(memberships) == threads  # each thread's last user is in exactly one group
    for group_id, member in memberships:
        assert store.groups_of(member) == [group_id]
    assert sum(len(store.groups_of(u["id"])) for u in users) == threads
    assert max(list_segments(data_dir)) > 2  # compactions ran meanwhile
    copy = crash_copy(data_dir, tmp_path / "crash", store)
    assert contents(stores.open(copy, "c-")) == contents(store)
    store.close()
    assert contents(stores.open(data_dir, "r-")) == contents(store)


def test_a_compaction_forgets_the_events_it_wrote_and_keeps_later_ones(
    stores: Stores, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are dropped in steps (several here) and only those the data file holds."""
    monkeypatch.setattr(pacing, "RELEASE_STEP", 3)
    store = stores.open(data_dir)
    for number in range(10):
        with store.transaction() as tx:
            tx.note({"operation": "refused", "number": number})
    store.compact()
    assert store.recent_events() == []
    with store.transaction() as tx:
        tx.note({"operation": "refused", "number": 10})
    assert [e["number"] for e in store.recent_events()] == [10]
    store.close()


def _file_holds(store: Repository, data_dir: Path) -> None:
    """The data file holds exactly the store's documents and memberships, in its order."""
    written = read_snapshot(data_dir / DATA_FILE)
    assert written is not None
    for kind in ("User", "Group"):
        assert list(written.documents[kind].values()) == list(store.all(kind))
    expected = {g["id"]: store.members(g["id"]) for g in store.all("Group")}
    assert {g: list(ids) for g, ids in written.members.items()} == {
        g: ids for g, ids in expected.items() if ids
    }


@pytest.mark.parametrize("seed", range(4))
def test_every_compaction_writes_exactly_what_the_store_holds(
    stores: Stores, data_dir: Path, tmp_path: Path, seed: int
) -> None:
    """Random writes (creates, replaces, deletes, member changes, groups emptied and
    deleted) with compactions at random points: a compaction re-encodes only what was
    written since the last one, so each file is checked against the whole store, and the
    store reopened from the last one (and from a crash copy) holds the same."""
    rng = random.Random(seed)
    store = stores.open(data_dir)
    users: list[str] = []
    groups: list[str] = []
    for step in range(500):
        roll = rng.random()
        with store.transaction() as tx:
            if roll < 0.25 or len(users) < 3:
                users.append(tx.insert("User", user(f"u{step}"))["id"])
            elif roll < 0.4:
                id = rng.choice(users)
                tx.replace("User", id, tx.get("User", id) | {"title": f"t{step}"})
            elif roll < 0.47:
                tx.delete("User", users.pop(rng.randrange(len(users))))
            elif roll < 0.55 or not groups:
                groups.append(tx.insert("Group", group(f"g{step}"))["id"])
            elif roll < 0.58:
                tx.delete("Group", groups.pop(rng.randrange(len(groups))))
            elif roll < 0.82:
                tx.add_members(rng.choice(groups), rng.sample(users, rng.randint(1, 3)))
            elif roll < 0.95:
                target = rng.choice(groups)
                members = tx.members(target)
                if members:
                    tx.remove_members(target, [rng.choice(members)])
            else:
                tx.clear_members(rng.choice(groups))
        if rng.random() < 0.06:
            store.compact()
            _file_holds(store, data_dir)
    store.compact()
    _file_holds(store, data_dir)
    expected = _unordered_groups_of(contents(store))
    crash_copy(data_dir, tmp_path / "crash", store)
    store.close()
    assert _unordered_groups_of(contents(stores.open(data_dir, prefix="r-"))) == expected
    assert _unordered_groups_of(contents(stores.open(tmp_path / "crash", prefix="c-"))) == expected


def _unordered_groups_of(seen: dict) -> dict:
    """A user's groups are rebuilt from the memberships on start, in their order, not in
    the order the user joined them (a user's ``groups`` is an unordered set, RFC 7643)."""
    return seen | {"groups_of": {user: sorted(ids) for user, ids in seen["groups_of"].items()}}


def test_each_compaction_is_logged_with_its_cost(
    stores: Stores, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator sees how long each compaction took and how much it had to encode."""
    store = stores.open(data_dir)
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.insert("User", user("bob"))
    with caplog.at_level("INFO", logger="proware.storage"):
        store.compact()  # the first one encodes everything
        with store.transaction() as tx:
            tx.insert("User", user("cy"))
        store.compact()
    lines = [r.getMessage() for r in caplog.records if r.name == "proware.storage"]
    assert len(lines) == 2
    assert re.search(
        r"compacted through record 1 in \d+ ms \(\d+ ms of CPU\): 2 records written anew, "
        r"2 of them encoded$",
        lines[0],
    )
    # The new user's bytes come from its journal record: nothing to encode.
    assert re.search(r"record 2 in .*: 1 record written anew, 0 of them encoded$", lines[1])
