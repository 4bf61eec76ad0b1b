"""LayeredMap, the copy-on-write map under every store's state: it behaves like a dict."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.state import LayeredMap

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
