"""What one benchmark run measured: the ceiling's run and each directory size's.

Plain data, shared by the report (:mod:`bench.report`) and the targets (:mod:`bench.targets`),
so that neither needs the other's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench import entra, unloaded
from bench.client import PhaseResult

MB = 1024 * 1024


@dataclass
class Baseline:
    """The trivial app's run: the ceiling for this client on this machine."""

    phase: PhaseResult
    threads: int


@dataclass
class SizeResult:
    """Everything measured for one directory size."""

    plan: entra.Plan
    clients: int = 4  # concurrent clients of the loaded phases
    phases: list[PhaseResult] = field(default_factory=list)  # the loaded phases
    unloaded: PhaseResult | None = None  # one client, after the loaded phases
    idle_wait: float = math.nan  # seconds the server took to go idle before it
    startup_empty: float = math.nan
    startup: float = math.nan  # on the final data, after a polite stop
    rss: int = 0  # after the run
    rss_peak: int = 0  # VmHWM over the whole run
    rss_restarted: int = 0
    data_bytes: int = 0  # after the run, server still up
    data_bytes_stopped: int = 0
    data_files: dict[str, int] = field(default_factory=dict)
    stop_code: int | None = None
    totals: dict[str, int] = field(default_factory=dict)  # after restart, from the server
    expected_totals: dict[str, int] = field(default_factory=dict)
    cut: bool = False

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
        return self.phases + ([self.unloaded] if self.unloaded else [])

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
            suffix = f", {unloaded.MODE}" if phase is self.unloaded else ""
            for label, values in phase.latencies.items():
                if values and max(values) * 1000 > worst[0]:
                    worst = (max(values) * 1000, label + suffix)
        return worst

    def phase(self, name: str) -> PhaseResult | None:
        return next((phase for phase in self.phases if phase.name == name), None)
