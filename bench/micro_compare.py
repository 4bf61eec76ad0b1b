"""``app_micro --compare REV``: the searches on revision ``REV`` and on this tree, in turns.

Each side is a process of its own (one checkout cannot import two versions of the app): the
revision's tree is checked out beside this one (:func:`bench.checkout.worktree`), and both
processes run *this* tree's ``bench/app_micro.py`` as ``--worker`` on their own tree's app,
so both send the same requests; the revision needs the bench modules that file imports. Each
fills a data directory of its own, then, on each "round" line, times every search and answers
with the latencies. The sides take turns, the order flipping each round, so that what else
the machine does falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench import checkout

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
# Runs the script argv[2] on the tree argv[1]: that tree's app, this tree's benchmark.
BOOT = (
    "import runpy, sys; source, script = sys.argv[1:3]; sys.path.insert(0, source); "
    "sys.argv = [script, *sys.argv[3:]]; runpy.run_path(script, run_name='__main__')"
)
PROTOCOL = "@@"


class Side:
    """One worker process: a tree's app behind this tree's ``app_micro --worker``."""

    def __init__(self, label: str, source: Path, args: argparse.Namespace) -> None:
        self.label = label
        worker = [
            "--worker",
            *("--users", str(args.users), "--samples", str(args.samples)),
            *("--filter-samples", str(args.filter_samples), "--backend", args.backend),
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-c", BOOT, str(source), str(HERE.parent / "app_micro.py"), *worker],
            cwd=source,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.samples: dict[str, list[float]] = {}  # latencies, ms
        self.cpu: dict[str, float] = {}  # seconds in all

    def read(self) -> str:
        """The next protocol line (the app may print other lines)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                return line[len(PROTOCOL) :]
        raise SystemExit(f"{self.label}: the worker stopped (exit {self.process.wait()})")

    def round(self) -> None:
        """Time every search once more."""
        assert self.process.stdin is not None
        self.process.stdin.write("round\n")
        self.process.stdin.flush()
        for label, figures in json.loads(self.read()).items():
            self.samples.setdefault(label, []).extend(figures["ms"])
            self.cpu[label] = self.cpu.get(label, 0.0) + figures["cpu_s"]

    def cpu_ms(self, label: str) -> float:
        """The process's CPU per request of ``label``, in ms."""
        return self.cpu[label] / len(self.samples[label]) * 1000

    def close(self) -> None:
        """End the worker: no more rounds (it stops at the end of its input)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def compare(revision_name: str, args: argparse.Namespace) -> None:
    """Print, per search, the median and 90th percentile latency and the CPU per request
    before (``revision_name``) and after (this tree), and their changes."""
    sides: list[Side] = []
    try:
        with checkout.worktree(revision_name) as revision:
            try:
                sides = [Side("before", revision.path, args), Side("after", REPO, args)]
                for side in sides:
                    if side.read().strip() != "ready":
                        raise SystemExit(f"{side.label}: the worker did not start")
                for number in range(args.rounds):
                    for side in sides if number % 2 == 0 else reversed(sides):
                        side.round()
            finally:
                for side in sides:
                    side.close()
    except checkout.RevisionError as exc:
        raise SystemExit(f"app_micro --compare: {exc}") from None
    before, after = sides
    print(
        f"== {args.users:,} users with an email each, {args.backend}; "
        f"before: {revision.name} ({revision.short} {revision.subject}); after: this tree"
    )
    print(
        f"   {args.rounds} rounds, alternating; per round {args.samples} lookups and "
        f"{args.filter_samples} of each search; latency p50 / p90 and CPU per request, ms "
        "(CPU is the steadier figure on a busy machine)"
    )
    print(
        f"  {'':<36}{'before':>16}{'after':>16}{'change':>8}"
        f"{'CPU before':>12}{'after':>9}{'change':>8}"
    )
    for label, old in before.samples.items():
        new = after.samples[label]
        print(
            f"  {label:<36}{_cell(old):>16}{_cell(new):>16}"
            f"{statistics.median(new) / statistics.median(old):>7.2f}x"
            f"{before.cpu_ms(label):>12.2f}{after.cpu_ms(label):>9.2f}"
            f"{after.cpu_ms(label) / before.cpu_ms(label):>7.2f}x"
        )


def _cell(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{statistics.median(ordered):.2f} / {p90:.2f}"
