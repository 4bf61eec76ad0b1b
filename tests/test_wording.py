"""Counts agree with their nouns in what Proware prints (storage.wording)."""

from __future__ import annotations

import pytest

from storage.wording import counted


@pytest.mark.parametrize(
    ("number", "noun", "plural", "expected"),
    [
        (0, "group", None, "0 groups"),
        (1, "group", None, "1 group"),
        (2, "group", None, "2 groups"),
        (1, "activity event", None, "1 activity event"),
        (50000, "user", None, "50,000 users"),
        (1, "process", "processes", "1 process"),
        (3, "process", "processes", "3 processes"),
    ],
    ids=["zero", "one", "two", "phrase", "thousands", "irregular-one", "irregular-many"],
)
def test_counted_puts_the_noun_in_the_number_it_takes(
    number: int, noun: str, plural: str | None, expected: str
) -> None:
    assert counted(number, noun, plural) == expected
