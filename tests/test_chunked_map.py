"""ChunkedMap and MemberList, the copy-on-write structures under every store's state: they
behave like a dict and like an ordered set, and a change never alters an earlier version."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.state import PAGE, SHARDS, ChunkedMap, MemberList

KEYS = st.sampled_from([f"k{number}" for number in range(12)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers()),
        st.tuples(st.just("delete"), KEYS, st.none()),
        st.tuples(st.just("copy"), st.none(), st.none()),
        st.tuples(st.just("write the original"), KEYS, st.integers()),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(base_size=st.integers(0, 12), chunk=st.integers(1, 4), operations=OPERATIONS)
def test_a_chunked_map_and_its_copies_behave_like_dicts(
    base_size: int, chunk: int, operations: list[tuple]
) -> None:
    """Random writes, deletes (which renumber the chunks now and then) and copies, against
    plain dicts, order included; an original written after its copy leaves the copy alone."""
    base = {f"k{number}": number for number in range(base_size)}
    chunked, expected = ChunkedMap(dict(base), chunk=chunk), dict(base)
    versions: list[tuple[ChunkedMap, dict]] = []
    for operation, key, value in operations:
        if operation == "set":
            chunked[key] = value
            expected[key] = value
        elif operation == "delete" and key in expected:
            del chunked[key]
            del expected[key]
        elif operation == "copy":
            versions.append((chunked, dict(expected)))
            chunked = chunked.copy()
        elif operation == "write the original" and versions:
            original, reference = versions[-1]
            original[key] = value
            reference[key] = value
        assert len(chunked) == len(expected)
    for current, reference in [*versions, (chunked, expected)]:
        assert current.to_dict() == reference
        assert list(current.items()) == list(reference.items())
        assert list(current) == list(reference) and list(current.values()) == list(
            reference.values()
        )
        assert len(current) == len(reference)
        for key in (f"k{number}" for number in range(12)):
            assert (key in current) == (key in reference)
            assert current.get(key, "none") == reference.get(key, "none")


MANY_KEYS = st.sampled_from([f"k{number}" for number in range(150)])


@settings(max_examples=100, deadline=None)
@given(
    writes=st.lists(st.tuples(st.booleans(), MANY_KEYS, st.integers()), max_size=600),
    copies=st.sets(st.integers(0, 600), max_size=20),
)
def test_chunks_of_one_entry_over_several_pages_behave_like_dicts(
    writes: list[tuple[bool, str, int]], copies: set[int]
) -> None:
    """One entry per chunk, so pages fill and deletes renumber: every version still reads
    like the dict it should be."""
    chunked, expected = ChunkedMap(chunk=1), {}
    versions: list[tuple[ChunkedMap, dict]] = []
    for step, (setting, key, value) in enumerate(writes):
        if step in copies:
            versions.append((chunked, dict(expected)))
            chunked = chunked.copy()
        if setting:
            chunked[key] = value
            expected[key] = value
        elif key in expected:
            del chunked[key]
            del expected[key]
    for current, reference in [*versions, (chunked, expected)]:
        assert list(current.items()) == list(reference.items()) and len(current) == len(reference)
        assert all(current.get(key) == value for key, value in reference.items())


def test_a_missing_key_raises_key_error() -> None:
    chunked = ChunkedMap({"a": 1})

    with pytest.raises(KeyError):
        chunked["b"]
    with pytest.raises(KeyError):
        del chunked["b"]
    assert chunked.pop("b", "default") == "default"
    assert chunked.pop("a") == 1 and len(chunked) == 0


def test_a_write_to_a_copy_copies_one_chunk_one_page_and_one_shard() -> None:
    """What makes a write O(1) in the map's size: a copy shares every piece, and a write
    copies only the chunk it changes and that chunk's page (and, for a new or removed key,
    one lookup shard); the list of pages is N / 4,096 long."""
    big = ChunkedMap({f"k{number}": number for number in range(50_000)})
    chunks, pages, shards = _chunks(big), list(big._pages), list(big._shards)

    replaced, added, removed = big.copy(), big.copy(), big.copy()
    replaced["k7"] = -7
    added["new"] = 1
    del removed["k49999"]

    assert big.copy()._pages is big._pages  # a copy copies nothing
    assert len(pages) == 13 and len(shards) == SHARDS
    for written in (replaced, added, removed):
        assert _changed(_chunks(written), chunks) == 1
        assert _changed(written._pages, pages) == 1
    assert _changed(replaced._shards, shards) == 0
    assert _changed(added._shards, shards) == 1 and _chunks(added)[-1]["new"] == 1
    assert _changed(removed._shards, shards) == 1
    assert big["k7"] == 7 and "new" not in big and big["k49999"] == 49_999
    assert list(big.items()) == [(f"k{number}", number) for number in range(50_000)]


def test_new_keys_fill_new_chunks_and_pages_in_order() -> None:
    """Past a full page, a new chunk starts a new page; a copy's additions leave the
    original's pages alone."""
    chunked = ChunkedMap(chunk=1)
    for number in range(PAGE + 3):
        chunked[f"k{number}"] = number
    before = chunked.copy()
    chunked["last"] = -1

    assert [len(page) for page in chunked._pages] == [PAGE, 4]
    assert [len(page) for page in before._pages] == [PAGE, 3]
    assert list(chunked)[-2:] == [f"k{PAGE + 2}", "last"] and "last" not in before


def _chunks(chunked: ChunkedMap) -> list[dict]:
    return [chunk for page in chunked._pages for chunk in page]


def _changed(pieces: list, before: list) -> int:
    return sum(1 for piece, old in zip(pieces, before, strict=False) if piece is not old)


USERS = st.sampled_from([f"u{number}" for number in range(40)])


@settings(max_examples=300, deadline=None)
@given(
    base_size=st.integers(0, 40),
    changes=st.lists(st.tuples(st.booleans(), st.lists(USERS, max_size=5)), max_size=120),
)
def test_a_member_list_and_its_earlier_versions_behave_like_ordered_sets(
    base_size: int, changes: list[tuple[bool, list[str]]]
) -> None:
    """Random adds (of non-members) and removes (of members), folding now and then, against
    an insertion-ordered dict: a re-added member goes to the end, as in a dict."""
    expected = dict.fromkeys(f"u{number}" for number in range(base_size))
    members = MemberList(expected)
    versions = [(members, list(expected))]
    for adding, candidates in changes:
        chosen = [user for user in dict.fromkeys(candidates) if (user in expected) != adding]
        members = members.added(chosen) if adding else members.removed(chosen)
        for user in chosen:
            if adding:
                expected[user] = None
            else:
                del expected[user]
        versions.append((members, list(expected)))
        assert len(members) == len(expected)
    for version, ids in versions:
        assert list(version) == ids and version.ids() == tuple(ids)
        assert len(version) == len(ids) and bool(version) == bool(ids)


def test_a_member_change_shares_the_list_it_changes() -> None:
    """One add or remove in a big group copies nothing: the change is a node over the old
    list's base, folded into a new base only after a quarter of the base's length."""
    big = MemberList(f"u{number}" for number in range(10_000))
    one_more = big.added(["new"])
    one_less = one_more.removed(["u5"])

    assert one_less._base is big._base
    assert list(big)[-1] == "u9999" and len(big) == 10_000  # the earlier version is intact
    assert list(one_less)[-1] == "new" and "u5" not in one_less.ids()
    changed, folded_after = one_less, []
    for number in range(2_600):
        changed = changed.removed([f"u{number + 10}"])
        if changed._change is None:
            folded_after.append(number + 3)  # the add and the remove above, and this one
    assert folded_after == [16 + 10_000 // 4 + 1]
    assert changed._base is not big._base
    assert len(changed) == len(changed.ids()) == 10_000 + 1 - 1 - 2_600
