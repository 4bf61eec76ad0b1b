"""The data file written in pieces (to hold the GIL briefly) is the bytes of one encoding call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinydb import TinyDB

from storage.journal import snapshot
from storage.journal.format import encode_json
from storage.journal.snapshot import (
    FORMAT,
    Snapshot,
    SnapshotEncoder,
    meta_record,
    read_snapshot,
    snapshot_chunks,
    write_snapshot,
)
from storage.state import joined_order
from tests.storage_contract import group, user

PIECE = snapshot._IDS_PER_PIECE
LARGE = 5_000


def _user_id(number: int) -> str:
    return f"u-{number:05d}"


def _state(large_group_at: int) -> Snapshot:
    """5,000 users (300 with non-ASCII names), a 5,000-member group among 40 small ones."""
    users = {}
    for number in range(LARGE):
        id = _user_id(number)
        name = f"Zoë Ångström-李{number}" if number < 300 else f"user{number}"
        users[id] = user(name, id=id, displayName=name, name={"familyName": "Ñúñez 😀"})
    group_ids = [f"g-{number:03d}" for number in range(40)]
    group_ids.insert(large_group_at, "g-large")
    members: dict[str, dict[str, None]] = {}
    for index, id in enumerate(group_ids):
        first = index * 3
        members[id] = dict.fromkeys(_user_id(n) for n in range(first, first + 1 + index % 4))
    members["g-large"] = dict.fromkeys(_user_id(n) for n in reversed(range(LARGE)))
    members["g-exactly-one-piece"] = dict.fromkeys(_user_id(n) for n in range(PIECE))
    members["g-one-past-a-piece"] = dict.fromkeys(_user_id(n) for n in range(PIECE + 1))
    members["g-empty"] = {}
    groups = {id: group(f"Grüppe {id}", id=id) for id in members}
    return Snapshot(FORMAT, 3, 70, 9, {"User": users, "Group": groups}, members)


def _one_dumps(state: Snapshot, meta: dict) -> bytes:
    """The file as one json.dumps call with the same options (compact, ASCII) writes it."""

    def table(records: list[dict]) -> dict[str, dict]:
        return {str(number): record for number, record in enumerate(records, 1)}

    whole = {
        "_meta": {"1": meta},
        "users": table(list(state.documents["User"].values())),
        "groups": table(list(state.documents["Group"].values())),
        "memberships": table(
            [{"group": g, "members": list(ids)} for g, ids in state.members.items() if ids]
        ),
        "joined": table(
            [
                {"user": user, "groups": groups}
                for user, groups in joined_order(state.members, state.groups).items()
                if len(groups) > 1
            ]
        ),
    }
    return json.dumps(whole, separators=(",", ":")).encode("ascii") + b"\n"


POSITIONS = [
    pytest.param(0, id="large-group-first"),
    pytest.param(17, id="large-group-between-small-ones"),
    pytest.param(40, id="large-group-after-the-small-ones"),
]


@pytest.mark.parametrize("large_group_at", POSITIONS)
def test_chunked_snapshot_is_byte_identical_to_one_json_dumps(large_group_at: int) -> None:
    state = _state(large_group_at)
    meta = meta_record(3, 70, 9)

    written = b"".join(snapshot_chunks(state, meta))

    assert written == _one_dumps(state, meta)
    assert written.isascii()


def test_no_encoding_call_takes_more_than_a_piece_of_member_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each call holds the GIL: none may encode a whole 5,000-member list at once."""
    calls: list[bytes] = []
    real = snapshot.encode_json

    def counting(value: object) -> bytes:
        calls.append(real(value))
        return calls[-1]

    monkeypatch.setattr(snapshot, "encode_json", counting)
    written = b"".join(snapshot_chunks(_state(17), meta_record(3, 70, 9)))

    # Every user id is written as "u-NNNNN": in its document and in member lists.
    assert max(call.count(b'"u-') for call in calls) == PIECE
    assert written == _one_dumps(_state(17), meta_record(3, 70, 9))


def test_an_encoder_encodes_again_only_the_records_it_is_told_changed() -> None:
    """The second file encodes the changed keys (a replaced user, a new group, a changed and
    an emptied member list) and keeps every other record's bytes and TinyDB id; a deleted
    user leaves a gap in the ids. The result reads back as the changed state."""
    state = _state(17)
    meta = meta_record(3, 70, 9)
    encoder = SnapshotEncoder()
    first = b"".join(encoder.chunks(state, meta, changed=None))
    assert first == _one_dumps(state, meta)
    joined = sum(1 for ids in joined_order(state.members).values() if len(ids) > 1)
    records = (
        LARGE
        + len(state.documents["Group"])
        + sum(1 for ids in state.members.values() if ids)
        + joined  # users in several groups: the order they joined them
    )
    assert encoder.encoded_records == records

    assert b"".join(encoder.chunks(state, meta, changed={})) == first
    assert encoder.encoded_records == 0

    users, groups = state.documents["User"], state.documents["Group"]
    users[_user_id(7)] = users[_user_id(7)] | {"displayName": "Renamed"}
    del users[_user_id(8)]
    state.members["g-003"] = {**state.members["g-003"], _user_id(4000): None}
    state.members["g-001"] = {}
    groups["g-new"] = group("New", id="g-new")
    changed = {
        ("User", _user_id(7)): encode_json(users[_user_id(7)]),  # as its journal record has it
        ("User", _user_id(8)): None,
        (snapshot.MEMBERSHIPS, "g-003"): None,
        (snapshot.MEMBERSHIPS, "g-001"): None,
        ("Group", "g-new"): None,
    }
    written = b"".join(encoder.chunks(state, meta, changed))

    assert encoder.rewritten_records == 3  # the renamed user, g-003's members, the new group
    assert encoder.encoded_records == 2  # the user's bytes came with it
    whole = json.loads(written)
    assert list(whole["users"])[7:9] == ["8", "10"]  # user 8 (id 9) is gone, ids stay
    assert whole["users"]["8"]["displayName"] == "Renamed"
    assert list(whole["groups"])[-1] == str(len(groups))  # the new group: the next id
    read = snapshot.Snapshot(FORMAT)
    read.documents = {
        kind: {doc["id"]: doc for doc in whole[name].values()}
        for kind, name in snapshot.TABLES.items()
    }
    assert read.documents == {"User": users, "Group": groups}
    by_group = {r["group"]: r["members"] for r in whole["memberships"].values()}
    assert by_group == {g: list(ids) for g, ids in state.members.items() if ids}


def test_records_copied_from_the_journal_are_copied_in_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between two compactions the journal hands over thousands of documents' bytes; copying
    them all in one go held the GIL for 10-20 ms at 50,000 users, so the copy pauses too."""
    state = _state(17)
    meta = meta_record(3, 70, 9)
    encoder = SnapshotEncoder()
    b"".join(encoder.chunks(state, meta, changed=None))
    steps: list[str] = []
    real_store = SnapshotEncoder._store

    def store(self: SnapshotEncoder, *args: object) -> None:
        steps.append("copy")
        real_store(self, *args)

    monkeypatch.setattr(SnapshotEncoder, "_store", store)
    monkeypatch.setattr(snapshot.pacing, "pause", lambda: steps.append("pause"))
    users = state.documents["User"]
    changed: dict[tuple[str, str], bytes | None] = {}
    for number in range(0, LARGE, 2):
        users[_user_id(number)] = users[_user_id(number)] | {"title": "Changed"}
        changed[("User", _user_id(number))] = encode_json(users[_user_id(number)])

    written = b"".join(encoder.chunks(state, meta, changed))

    runs = "".join("c" if step == "copy" else " " for step in steps).split()
    assert sum(map(len, runs)) == len(changed)
    assert max(map(len, runs)) <= snapshot._COPIES
    assert written == _one_dumps(state, meta)


def test_an_interrupted_file_makes_the_next_one_encode_everything() -> None:
    """A write that failed half-way may have updated some records' bytes and not others:
    the encoder then starts afresh rather than trust them."""
    state = _state(0)
    meta = meta_record(3, 70, 9)
    encoder = SnapshotEncoder()
    b"".join(encoder.chunks(state, meta))
    pieces = encoder.chunks(state, meta, changed={("User", _user_id(1)): None})
    next(pieces)
    pieces.close()  # the write failed after its first piece

    assert b"".join(encoder.chunks(state, meta, changed={})) == _one_dumps(state, meta)
    assert encoder.encoded_records > LARGE


def test_plain_tinydb_opens_the_written_file(tmp_path: Path) -> None:
    state = _state(17)
    path = tmp_path / snapshot.DATA_FILE
    write_snapshot(path, state, meta_record(3, 70, 9))

    with TinyDB(path) as db:
        assert db.table("_meta").all() == [meta_record(3, 70, 9)]
        assert len(db.table("users")) == LARGE
        assert db.table("users").get(doc_id=1)["displayName"] == "Zoë Ångström-李0"
        by_group = {record["group"]: record["members"] for record in db.table("memberships")}
    assert by_group == {g: list(ids) for g, ids in state.members.items() if ids}
    assert by_group["g-large"][:2] == [_user_id(LARGE - 1), _user_id(LARGE - 2)]


def test_written_file_reads_back_as_the_same_state(tmp_path: Path) -> None:
    state = _state(0)
    path = tmp_path / snapshot.DATA_FILE
    write_snapshot(path, state, state.meta())

    read = read_snapshot(path)

    assert read is not None
    assert read.documents == state.documents
    assert read.members == {g: ids for g, ids in state.members.items() if ids}
    assert list(read.members["g-large"]) == list(state.members["g-large"])
