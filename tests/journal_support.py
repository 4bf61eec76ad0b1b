"""What the journal store's tests share: opening stores, and looking at their files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from storage.journal import JournalRepository
from storage.journal.format import list_segments
from storage.journal.lock import LOCK_FILE
from storage.repository import Repository
from tests.storage_contract import INDEXES, CounterIds, FixedClock


class Stores:
    """Opens journal stores with a fixed clock and counter ids; closes them all at the end."""

    def __init__(self) -> None:
        self.opened: list[JournalRepository] = []

    def open(self, data_dir: Path, prefix: str = "id-", **options: Any) -> JournalRepository:
        store = JournalRepository(data_dir, INDEXES, FixedClock(), CounterIds(prefix), **options)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def crash_copy(data_dir: Path, target: Path, store: JournalRepository | None = None) -> Path:
    """The directory as ``kill -9`` would leave it now: the files as written, no lock held.

    :param store: the store writing to ``data_dir``, if a compaction may be running: the
        copy waits for it, since copying file by file is not one instant as a crash is.
    """
    if store is None:
        shutil.copytree(data_dir, target)
    else:
        with store._compacting:
            shutil.copytree(data_dir, target)
    return target


def files(directory: Path) -> dict[str, bytes]:
    """Every file's bytes by name (the lock file aside: it only names the holder)."""
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != LOCK_FILE
    }


def newest_segment(data_dir: Path) -> Path:
    """The journal segment being appended to."""
    return list(list_segments(data_dir).values())[-1]


def record_starts(segment: Path) -> list[int]:
    """Byte offsets where the segment's records begin."""
    data = segment.read_bytes()
    starts, offset = [], 0
    while offset < len(data):
        starts.append(offset)
        offset = data.index(b"\n", offset) + 1
    return starts


def contents(store: Repository) -> dict:
    """Everything a reader can see in ``store``, for comparing two stores."""
    users, groups = list(store.all("User")), list(store.all("Group"))
    return {
        "users": users,
        "groups": groups,
        "members": {group["id"]: store.members(group["id"]) for group in groups},
        "groups_of": {user["id"]: store.groups_of(user["id"]) for user in users},
        "by_name": {
            user["userName"]: store.find("User", "userName", user["userName"].upper())
            for user in users
        },
    }
