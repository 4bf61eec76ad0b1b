"""The server's own account of the bench's slowest requests: its slow-request log.

The client's max latency says how long the slowest request took, not why: a request can
wait for the disk, compute, or queue behind another. The service logs every request slower
than ``[log] slow_request_ms`` with that split (:mod:`server.requestcost`); the bench lowers
the threshold to :data:`THRESHOLD_MS` (``--slow-ms``) and reads the lines back from the
server's log after the run, so the report can say what the tail was made of without a patch
to the server: the slowest requests one by one, and where all of their time went.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from server.requestcost import LINE

THRESHOLD_MS = 5  # the default; --slow-ms 2 looks at the p99 of the unloaded phases
KEEP = 5  # the slowest requests the report shows


@dataclass(frozen=True)
class SlowRequest:
    """One line of the slow-request log (times in ms)."""

    PARTS = ("total", "queued", "cpu", "commit", "gc", "other")

    method: str
    path: str
    status: int
    total: float  # from the queue to the answer: queued + cpu + commit + other
    queued: float
    cpu: float
    commit: float
    gc: float
    other: float


@dataclass
class SlowRequests:
    """What the server logged as slow during a run: how many, the slowest, and the sums."""

    threshold_ms: int = THRESHOLD_MS
    count: int = 0
    slowest: list[SlowRequest] = field(default_factory=list)  # slowest first, KEEP at most
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SlowRequest.PARTS, 0.0))

    def to_json(self) -> dict:
        return {
            "threshold_ms": self.threshold_ms,
            "count": self.count,
            "slowest": [asdict(each) for each in self.slowest],
            "totals_ms": self.totals,
        }


def config(threshold_ms: int = THRESHOLD_MS) -> str:
    """The ``[log]`` key that makes the server log the bench's slow requests."""
    return f"slow_request_ms = {threshold_ms}\n"


def read(log: Path, threshold_ms: int = THRESHOLD_MS) -> SlowRequests:
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
                **{part: float(match[part]) for part in SlowRequest.PARTS},
            )
        )
    totals = {part: sum(getattr(each, part) for each in found) for part in SlowRequest.PARTS}
    found.sort(key=lambda each: each.total, reverse=True)
    return SlowRequests(threshold_ms, len(found), found[:KEEP], totals)


def report(slow: SlowRequests | None) -> list[str]:
    """The report's lines: the count and where their time went, then the slowest."""
    if slow is None:
        return ["  server-side slow requests: not logged (a revision before the slow-request log)"]
    if not slow.count:
        return [f"  server-side: no request took {slow.threshold_ms} ms or more"]
    total = slow.totals["total"] or 1.0
    shares = ", ".join(f"{part} {slow.totals[part] / total:.0%}" for part in SlowRequest.PARTS[1:])
    lines = [
        f"  server-side, {slow.count} request(s) took {slow.threshold_ms} ms or more; their "
        f"time: {shares} (gc is part of cpu); the slowest:"
    ]
    for each in slow.slowest:
        lines.append(
            f"    {each.total:6.1f} ms: queued {each.queued:.1f}, cpu {each.cpu:.1f} (gc "
            f"{each.gc:.1f}), commit {each.commit:.1f}, other {each.other:.1f}   {each.method} "
            f"{each.path} {each.status}"
        )
    return lines
