"""The slow-request log: what a slow request spent its time on (server/requestcost.py)."""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from server import requestcost
from server.config import LogSettings, Settings
from server.requestcost import LINE, Cost, Meter, watch_gc
from storage.journal import file as journal_file
from storage.repository import Repository
from storage.waits import commit_wait
from tests.conftest import PREFIX, ScimClient
from tests.storage_contract import IMPLEMENTATIONS, CounterIds, FixedClock, user


def burn(seconds: float) -> None:
    """Compute (not sleep) for ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


# -- the clocks ----------------------------------------------------------------------------


def test_a_cost_splits_the_wall_time_into_cpu_commit_and_other_waits() -> None:
    cost = Meter(10.0, 1.0, 0.5, 0.0).since(Meter(9.95, 0.99, 0.47, 0.0))

    assert cost.wall == pytest.approx(0.05)
    assert cost.other == pytest.approx(0.05 - 0.01 - 0.03)
    assert (cost.queued, cost.total) == (0.0, cost.wall)
    assert cost.fields() == "queued=0.0ms cpu=10.0ms commit=30.0ms gc=0.0ms other=10.0ms"


def test_the_wait_in_the_queue_is_part_of_the_total() -> None:
    start = Meter(9.95, 0.99, 0.47, 0.0, queued_at=9.93)

    cost = Meter(10.0, 1.0, 0.5, 0.0).since(start)

    assert cost.queued == pytest.approx(0.02)
    assert cost.total == pytest.approx(0.07)
    assert cost.fields().startswith("queued=20.0ms cpu=10.0ms")
    # A queue time after the start (another server's key, a clock step) is no wait.
    assert Meter.now().since(start._replace(queued_at=11.0)).queued == 0.0


def test_whether_a_request_was_slow_is_told_by_one_clock_from_its_arrival() -> None:
    now = time.perf_counter()
    started = Meter(now - 0.010, 0.0, 0.0, 0.0, queued_at=now - 0.5)

    assert started.elapsed() >= 0.5
    assert 0.010 <= started._replace(queued_at=None).elapsed() < 0.5


def test_other_waits_are_never_negative() -> None:
    # The CPU clock ticks more coarsely than the wall clock.
    assert Cost(wall=0.002, cpu=0.0015, commit=0.001, gc=0.0).other == 0.0


def test_the_cpu_clock_counts_computing_and_not_sleeping() -> None:
    start = Meter.now()
    burn(0.02)
    time.sleep(0.03)
    cost = Meter.now().since(start)

    assert cost.wall >= 0.05
    assert 0.02 <= cost.cpu < 0.04
    assert cost.other >= 0.025


def test_garbage_collections_count_on_the_thread_that_ran_them() -> None:
    watch_gc()
    watch_gc()  # idempotent
    assert gc.callbacks.count(gc.callbacks[-1]) == 1
    garbage = [[index] for index in range(200_000)]  # a pass has something to walk
    start = Meter.now()
    elsewhere = threading.Thread(target=gc.collect)
    elsewhere.start()
    elsewhere.join()
    between = Meter.now()
    gc.collect()
    cost = Meter.now().since(between)
    del garbage

    assert between.since(start).gc == 0.0
    assert 0.0 < cost.gc <= cost.wall


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_a_durable_commit_adds_its_wait_to_the_thread_that_waited(
    kind: str, tmp_path: Path
) -> None:
    repository: Repository = IMPLEMENTATIONS[kind](tmp_path, FixedClock(), CounterIds())
    try:
        before = commit_wait.seconds
        with repository.transaction() as tx:
            tx.insert("User", user("ann"))
        committed = commit_wait.seconds
        seen: list[float] = []
        thread = threading.Thread(target=lambda: seen.append(commit_wait.seconds))
        thread.start()
        thread.join()
    finally:
        repository.close()

    assert committed > before
    assert seen == [0.0]  # another thread's clock


def test_a_journal_commit_counts_the_fdatasync_it_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = IMPLEMENTATIONS["journal"](tmp_path, FixedClock(), CounterIds())
    real = journal_file.os.fdatasync
    monkeypatch.setattr(journal_file.os, "fdatasync", lambda fd: (time.sleep(0.04), real(fd)))
    try:
        before = commit_wait.seconds
        with repository.transaction() as tx:
            tx.insert("User", user("ann"))
        waited = commit_wait.seconds - before
        with repository.transaction() as tx:  # nothing changed: nothing to sync
            tx.get("User", "id-1")
        unchanged = commit_wait.seconds - before - waited
    finally:
        repository.close()

    assert waited >= 0.03
    assert unchanged == 0.0


# -- the log line --------------------------------------------------------------------------


@pytest.fixture
def slow_app(settings: Settings) -> Iterator[Flask]:
    """The app warning about requests of 20 ms or more."""
    app = create_app(replace(settings, log=LogSettings(slow_request_ms=20)))
    app.config["TESTING"] = True
    yield app
    app.extensions["proware.backend"].close()


@pytest.fixture
def slow_scim(slow_app: Flask) -> ScimClient:
    services = slow_app.extensions["proware"]
    secret, _ = services.tokens.create("entra")
    services.switch.set(True)
    return ScimClient(slow_app.test_client(), secret)


def slow_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match]:
    lines = [r.getMessage() for r in caplog.records if r.name == "proware.slow"]
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    return matches  # type: ignore[return-value]


def test_a_request_slowed_by_the_disk_says_it_waited_to_commit(
    slow_scim: ScimClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = journal_file.os.fdatasync
    monkeypatch.setattr(journal_file.os, "fdatasync", lambda fd: (time.sleep(0.04), real(fd)))
    caplog.set_level("WARNING", logger="proware.slow")

    response = slow_scim.post("/Users", {"userName": "ann"})

    [line] = slow_lines(caplog)
    assert (line["method"], line["path"]) == ("POST", f"{PREFIX}/Users")
    assert line["status"] == "201"
    assert line["token"] == "entra"
    assert line["id"] == response.headers["X-Request-Id"]
    assert float(line["commit"]) >= 30.0  # 40 ms asleep, less the sync's own CPU time
    assert float(line["cpu"]) < 20.0
    assert float(line["total"]) >= float(line["commit"])
    assert float(line["queued"]) == 0.0  # the test client queues nothing
    assert [r.levelname for r in caplog.records if r.name == "proware.slow"] == ["WARNING"]


def test_a_request_slowed_by_computing_says_so(
    slow_app: Flask, slow_scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    slow_app.before_request(lambda: burn(0.03))
    caplog.set_level("WARNING", logger="proware.slow")

    slow_scim.get("/Users")

    [line] = slow_lines(caplog)
    assert (line["method"], line["path"]) == ("GET", f"{PREFIX}/Users")
    assert float(line["cpu"]) >= 30.0
    assert float(line["commit"]) == 0.0


def test_a_request_waiting_for_something_else_is_put_down_as_other(
    slow_app: Flask, slow_scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    slow_app.before_request(lambda: time.sleep(0.03))
    caplog.set_level("WARNING", logger="proware.slow")

    slow_scim.get("/Users")

    [line] = slow_lines(caplog)
    assert float(line["other"]) >= 25.0
    assert float(line["cpu"]) < 20.0


def test_a_garbage_collection_in_a_request_is_shown(
    slow_app: Flask, slow_scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = [[index] for index in range(300_000)]

    def collect() -> None:
        gc.collect()
        time.sleep(0.02)

    slow_app.before_request(collect)
    caplog.set_level("WARNING", logger="proware.slow")

    slow_scim.get("/Users")
    del garbage

    [line] = slow_lines(caplog)
    assert float(line["gc"]) > 0.0


class RequestClock:
    """Stands in for the ``time`` module in server.requestcost: its wall clock starts at 0
    and moves only when the test moves it, so a request takes exactly as long as the test
    says (on a busy machine a real create took 54 ms against a 20 ms threshold)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.thread_time = time.thread_time

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.parametrize(("took", "slow"), [(0.0, False), (0.0199, False), (0.020, True)])
def test_a_request_is_slow_from_the_threshold_on(
    slow_app: Flask,
    slow_scim: ScimClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    took: float,
    slow: bool,
) -> None:
    clock = RequestClock()
    monkeypatch.setattr(requestcost, "time", clock)
    slow_app.before_request(lambda: setattr(clock, "now", clock.now + took))
    caplog.set_level("WARNING", logger="proware.slow")

    slow_scim.create_user("ann")

    assert [line["total"] for line in slow_lines(caplog)] == (["20.0"] if slow else [])


def test_the_slow_log_can_be_turned_off(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(replace(settings, log=LogSettings(slow_request_ms=0)))
    app.before_request(lambda: time.sleep(0.01))
    caplog.set_level("WARNING", logger="proware.slow")
    try:
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        app.extensions["proware.backend"].close()

    assert slow_lines(caplog) == []


def test_the_slow_log_leaves_secrets_out(slow_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    slow_app.before_request(lambda: time.sleep(0.025))
    caplog.set_level("WARNING", logger="proware.slow")

    slow_app.test_client().get(
        "/admin/sso/callback?code=the-secret-code&state=the-state",
        headers={"Authorization": "Bearer pw_not-a-real-token"},
    )

    [line] = slow_lines(caplog)
    text = line.group(0)
    assert "the-secret-code" not in text and "the-state" not in text
    assert "pw_not-a-real-token" not in text
    assert "code=[redacted]" in text
