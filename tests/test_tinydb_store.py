"""TinyDBRepository's durability: what is on disk after each commit, and what it refuses."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tinydb import TinyDB

from storage import tinydb_store
from storage.errors import Conflict, CorruptStore
from storage.tinydb_store import AtomicJSONStorage, TinyDBRepository
from tests.storage_contract import INDEXES, CounterIds, FixedClock, group, user

Opener = Callable[..., TinyDBRepository]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "proware.json"


@pytest.fixture
def open_store(path: Path) -> Iterator[Opener]:
    """Opens stores on ``path`` (each with its own id prefix); closes them all afterwards."""
    opened: list[TinyDBRepository] = []

    def open_(prefix: str = "id-") -> TinyDBRepository:
        store = TinyDBRepository(path, INDEXES, FixedClock(), CounterIds(prefix))
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def on_disk(path: Path) -> dict:
    return json.loads(path.read_text())


def test_a_missing_file_is_created_as_format_1(path: Path, open_store: Opener) -> None:
    open_store()

    assert on_disk(path) == {"_meta": {"1": {"format": 1}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_every_committed_transaction_is_in_the_file(path: Path, open_store: Opener) -> None:
    """After each commit a freshly opened store sees exactly the change."""
    store = open_store()

    with store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.insert("User", user("bob"))
        tx.insert("Group", group("Sales"))
    assert [u["userName"] for u in open_store("a-").all("User")] == ["ann", "bob"]

    with store.transaction() as tx:
        tx.replace("User", "id-1", user("annie"))
        tx.add_members("id-3", ["id-2", "id-1"])
    reopened = open_store("b-")
    assert reopened.get("User", "id-1") == store.get("User", "id-1")
    assert reopened.get("Group", "id-3") == store.get("Group", "id-3")
    assert reopened.members("id-3") == ["id-2", "id-1"]
    assert reopened.groups_of("id-1") == ["id-3"]
    assert reopened.find("User", "userName", "ANNIE") == ["id-1"]

    with store.transaction() as tx:
        tx.delete("User", "id-2")
    reopened = open_store("c-")
    assert reopened.count("User") == 1
    assert reopened.members("id-3") == ["id-1"]


def test_a_reopened_store_enforces_uniqueness_and_keeps_writing(open_store: Opener) -> None:
    with open_store().transaction() as tx:
        tx.insert("User", user("ann"))

    reopened = open_store("b-")
    with pytest.raises(Conflict), reopened.transaction() as tx:
        tx.insert("User", user("ANN"))
    with reopened.transaction() as tx:
        tx.insert("User", user("bob"))

    assert [u["id"] for u in open_store("c-").all("User")] == ["id-1", "b-2"]


def test_the_file_is_a_tinydb_document_with_string_ids_and_private_members(
    path: Path, open_store: Opener
) -> None:
    store = open_store()
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.insert("Group", group("Sales"))
        tx.add_members("id-2", ["id-1"])

    data = on_disk(path)
    assert data["users"]["1"]["id"] == "id-1"
    assert data["groups"]["1"]["_members"] == ["id-1"]
    assert "_members" not in store.get("Group", "id-2")


def test_plain_tinydb_reads_the_users_table(path: Path, open_store: Opener) -> None:
    with open_store().transaction() as tx:
        tx.insert("User", user("ann", displayName="Ann Ørsted"))

    with TinyDB(path, access_mode="r") as plain:
        users = plain.table("users").all()

    assert [(u["id"], u["userName"], u["displayName"]) for u in users] == [
        ("id-1", "ann", "Ann Ørsted")
    ]


def test_a_newer_format_is_refused_and_the_file_left_unchanged(path: Path) -> None:
    path.write_text('{"_meta": {"1": {"format": 7}}, "users": {}}')
    before = path.read_bytes()

    with pytest.raises(CorruptStore) as raised:
        TinyDBRepository(path, INDEXES)

    assert str(raised.value) == (
        f"{path}: format 7 is newer than this version of Proware supports (1); "
        "upgrade Proware to open it"
    )
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "position"),
    [
        ('{"_meta": {"1": {"format": 1}},\n "users": {"1": {"id": "a",}}}', "line 2 column 28"),
        ('{"_meta": {"1": {"format": 1}}, "users": {"1"', "line 1 column 46"),
        ("\x00\x00\x00\x00", "line 1 column 1"),
    ],
    ids=["trailing-comma", "truncated", "zeroed"],
)
def test_undecodable_json_is_refused_naming_file_and_position(
    path: Path, content: str, position: str
) -> None:
    path.write_text(content)

    with pytest.raises(CorruptStore) as raised:
        TinyDBRepository(path, INDEXES)

    assert str(path) in str(raised.value)
    assert position in str(raised.value)
    assert path.read_text() == content


@pytest.mark.parametrize(
    "content",
    ["", "[]", "{}", '{"users": {}}', '{"_meta": {"1": {"format": "1"}}}', '{"users": []}'],
    ids=["empty", "array", "no-tables", "no-meta", "format-not-int", "table-not-object"],
)
def test_a_file_that_is_not_a_proware_store_is_refused(path: Path, content: str) -> None:
    path.write_text(content)

    with pytest.raises(CorruptStore, match=str(path)):
        TinyDBRepository(path, INDEXES)

    assert path.read_text() == content


def test_a_document_without_a_string_id_is_refused(path: Path) -> None:
    path.write_text('{"_meta": {"1": {"format": 1}}, "users": {"1": {"userName": "ann"}}}')

    with pytest.raises(CorruptStore, match="users document 1 has no string id"):
        TinyDBRepository(path, INDEXES)


def test_default_ids_are_opaque_and_survive_a_reopen(path: Path) -> None:
    store = TinyDBRepository(path, INDEXES)
    with store.transaction() as tx:
        stored = tx.insert("User", user("ann"))
    store.close()

    assert re.fullmatch(r"[0-9a-f]{32}", stored["id"])
    reopened = TinyDBRepository(path, INDEXES)
    assert reopened.get("User", stored["id"]) == stored
    reopened.close()


def test_a_kind_without_a_table_is_refused_and_nothing_written(
    path: Path, open_store: Opener
) -> None:
    store = open_store()
    before = path.read_bytes()

    with pytest.raises(ValueError, match="only User, Group"), store.transaction() as tx:
        tx.insert("User", user("ann"))
        tx.insert("Device", {"name": "printer"})

    assert path.read_bytes() == before
    assert store.count("User") == 0


def test_stray_temp_files_from_an_interrupted_write_are_removed_on_open(
    path: Path, open_store: Opener
) -> None:
    open_store().close()
    stray = path.with_name(f".{path.name}.k3j2h1.tmp")
    stray.write_text('{"half": ')
    unrelated = path.with_name("notes.tmp")
    unrelated.write_text("keep")

    open_store()

    assert not stray.exists()
    assert unrelated.exists()


def test_a_rolled_back_transaction_writes_nothing(path: Path, open_store: Opener) -> None:
    store = open_store()
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
    before = (path.read_bytes(), path.stat().st_ino)

    with pytest.raises(LookupError, match="abandon"), store.transaction() as tx:
        tx.insert("User", user("bob"))
        raise LookupError("abandon")

    assert (path.read_bytes(), path.stat().st_ino) == before
    assert open_store("b-").count("User") == 1


def test_a_failed_file_write_leaves_store_and_file_as_before(
    path: Path, open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store()
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
    before = path.read_bytes()

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(tinydb_store, "write_atomically", disk_full)
        with pytest.raises(OSError), store.transaction() as tx:
            tx.insert("User", user("bob"))
            tx.replace("User", "id-1", user("annie"))

    assert path.read_bytes() == before
    assert [u["userName"] for u in store.all("User")] == ["ann"]
    assert store.find("User", "userName", "bob") == []
    with store.transaction() as tx:  # and the store still works afterwards
        tx.insert("User", user("cid"))
    assert [u["userName"] for u in open_store("b-").all("User")] == ["ann", "cid"]


def test_reads_are_answered_from_memory(path: Path, open_store: Opener) -> None:
    store = open_store()
    with store.transaction() as tx:
        tx.insert("User", user("ann"))
    path.write_text("garbage that a read from disk would choke on")

    assert store.get("User", "id-1")["userName"] == "ann"
    assert store.find("User", "userName", "ann") == ["id-1"]


def test_concurrent_writers_leave_a_file_with_every_user_once(
    path: Path, open_store: Opener
) -> None:
    store = open_store()
    start = threading.Barrier(8)

    def work(number: int) -> None:
        start.wait()
        for i in range(10):
            for name in (f"t{number}-{i}", f"shared-{i}"):
                try:
                    with store.transaction() as tx:
                        tx.insert("User", user(name))
                except Conflict:
                    pass

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    names = [u["userName"] for u in on_disk(path)["users"].values()]
    assert len(names) == len(set(names)) == 8 * 10 + 10
    assert open_store("b-").count("User") == 90
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_storage_works_as_a_plain_tinydb_storage(path: Path) -> None:
    with TinyDB(path, storage=AtomicJSONStorage) as db:
        db.table("notes").insert({"text": "hello"})

    assert on_disk(path) == {"notes": {"1": {"text": "hello"}}}
    assert os.listdir(path.parent) == [path.name]
