"""The bench reads the server's slow-request log back (bench/slowlog.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import slowlog
from server.requestcost import Cost, describe


def line(total_ms: float, path: str = "/scim/v2/Users", pid: str = "") -> str:
    wall = total_ms / 1000 - 0.0005  # 0.5 ms queued
    cost = Cost(wall=wall, cpu=0.0012, commit=wall - 0.0015, gc=0.0001, queued=0.0005)
    text = describe("POST", path, 201, cost, "bench", "00112233aabbccdd")
    return f"2026-12-07 11:00:00,000{pid} WARNING proware.slow {text}"


def test_the_slow_requests_are_counted_and_the_slowest_kept_in_order(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    totals = [7.5, 54.2, 5.0, 12.3, 9.0, 31.0, 6.1]
    log.write_text(
        "\n".join(
            [
                "Serving on http://127.0.0.1:8000",
                *(line(total, pid=f" [{100 + i % 2}]") for i, total in enumerate(totals)),
                "2026-12-07 11:00:01,000 INFO proware.journal compaction done",
            ]
        ),
        encoding="utf-8",
    )

    slow = slowlog.read(log)

    assert slow.count == 7
    assert [each.total for each in slow.slowest] == [54.2, 31.0, 12.3, 9.0, 7.5]
    first = slow.slowest[0]
    assert (first.method, first.path, first.status) == ("POST", "/scim/v2/Users", 201)
    assert (first.queued, first.cpu, first.commit, first.gc) == (0.5, 1.2, 52.2, 0.1)
    assert first.other == 0.3
    assert slow.totals["total"] == pytest.approx(sum(totals))
    assert slow.totals["cpu"] == pytest.approx(1.2 * 7)


def test_a_path_with_spaces_and_quotes_in_its_filter_is_read_whole(tmp_path: Path) -> None:
    path = '/scim/v2/Users?filter=userName eq "ann@example.com"'
    (tmp_path / "server.log").write_text(line(8.0, path=path.replace('"', "%22")), "utf-8")

    [found] = slowlog.read(tmp_path / "server.log").slowest

    assert found.path == path.replace('"', "%22")


def test_no_log_and_no_slow_lines_read_as_none(tmp_path: Path) -> None:
    nothing = slowlog.read(tmp_path / "missing.log", threshold_ms=2)

    assert (nothing.count, nothing.slowest, nothing.threshold_ms) == (0, [], 2)
    assert slowlog.report(nothing) == ["  server-side: no request took 2 ms or more"]


def test_the_threshold_is_the_servers_log_key() -> None:
    assert slowlog.config() == "slow_request_ms = 5\n"
    assert slowlog.config(2) == "slow_request_ms = 2\n"


def test_the_report_shows_where_the_time_went(tmp_path: Path) -> None:
    (tmp_path / "server.log").write_text(line(54.2) + "\n" + line(6.0), "utf-8")

    lines = slowlog.report(slowlog.read(tmp_path / "server.log"))

    assert lines[0] == (
        "  server-side, 2 request(s) took 5 ms or more; their time: queued 2%, cpu 4%, "
        "commit 93%, gc 0%, other 1% (gc is part of cpu); the slowest:"
    )
    assert (
        "54.2 ms: queued 0.5, cpu 1.2 (gc 0.1), commit 52.2, other 0.3   POST /scim/v2/Users 201"
        in lines[1]
    )
    assert slowlog.report(None) == [
        "  server-side slow requests: not logged (a revision before the slow-request log)"
    ]
