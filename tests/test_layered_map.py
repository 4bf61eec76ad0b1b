"""LayeredMap and MemberList, the copy-on-write structures under every store's state: they
behave like a dict and like an ordered set, and a change never alters an earlier version."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.state import LayeredMap, MemberList

KEYS = st.sampled_from([f"k{number}" for number in range(12)])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers()),
        st.tuples(st.just("delete"), KEYS, st.none()),
        st.tuples(st.just("copy"), st.none(), st.none()),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(base_size=st.integers(0, 12), operations=OPERATIONS)
def test_a_layered_map_and_its_copies_behave_like_dicts(
    base_size: int, operations: list[tuple]
) -> None:
    """Random writes and copies (which fold the delta in now and then) against plain dicts.

    The order matches too, unless a deleted key came back (document ids never do).
    """
    base = {f"k{number}": number for number in range(base_size)}
    layered, expected = LayeredMap(dict(base)), dict(base)
    frozen: list[tuple[LayeredMap, dict, bool]] = []
    deleted: set[str] = set()
    ordered = True
    for operation, key, value in operations:
        if operation == "set":
            ordered = ordered and key not in deleted
            layered[key] = value
            expected[key] = value
        elif operation == "delete" and key in expected:
            del layered[key]
            del expected[key]
            deleted.add(key)
        elif operation == "copy":
            frozen.append((layered, dict(expected), ordered))
            layered = layered.copy()
        assert len(layered) == len(expected)
    for current, reference, in_order in [*frozen, (layered, expected, ordered)]:
        assert current.to_dict() == reference
        if in_order:
            assert list(current.items()) == list(reference.items())
        assert sorted(current) == sorted(reference)
        for key in (f"k{number}" for number in range(12)):
            assert (key in current) == (key in reference)
            assert current.get(key, "none") == reference.get(key, "none")


def test_a_missing_key_raises_key_error() -> None:
    layered = LayeredMap({"a": 1})

    with pytest.raises(KeyError):
        layered["b"]
    with pytest.raises(KeyError):
        del layered["b"]
    assert layered.pop("b", "default") == "default"


def test_copies_share_the_base_until_the_delta_outgrows_it() -> None:
    base = {f"k{number}": number for number in range(6400)}
    layered = LayeredMap(base)
    layered["new"] = 1

    assert layered.copy()._base is base  # a copy costs its small delta only
    for number in range(200):  # past 32 + 6400 // 64 changes
        layered[f"more{number}"] = number
    folded = layered.copy()
    assert folded._base is not base and folded._delta == {}
    assert base.get("new") is None  # the frozen base was never written


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
