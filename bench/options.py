"""``python -m bench.run``'s command line: sizes, clients, the ceiling, and what to compare.

Plain ``make bench`` measures this tree on the embedded store at the default sizes within
a time limit. ``--compare REV`` adds an earlier revision, ``--backend``/``--backends`` and
``--processes`` add PostgreSQL and several server processes (:mod:`bench.variants`);
``--repeat K`` repeats the unloaded member changes; ``--slow-ms`` sets what the service
logs as slow (:mod:`bench.slowlog`). Options that cannot run together are
refused here, before anything starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.slowlog import THRESHOLD_MS
from bench.variants import BACKENDS, POSTGRESQL, TINYDB
from server.config import ServerSettings, threads_choice

DEFAULT_SIZES = [1000, 10_000]
QUICK_SIZES = [200]
# The default run must stay under 3 minutes; an explicit --sizes run has no limit.
DEFAULT_TIME_LIMIT = 160.0
RESULTS = Path(__file__).resolve().parent / "results"
# The trivial app is fastest with several threads (it never releases the GIL mid-request),
# the service with one: the ceiling is the trivial app at its best, not at ours.
CEILING_THREADS = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, checked against each other.

    :raises SystemExit: (2) an unknown or conflicting option, with argparse's message.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="make bench: start the real service and drive it the way Entra does",
    )
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
        help="the service's waitress threads (default 0: as served, chosen for the store: "
        f"{threads_choice()})",
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
        f"{DEFAULT_TIME_LIMIT:.0f} s with the default sizes and one variant, none with "
        "--sizes, --quick, --compare or several backends or process counts",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS, help="where the JSON results go"
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also run the service of git revision REV (checked out in a temporary worktree), "
        "alternating with this tree at every size, and print before/after tables",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="K",
        help="run the unloaded member changes K times in all (each run's p99 of adding one "
        "member to the big group is reported; issue 13 asks for 5). Default 1",
    )
    parser.add_argument(
        "--slow-ms",
        type=_positive,
        default=THRESHOLD_MS,
        metavar="MS",
        help="the service logs each request this slow with where its time went, and the "
        f"report sums them up (default {THRESHOLD_MS} ms; 1-2 ms looks at the p99s)",
    )
    stores = parser.add_mutually_exclusive_group()
    stores.add_argument(
        "--backend", choices=BACKENDS, help=f"the store to serve from (default {TINYDB})"
    )
    stores.add_argument(
        "--backends",
        type=_backends,
        help="several stores measured side by side in this one run, e.g. tinydb,postgresql",
    )
    parser.add_argument(
        "--processes",
        type=_counts,
        default=[1],
        help="server processes, e.g. 1,2,4: a separate run for each count at every size, "
        "against one PostgreSQL (above 1 needs --backend postgresql; the embedded store "
        "always runs with 1). Default 1",
    )
    parser.add_argument(
        "--database-socket",
        choices=("unix", "tcp"),
        default="unix",
        help="how the servers reach the bench's PostgreSQL: its unix socket (default: what "
        "the README recommends for a database on the same machine) or TCP on 127.0.0.1 (as "
        "from another machine)",
    )
    args = parser.parse_args(argv)
    args.backends = args.backends or [args.backend or TINYDB]
    if POSTGRESQL not in args.backends and args.processes != [1]:
        parser.error("--processes above 1 needs --backend postgresql (or --backends with it)")
    if args.compare and (len(args.backends) > 1 or args.processes != [1]):
        parser.error(
            "--compare runs one store with one process (an earlier revision may not know "
            "--processes or PostgreSQL): give at most --backend"
        )
    return args


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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _counts(text: str) -> list[int]:
    counts = [_positive(part.strip()) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("expected process counts like 1,2,4")
    return sorted(set(counts))


def _backends(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected stores from {', '.join(BACKENDS)}, got {text!r}"
        )
    return list(dict.fromkeys(names))
