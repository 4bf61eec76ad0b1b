"""storage/saving.py: bookkeeping saves on a thread of their own, one at a time."""

from __future__ import annotations

import logging
import threading

import pytest

from storage.saving import BackgroundSave


def test_a_request_returns_before_the_save_is_done() -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    def save() -> None:
        started.set()
        assert release.wait(10)
        done.set()

    saving = BackgroundSave(save, "test-save")
    saving.request()
    assert started.wait(10)
    assert not done.is_set()
    release.set()
    saving.wait()
    assert done.is_set()


def test_a_request_during_a_save_runs_it_once_more_after_and_never_two_at_once() -> None:
    release = threading.Event()
    runs: list[int] = []
    running = threading.Lock()

    def save() -> None:
        assert running.acquire(blocking=False), "two saves at once"
        try:
            runs.append(len(runs))
            if len(runs) == 1:
                assert release.wait(10)
        finally:
            running.release()

    saving = BackgroundSave(save, "test-save")
    saving.request()
    for _ in range(5):  # while the first run waits: one more run, not five
        saving.request()
    release.set()
    saving.wait()
    assert runs == [0, 1]


def test_a_failing_save_is_logged_and_the_next_request_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def save() -> None:
        calls.append("save")
        if len(calls) == 1:
            raise RuntimeError("disk gone")

    saving = BackgroundSave(save, "test-save")
    with caplog.at_level(logging.ERROR, logger="proware.storage"):
        saving.request()
        saving.wait()
    assert "test-save: the save failed" in caplog.text
    saving.request()
    saving.wait()
    assert calls == ["save", "save"]


def test_wait_without_a_save_returns_at_once() -> None:
    """And saves nothing: waiting (at shutdown, say) is not asking for a save."""
    calls: list[str] = []
    saving = BackgroundSave(lambda: calls.append("save"), "test-save")
    waiter = threading.Thread(target=saving.wait, daemon=True)

    waiter.start()
    waiter.join(10)  # a hang fails the test rather than stalling the run

    assert not waiter.is_alive()
    assert calls == []
