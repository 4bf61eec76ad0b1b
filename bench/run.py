"""``make bench``: start the real service and drive it the way Entra does.

    python -m bench.run                          # N = 1,000 and 10,000; stops within ~3 minutes
    python -m bench.run --sizes 1000,10000,50000 # the issue's full table (no time limit)
    python -m bench.run --quick                  # N = 200: the smoke test's run
    python -m bench.run --compare REV            # before (REV) and after (this tree), side by side
    python -m bench.run --backends tinydb,postgresql --processes 1,2,4
                                                 # the embedded store beside PostgreSQL

For each size and each variant (:mod:`bench.variants`): a fresh data directory (and on
PostgreSQL a fresh database), ``app.py token create`` and ``provisioning enable``, ``app.py
serve`` (access log off), then the loaded phases of :mod:`bench.entra` from ``--clients``
keep-alive connections (throughput, and latency with queueing), then, once the server is idle,
the unloaded phase of :mod:`bench.unloaded` from one client (the cost of one request, on which
the latency targets are judged) and ``--repeat`` more runs of its member changes, the server's
memory and data size, a polite stop and a timed restart on the final data, and a check that the
restarted server holds every user and group it acknowledged (:mod:`bench.sizerun`). Several
variants at one size run their loaded phases one after the other, then take turns for the
unloaded runs; the order flips at every size and every unloaded run. A trivial WSGI app on
waitress, driven by the same client, gives the ceiling; the same app on Proware's own server
module is shown beside it. Results are printed and written to
``bench/results/<timestamp>.json``.

The exit code is 0 when every request got its expected answer and the totals matched after
the restart; the timing targets are reported (PASS/FAIL), not enforced.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from bench import checkout, compare, entra, options, report, scaling, targets, trivial, unloaded
from bench.client import Connection, Worker, drive
from bench.database import BenchDatabase, DatabaseUnavailable
from bench.results import Baseline, SizeResult
from bench.sizerun import SizeRun
from bench.variants import POSTGRESQL, Variant, backend_variants, compare_variants
from server.config import chosen_threads, threads_choice
from storage.settings import TINYDB
from tests.serverproc import free_port, proc_cpu_seconds, wait_for_http


def main(argv: list[str] | None = None) -> int:
    args = options.parse_args(argv)
    with ExitStack() as stack:
        database = None
        if POSTGRESQL in args.backends:
            try:
                database = stack.enter_context(BenchDatabase(unix=args.database_socket == "unix"))
            except DatabaseUnavailable as exc:
                _say(f"bench: {exc}")
                return 2
        if args.compare:
            try:
                revision = stack.enter_context(checkout.worktree(args.compare))
            except checkout.RevisionError as exc:
                _say(f"bench: --compare: {exc}")
                return 2
            described = f"{revision.short} {revision.subject}"
            variants = compare_variants(args.backends[0], revision.path, described)
            compared = {"revision": revision.name, "commit": revision.commit}
        else:
            variants = backend_variants(args.backends, args.processes)
            compared = None
        return measure(args, variants, database, compared)


def _socket(choice: str) -> str:
    return "its unix socket" if choice == "unix" else "TCP (127.0.0.1)"


def measure(
    args: argparse.Namespace,
    variants: list[Variant],
    database: BenchDatabase | None,
    compared: dict[str, str] | None = None,
) -> int:
    """Every size with every variant, the targets, the report and the JSON file.

    :param compared: the revision ``--compare`` named, and its commit.
    """
    sizes = options.QUICK_SIZES if args.quick else args.sizes or options.DEFAULT_SIZES
    limit = args.time_limit
    if limit is None:
        plain = not (args.quick or args.sizes) and len(variants) == 1
        limit = options.DEFAULT_TIME_LIMIT if plain else 0
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
            "compare": args.compare,
            "repeat": args.repeat,
            "backends": args.backends,
            "processes": args.processes,
            "database_socket": args.database_socket if database else None,
        },
        "variants": [report.variant_data(variant) for variant in variants],
        "compare": compared,
    }
    _say(
        f"bench: sizes {', '.join(f'{n:,}' for n in sizes)}; {args.clients} clients on "
        f"keep-alive connections; waitress {_threads(args.threads)}; {os.cpu_count()} CPUs; "
        f"time limit {f'{limit:.0f} s' if limit else 'none'}"
        + (f"; PostgreSQL over {_socket(args.database_socket)}" if database else ""),
        *(f"  {variant.describe()}" for variant in variants if variant.label),
    )
    # The reference apps run with the threads the default install serves with.
    served = chosen_threads(args.threads, TINYDB)
    baselines = [
        run_ceiling(ceiling_requests, args.clients, threads)
        for threads in sorted({served, args.ceiling_threads})
    ]
    baseline = max(baselines, key=lambda run: run.phase.rate)
    _say(*report.baseline_report(baselines, baseline, args.clients))
    flask_reference = run_ceiling(ceiling_requests, args.clients, served, flask=True)
    meta["flask_reference"] = _reference(flask_reference, baseline)
    _say(
        f"  reference: a one-route Flask app on waitress with {_threads(served)}, as served: "
        f"{flask_reference.phase.rate:.0f} req/s, "
        f"{flask_reference.phase.rate / baseline.phase.rate:.1%} of the trivial app "
        "(the framework's own cost, before any SCIM work)"
    )
    own = run_ceiling(ceiling_requests, args.clients, 1, proware=True)
    meta["proware_server_reference"] = _reference(own, baseline)
    _say(
        "  reference: the trivial app on Proware's server module (server.httpserver, 1 thread: "
        f"requests on waitress's main loop): {own.phase.rate:.0f} req/s, "
        f"{own.phase.rate / baseline.phase.rate:.1%} of the ceiling, "
        f"{_per_request(own)} server CPU/req"
    )
    floor = run_ceiling(ceiling_requests, args.clients, 1, flask=True, proware=True)
    meta["flask_proware_reference"] = _reference(floor, baseline)
    _say(
        "  reference: the one-route Flask app on Proware's server module, as the embedded "
        f"store is served: {floor.phase.rate:.0f} req/s, {_per_request(floor)} server CPU/req "
        "(the floor of a request on this stack)"
    )

    results: list[SizeResult] = []
    for index, n in enumerate(sizes):
        if deadline is not None and time.monotonic() > deadline:
            _say(f"\n== N = {n:,}: skipped, the time limit passed ==")
            continue
        plan = entra.Plan.for_size(n, args.chunk)
        runs = run_size(plan, variants, args, deadline, database, reverse=index % 2 == 1)
        results += runs
        for size in runs:
            _say(*report.size_report(size))
        if len(runs) > 1:
            title = (
                f"== N = {n:,}: before ({runs[0].variant.revision}) and after (this tree) =="
                if args.compare
                else f"== N = {n:,}: the stores and process counts side by side =="
            )
            _say(*compare.side_by_side(runs, baseline, own, title))
            if not args.compare:  # before and after are no curve
                _say(*scaling.curve_report(runs))

    judged = variants[-1] if args.compare else variants[0]
    verdicts = targets.targets(
        [s for s in results if s.variant == judged], baseline, own, flask_floor=floor
    )
    for n in dict.fromkeys(size.plan.users for size in results):
        runs = [size for size in results if size.plan.users == n]
        if args.compare and len(runs) == 2:
            verdicts += compare.compare_targets(runs[0], runs[1])
        else:
            verdicts += scaling.scaling_targets(runs)
    _say(*targets.targets_report(verdicts))
    if results:
        worst = max(results, key=lambda size: size.worst()[0])
        worst_ms, worst_label = worst.worst()
        label = f", {worst.variant.label}" if worst.variant.label else ""
        _say(
            f"  max request latency over the whole run: {worst_ms:.1f} ms "
            f"({worst_label}, N = {worst.plan.users:,}{label})"
        )
    _say(
        "",
        "  CPU/req: CPU seconds per request of the server (every server process) and of the "
        f"client processes (all {args.clients});",
        "  the client shares the machine's cores with the server, in the ceiling run as well."
        + (" PostgreSQL's own CPU is the db column." if database else ""),
    )
    meta["elapsed_s"] = time.monotonic() - started
    path = report.write_json(
        args.results_dir, stamp, report.to_json(results, baseline, verdicts, meta)
    )
    _say(f"\nresults: {path}  (whole bench: {meta['elapsed_s']:.0f} s)")
    broken = [size for size in results if size.errors or not size.totals_ok]
    return 1 if broken or baseline.phase.errors else 0


def run_size(
    plan: entra.Plan,
    variants: list[Variant],
    args: argparse.Namespace,
    deadline: float | None,
    database: BenchDatabase | None,
    *,
    reverse: bool = False,
) -> list[SizeResult]:
    """Every variant at one size: loaded phases one variant after the other, then the
    unloaded runs in turns (run 1 of each, run 2 of each...), each once every server and
    the database were idle; then each one's restart.

    :param reverse: start with the last variant. The order flips at every size and at every
        unloaded run (before, after; after, before; ...), so that drift in the machine's
        load, or going second, favours no variant.
    :returns: the results in the order of ``variants``.
    """
    runs: list[SizeRun] = []
    try:
        for variant in variants[::-1] if reverse else variants:
            if deadline is not None and time.monotonic() > deadline:
                break
            if runs:
                _wait_until_idle(runs, database)
            run = SizeRun(
                plan,
                variant,
                clients=args.clients,
                threads=args.threads,
                database=database,
                say=_say,
                slow_ms=args.slow_ms,
            )
            runs.append(run)
            run.start(deadline)
            run.run_loaded()
        for number in range(1, args.repeat + 1):
            for run in runs if number % 2 else runs[::-1]:
                run.run_unloaded(number, _wait_until_idle(runs, database))
        results = [run.finish() for run in runs]
        return sorted(results, key=lambda size: variants.index(size.variant))
    finally:
        for run in runs:
            run.close()


def _wait_until_idle(runs: list[SizeRun], database: BenchDatabase | None) -> float:
    """Wait until no server of this size (and not PostgreSQL) works in the background."""

    def cpu_seconds() -> float:
        used = sum(run.server_cpu_seconds() for run in runs)
        return used + (database.cpu_seconds() if database else 0.0)

    return unloaded.wait_until_idle(cpu_seconds)


def run_ceiling(
    requests: int, clients: int, threads: int, *, flask: bool = False, proware: bool = False
) -> Baseline:
    """Drive the trivial WSGI app (or its Flask twin) with the initial cycle's request bytes,
    on stock waitress or (``proware``) on Proware's server module."""
    port = free_port()
    process = trivial.spawn(port, threads, flask=flask, proware=proware)
    app = "one-route Flask app" if flask else "trivial app"
    served = ", Proware's server" if proware else ""
    try:
        wait_for_http(port, "/", process, timeout=30)
        workers = [Worker(Connection(port)) for _ in range(clients)]
        phase = drive(
            f"{app}{served}, {_threads(threads)}",
            entra.baseline_tasks(port, requests, clients),
            workers,
            lambda: proc_cpu_seconds(process.pid),
        )
        for worker in workers:
            worker.connection.close()
    finally:
        process.kill()
        process.wait(timeout=30)
    return Baseline(phase, threads, "server.httpserver" if proware else "waitress")


def _reference(run: Baseline, ceiling: Baseline) -> dict:
    return {
        "server": run.server,
        "threads": run.threads,
        "rate": run.phase.rate,
        "fraction_of_ceiling": run.phase.rate / ceiling.phase.rate if ceiling.phase.rate else None,
        "server_cpu_per_request_ms": run.phase.server_cpu * 1000 / run.phase.requests
        if run.phase.requests
        else None,
    }


def _per_request(run: Baseline) -> str:
    phase = run.phase
    return f"{phase.server_cpu * 1000 / phase.requests:.2f} ms" if phase.requests else "-"


def _threads(count: int) -> str:
    if count == 0:
        return f"threads as served ({threads_choice()})"
    return f"{count} thread" if count == 1 else f"{count} threads"


def _say(*lines: str) -> None:
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
