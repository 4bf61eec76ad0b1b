"""storage.jsontext writes the text the standard library writes, whichever encoder runs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.jsontext import ascii_json, utf8_json

# JSON values as documents hold them: no floats, whose digits the two encoders may spell
# differently (1e+16 and 1e16), which the round-trip test below covers.
SCALARS = st.none() | st.booleans() | st.integers() | st.text()
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=25
)


def _standard_ascii(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _standard_utf8(value: object, default=None) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)
    return text.encode("utf-8")


@given(VALUES)
def test_ascii_json_is_the_standard_librarys_text(value: object) -> None:
    assert ascii_json(value) == _standard_ascii(value)


@given(VALUES)
def test_utf8_json_is_the_standard_librarys_text(value: object) -> None:
    assert utf8_json(value) == _standard_utf8(value)


@given(st.recursive(SCALARS | st.floats(allow_nan=False, allow_infinity=False), st.lists))
def test_floats_read_back_as_written(value: object) -> None:
    assert json.loads(ascii_json(value)) == value
    assert json.loads(utf8_json(value)) == value


def test_non_ascii_text_is_escaped_only_in_ascii_json() -> None:
    document = {"name": {"givenName": "José"}, "title": "Ingénieur ✓"}
    assert (
        ascii_json(document)
        == b'{"name":{"givenName":"Jos\\u00e9"},"title":"Ing\\u00e9nieur \\u2713"}'
    )
    assert utf8_json(document) == '{"name":{"givenName":"José"},"title":"Ingénieur ✓"}'.encode()


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    for value in ({"big": 2**70}, {1: "a key that is not a string"}, ["\ud800"]):
        assert ascii_json(value) == _standard_ascii(value)
    for value in ({"big": -(2**64)}, {1: "a"}):
        assert utf8_json(value) == _standard_utf8(value)


def test_default_sees_dates_as_the_standard_library_hands_them() -> None:
    event = {"at": datetime(2026, 12, 7, 10, 0, tzinfo=UTC), "n": 1}
    assert utf8_json(event, default=str) == _standard_utf8(event, default=str)
    assert b'"at":"2026-12-07 10:00:00+00:00"' in utf8_json(event, default=str)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux's /proc")
def test_kept_encodings_cost_their_length_not_orjsons_buffer() -> None:
    """The journal keeps each written document's bytes until the next compaction; orjson's
    own bytes hold ~4 KB each, which at 50,000 users was 210 MB instead of 32."""
    documents = [
        {"id": f"{number:032x}", "userName": f"user{number}@example.com", "title": "x" * 400}
        for number in range(5_000)
    ]
    before = _resident_bytes()
    kept = [ascii_json(document) for document in documents]
    grown = _resident_bytes() - before
    length = sum(map(len, kept))
    assert grown < 2 * length + (1 << 20), (grown, length)


def test_dates_without_a_default_are_refused_as_the_standard_library_refuses_them() -> None:
    event = {"at": datetime(2026, 12, 7, 10, 0, tzinfo=UTC)}
    for encode in (ascii_json, utf8_json):
        with pytest.raises(TypeError, match="not JSON serializable"):
            encode(event)
