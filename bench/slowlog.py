"""The server's own account of the bench's slowest requests: its slow-request log.

The client's max latency says how long the slowest request took, not why: a request can
wait for the disk, compute, or queue behind another. The service logs every request slower
than ``[log] slow_request_ms`` with that split (:mod:`server.requestcost`); the bench lowers
the threshold to :data:`THRESHOLD_MS` and reads the lines back from the server's log after
the run, so the report can say what the tail was made of without a patch to the server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from server.requestcost import LINE

THRESHOLD_MS = 5
KEEP = 5  # the slowest requests the report shows


@dataclass(frozen=True)
class SlowRequest:
    """One line of the slow-request log (times in ms)."""

    method: str
    path: str
    status: int
    wall: float
    cpu: float
    commit: float
    gc: float
    other: float


@dataclass
class SlowRequests:
    """What the server logged as slow during a run: how many, and the slowest."""

    count: int = 0
    slowest: list[SlowRequest] = field(default_factory=list)  # slowest first, KEEP at most

    def to_json(self) -> dict:
        return {
            "threshold_ms": THRESHOLD_MS,
            "count": self.count,
            "slowest": [asdict(each) for each in self.slowest],
        }


def config() -> str:
    """The ``[log]`` key that makes the server log the bench's slow requests."""
    return f"slow_request_ms = {THRESHOLD_MS}\n"


def read(log: Path) -> SlowRequests:
    """The slow requests in the server's log (several processes' lines may interleave)."""
    found: list[SlowRequest] = []
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    for line in text.splitlines():
        match = LINE.search(line)
        if match is None:
            continue
        found.append(
            SlowRequest(
                method=match["method"],
                path=match["path"],
                status=int(match["status"]),
                **{key: float(match[key]) for key in ("wall", "cpu", "commit", "gc", "other")},
            )
        )
    found.sort(key=lambda each: each.wall, reverse=True)
    return SlowRequests(len(found), found[:KEEP])


def report(slow: SlowRequests | None) -> list[str]:
    """The report's lines: the count, then the slowest with what their time went to."""
    if slow is None:
        return ["  server-side slow requests: not logged (a revision before the slow-request log)"]
    if not slow.count:
        return [f"  server-side: no request took {THRESHOLD_MS} ms or more"]
    lines = [
        f"  server-side, {slow.count} request(s) took {THRESHOLD_MS} ms or more; the slowest "
        "(gc is part of cpu):"
    ]
    for each in slow.slowest:
        lines.append(
            f"    {each.wall:6.1f} ms: cpu {each.cpu:.1f} (gc {each.gc:.1f}), commit "
            f"{each.commit:.1f}, other {each.other:.1f}   {each.method} {each.path} {each.status}"
        )
    return lines
