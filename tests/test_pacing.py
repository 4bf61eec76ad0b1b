"""storage.journal.pacing: background work in steps, pausing (really sleeping) between them."""

from __future__ import annotations

import pytest

from storage.journal import pacing


def test_pause_really_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """time.sleep(0) would take the GIL straight back; a waiting thread needs a real sleep."""
    slept: list[float] = []
    monkeypatch.setattr(pacing.time, "sleep", slept.append)

    pacing.pause()

    assert slept and slept[0] > 0
