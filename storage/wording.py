"""Counts in the sentences Proware prints: "1 group", "2 groups", "0 users".

Every layer prints counts (the command line, storage's errors, the control panel), and a
sentence that reads "1 groups" makes the number look wrong; one helper keeps them agreeing.
It lives at the bottom layer so that each of them may import it.
"""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun`` in the form the number takes: ``counted(1, "group")`` is
    "1 group", ``counted(3, "group")`` "3 groups"; ``plural`` where adding "s" is wrong
    ("process", "processes"). Thousands are grouped ("50,000 users") as elsewhere in the
    output."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"
