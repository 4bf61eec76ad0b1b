"""``make bench``: start the real service and drive it the way Entra does.

    python -m bench.run                          # N = 1,000 and 10,000; stops within ~3 minutes
    python -m bench.run --sizes 1000,10000,50000 # the issue's full table (no time limit)
    python -m bench.run --quick                  # N = 200: the smoke test's run

For each size: a fresh data directory, ``app.py token create`` and ``provisioning enable``,
``app.py serve`` (waitress, access log off), then the loaded phases of :mod:`bench.entra` from
``--clients`` keep-alive connections (throughput, and latency with queueing), then, once the
server is idle, the unloaded phase of :mod:`bench.unloaded` from one client (the cost of one
request, on which the latency targets are judged), the server's memory and data size, a polite
stop and a timed restart on the final data, and a check that the restarted server holds every
user and group it acknowledged. A trivial WSGI app on waitress, driven by the same client,
gives the ceiling. Results are printed and written to ``bench/results/<timestamp>.json``.

The exit code is 0 when every request got its expected answer and the totals matched after
the restart; the timing targets are reported (PASS/FAIL), not enforced.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import entra, report, targets, trivial, unloaded
from bench.client import Connection, PhaseResult, Task, Worker, drive
from bench.results import Baseline, SizeResult
from server.config import ServerSettings
from storage.journal.format import list_segments
from tests.serverproc import (
    ScimConnection,
    ServerProcess,
    free_port,
    proc_cpu_seconds,
    wait_for_http,
)

DEFAULT_SIZES = [1000, 10_000]
QUICK_SIZES = [200]
# The default run must stay under 3 minutes; an explicit --sizes run has no limit.
DEFAULT_TIME_LIMIT = 160.0
RESULTS = Path(__file__).resolve().parent / "results"
# The trivial app is fastest with several threads (it never releases the GIL mid-request),
# the service with one: the ceiling is the trivial app at its best, not at ours.
CEILING_THREADS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        type=_sizes,
        help="comma-separated user counts (default 1000,10000; the issue's table: "
        "1000,10000,50000)",
    )
    parser.add_argument("--quick", action="store_true", help="N = 200 and a short ceiling run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument(
        "--threads",
        type=int,
        default=ServerSettings().threads,
        help=f"the service's waitress threads (default {ServerSettings().threads}, as served)",
    )
    parser.add_argument(
        "--ceiling-threads",
        type=int,
        default=CEILING_THREADS,
        help="the trivial app also runs with this many threads, and the faster of its two "
        f"runs is the ceiling (default {CEILING_THREADS})",
    )
    parser.add_argument(
        "--chunk", type=int, default=50, help="members per add-members PATCH (default 50)"
    )
    parser.add_argument(
        "--ceiling-requests",
        type=int,
        help="requests sent to the trivial app (default 20000; 1000 with --quick)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop sending requests after this long (0: never). Default: "
        f"{DEFAULT_TIME_LIMIT:.0f} s with the default sizes, none with --sizes or --quick",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where the JSON results go"
    )
    return parser.parse_args(argv)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 1000,10000, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("each size must be at least 10 users")
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else args.sizes or DEFAULT_SIZES
    limit = args.time_limit
    if limit is None:
        limit = DEFAULT_TIME_LIMIT if not (args.quick or args.sizes) else 0
    started = time.monotonic()
    deadline = started + limit if limit else None
    ceiling_requests = args.ceiling_requests or (1000 if args.quick else 20_000)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    meta: dict[str, Any] = {
        "started": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {
            "sizes": sizes,
            "clients": args.clients,
            "threads": args.threads,
            "ceiling_threads": args.ceiling_threads,
            "chunk": args.chunk,
            "ceiling_requests": ceiling_requests,
            "time_limit_s": limit or None,
        },
    }
    _say(
        f"bench: sizes {', '.join(f'{n:,}' for n in sizes)}; {args.clients} clients on "
        f"keep-alive connections; waitress {_threads(args.threads)}; {os.cpu_count()} CPUs; "
        f"time limit {f'{limit:.0f} s' if limit else 'none'}"
    )
    baselines = [
        run_ceiling(ceiling_requests, args.clients, threads)
        for threads in sorted({args.threads, args.ceiling_threads})
    ]
    baseline = max(baselines, key=lambda run: run.phase.rate)
    _say(*report.baseline_report(baselines, baseline, args.clients))
    flask_reference = run_ceiling(ceiling_requests, args.clients, args.threads, flask=True)
    meta["flask_reference"] = {
        "rate": flask_reference.phase.rate,
        "fraction_of_ceiling": flask_reference.phase.rate / baseline.phase.rate,
    }
    _say(
        f"  reference: a one-route Flask app on waitress with {_threads(args.threads)}, as served: "
        f"{flask_reference.phase.rate:.0f} req/s, "
        f"{flask_reference.phase.rate / baseline.phase.rate:.1%} of the trivial app "
        "(the framework's own cost, before any SCIM work)"
    )

    results: list[SizeResult] = []
    for n in sizes:
        if deadline is not None and time.monotonic() > deadline:
            _say(f"\n== N = {n:,}: skipped, the time limit passed ==")
            continue
        size = run_size(entra.Plan.for_size(n, args.chunk), args, deadline)
        results.append(size)
        _say(*report.size_report(size))

    verdicts = targets.targets(results, baseline)
    _say(*targets.targets_report(verdicts))
    if results:
        worst = max(results, key=lambda size: size.worst()[0])
        worst_ms, worst_label = worst.worst()
        _say(
            f"  max request latency over the whole run: {worst_ms:.1f} ms "
            f"({worst_label}, N = {worst.plan.users:,})"
        )
    _say(
        "",
        "  CPU/req: CPU seconds per request of the server process and of this client process "
        f"(all {args.clients} client threads);",
        "  the client shares the machine's cores with the server, in the ceiling run as well.",
    )
    meta["elapsed_s"] = time.monotonic() - started
    path = report.write_json(
        args.results_dir, stamp, report.to_json(results, baseline, verdicts, meta)
    )
    _say(f"\nresults: {path}  (whole bench: {meta['elapsed_s']:.0f} s)")
    broken = [size for size in results if size.errors or not size.totals_ok]
    return 1 if broken or baseline.phase.errors else 0


def run_ceiling(requests: int, clients: int, threads: int, *, flask: bool = False) -> Baseline:
    """Drive the trivial WSGI app (or its Flask twin) with the initial cycle's request bytes."""
    port = free_port()
    process = trivial.spawn(port, threads, flask=flask)
    try:
        wait_for_http(port, "/", process, timeout=30)
        workers = [Worker(Connection(port)) for _ in range(clients)]
        phase = drive(
            f"{'one-route Flask app' if flask else 'trivial app'}, {_threads(threads)}",
            entra.baseline_tasks(port, requests, clients),
            workers,
            lambda: proc_cpu_seconds(process.pid),
        )
        for worker in workers:
            worker.connection.close()
    finally:
        process.kill()
        process.wait(timeout=30)
    return Baseline(phase, threads)


def run_size(plan: entra.Plan, args: argparse.Namespace, deadline: float | None) -> SizeResult:
    """One size: a fresh service, every phase, memory and data size, a timed restart."""
    size = SizeResult(plan, clients=args.clients)
    with tempfile.TemporaryDirectory(prefix="proware-bench-") as tmp:
        server = ServerProcess(Path(tmp), threads=args.threads, access_log=False)
        token = server.create_token("bench")
        server.enable_provisioning()
        try:
            size.startup_empty = server.start()
            workload = entra.Workload(plan, server.port, token, args.clients)
            workers = [Worker(Connection(server.port), deadline) for _ in range(args.clients)]
            for name, build in workload.phases():
                phase = _drive_server(server, name, build(), workers)
                workload.absorb(workers)
                size.phases.append(phase)
                _say(
                    f"  [{plan.users:,}] {name}: {phase.requests} requests in "
                    f"{phase.seconds:.1f} s ({phase.rate:.0f}/s), {phase.errors} errors"
                    + (" - time limit reached, phase cut" if phase.cut else "")
                )
                if phase.cut:
                    size.cut = True
                    break
            if not size.cut:
                size.idle_wait = unloaded.wait_until_idle(server.cpu_seconds)
                alone = workers[:1]  # a keep-alive connection that is already open
                phase = _drive_server(
                    server, unloaded.UNLOADED, [unloaded.unloaded_task(workload)], alone
                )
                size.unloaded, size.cut = phase, phase.cut
                _say(
                    f"  [{plan.users:,}] {phase.name}: {phase.requests} requests in "
                    f"{phase.seconds:.1f} s, {phase.errors} errors (server idle after "
                    f"{size.idle_wait:.1f} s)"
                    + (" - time limit reached, phase cut" if phase.cut else "")
                )
            for worker in workers:
                worker.connection.close()
            memory = server.memory()
            size.rss, size.rss_peak = memory["VmRSS"], memory["VmHWM"]
            size.data_bytes = server.data_bytes()
            size.stop_code = server.stop(timeout=120)
            size.data_bytes_stopped = server.data_bytes()
            size.data_files = {
                str(path.relative_to(server.data_dir)): path.stat().st_size
                for path in sorted(server.data_dir.rglob("*"))
                if path.is_file()
            }
            size.startup = server.start(timeout=300)
            size.rss_restarted = server.memory()["VmRSS"]
            size.expected_totals = {
                "users": sum(1 for id in workload.user_ids if id),
                "groups": sum(1 for id in workload.group_ids if id),
            }
            size.totals = _totals(server.connect(token))
        finally:
            server.stop(timeout=120)
    return size


def _drive_server(
    server: ServerProcess, name: str, tasks: list[Task], workers: list[Worker]
) -> PhaseResult:
    """:func:`drive` one phase against ``server``, counting the compactions it started."""
    before = _generation(server.data_dir)
    phase = drive(name, tasks, workers, server.cpu_seconds)
    phase.compactions = _generation(server.data_dir) - before
    return phase


def _generation(data_dir: Path) -> int:
    """The journal's current generation: each compaction starts the next one."""
    return max(list_segments(data_dir), default=0)


def _totals(connection: ScimConnection) -> dict[str, int]:
    """How many users and groups the server holds (plain listings, one resource each)."""
    users = connection.get("/Users?count=1")
    groups = connection.get("/Groups?count=1&excludedAttributes=members")
    connection.close()
    return {"users": users.body["totalResults"], "groups": groups.body["totalResults"]}


def _threads(count: int) -> str:
    return f"{count} thread" if count == 1 else f"{count} threads"


def _say(*lines: str) -> None:
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
