"""What one benchmark run measured: the ceiling's run and each directory size's.

Plain data, shared by the report (:mod:`bench.report`), the targets (:mod:`bench.targets`,
:mod:`bench.scaling`) and the side-by-side tables (:mod:`bench.compare`), so that none needs
another's. One :class:`SizeResult` is one variant (:mod:`bench.variants`) at one size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench import entra, unloaded
from bench.client import PhaseResult, percentile, summarize
from bench.slowlog import SlowRequests
from bench.variants import Variant

MB = 1024 * 1024


@dataclass
class Baseline:
    """The trivial app's run: the ceiling for this client on this machine."""

    phase: PhaseResult
    threads: int
    server: str = "waitress"  # what served it: stock waitress, or Proware's server module


@dataclass
class SizeResult:
    """Everything measured for one directory size."""

    plan: entra.Plan
    clients: int = 4  # concurrent clients of the loaded phases
    variant: Variant = field(default_factory=lambda: Variant(""))
    phases: list[PhaseResult] = field(default_factory=list)  # the loaded phases
    unloaded: PhaseResult | None = None  # one client, after the loaded phases
    # --repeat: the unloaded member changes again, each run once every server was idle.
    member_runs: list[PhaseResult] = field(default_factory=list)
    idle_wait: float = math.nan  # seconds the server took to go idle before it
    startup_empty: float = math.nan
    startup: float = math.nan  # on the final data, after a polite stop
    rss: int = 0  # after the run (every server process's, summed)
    rss_peak: int = 0  # VmHWM over the whole run (each process's peak, summed)
    rss_restarted: int = 0
    data_bytes: int = 0  # after the run, server still up
    data_bytes_stopped: int = 0
    data_files: dict[str, int] = field(default_factory=dict)
    database_bytes: int | None = None  # PostgreSQL's database, after the run
    stop_code: int | None = None
    totals: dict[str, int] = field(default_factory=dict)  # after restart, from the server
    expected_totals: dict[str, int] = field(default_factory=dict)
    cut: bool = False
    # What the server logged as slow (bench.slowlog); None: an earlier revision's server.
    slow: SlowRequests | None = None

    @property
    def requests(self) -> int:
        return sum(phase.requests for phase in self.phases)

    @property
    def seconds(self) -> float:
        return sum(phase.seconds for phase in self.phases)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Failed or wrong answers in every phase, the unloaded one included."""
        return sum(phase.errors for phase in self.all_phases())

    def all_phases(self) -> list[PhaseResult]:
        return self.phases + ([self.unloaded] if self.unloaded else []) + self.member_runs

    @property
    def server_cpu(self) -> float:
        """Server CPU seconds of the loaded phases (every server process)."""
        return sum(phase.server_cpu for phase in self.phases)

    @property
    def database_cpu(self) -> float | None:
        """PostgreSQL's CPU seconds during the loaded phases (None: no database)."""
        used = [phase.database_cpu for phase in self.phases if phase.database_cpu is not None]
        return sum(used) if used else None

    def add_one_p99s(self) -> list[float]:
        """The p99 (ms) of "add 1 member to big group" in each unloaded run, the first one
        (the unloaded phase) and every ``--repeat``."""
        runs = ([self.unloaded] if self.unloaded else []) + self.member_runs
        return [summarize(run.latencies.get(entra.ADD_ONE, []))["p99_ms"] for run in runs]

    def all_latencies(self) -> list[float]:
        """Every request's latency (seconds) in every phase, loaded and unloaded."""
        return [
            value
            for phase in self.all_phases()
            for values in phase.latencies.values()
            for value in values
        ]

    def p999(self) -> float:
        """The 99.9th percentile (ms) of every request's latency in the run."""
        return percentile(self.all_latencies(), 0.999) * 1000

    @property
    def totals_ok(self) -> bool:
        return bool(self.totals) and self.totals == self.expected_totals

    def latencies(self) -> dict[str, list[float]]:
        """Every latency of the loaded phases, by operation."""
        merged: dict[str, list[float]] = {}
        for phase in self.phases:
            for label, values in phase.latencies.items():
                merged.setdefault(label, []).extend(values)
        return merged

    def worst(self) -> tuple[float, str]:
        """The slowest request of the run (unloaded phase included), in ms, and its operation."""
        worst = (0.0, "-")
        for phase in self.all_phases():
            loaded = any(phase is each for each in self.phases)
            suffix = "" if loaded else f", {unloaded.MODE}"
            for label, values in phase.latencies.items():
                if values and max(values) * 1000 > worst[0]:
                    worst = (max(values) * 1000, label + suffix)
        return worst

    def phase(self, name: str) -> PhaseResult | None:
        return next((phase for phase in self.phases if phase.name == name), None)
