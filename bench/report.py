"""The benchmark's report: per-size tables and JSON (the targets are in :mod:`bench.targets`,
what was measured in :mod:`bench.results`).

Each size reports its loaded phases (the concurrent clients: throughput, and latency with
queueing) and, apart, its unloaded phase (one client on an idle server: the cost of one
request). The loaded figures alone make the whole run's throughput.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench import entra, slowlog, unloaded
from bench.client import PhaseResult, summarize
from bench.results import MB, Baseline, SizeResult
from bench.targets import Verdict
from bench.variants import Variant

_BUSY_NEIGHBOURS = 0.2  # cores other processes kept busy, above which a run is noted as noisy


def phase_table(phases: list[PhaseResult], total_label: str | None = None) -> list[str]:
    """Requests, time, rate and CPU per request (server, client, and PostgreSQL's when a
    database served) for each phase."""
    database = any(phase.database_cpu is not None for phase in phases)
    width = max([28, *(len(phase.name) + 8 for phase in phases)])
    lines = [
        f"  {'phase':<{width}}{'requests':>9}{'seconds':>9}{'req/s':>9}"
        f"{'srv CPU/req':>13}{'cli CPU/req':>13}"
        + (f"{'db CPU/req':>13}" if database else "")
        + f"{'errors':>8}{'compactions':>13}"
    ]
    rows = [(phase.name + (" (cut)" if phase.cut else ""), [phase]) for phase in phases]
    if total_label and len(phases) > 1:
        rows.append((total_label, phases))
    for name, group in rows:
        requests = sum(p.requests for p in group)
        seconds = sum(p.seconds for p in group)
        rate = requests / seconds if seconds else 0.0
        per = 1000 / requests if requests else math.nan
        server = sum(p.server_cpu for p in group) * per
        client = sum(p.client_cpu for p in group) * per
        db = sum(p.database_cpu or 0.0 for p in group) * per
        compactions = _total_compactions(group)
        lines.append(
            f"  {name:<{width}}{requests:>9}{seconds:>9.2f}{rate:>9.0f}"
            f"{server:>10.2f} ms{client:>10.2f} ms"
            + (f"{db:>10.2f} ms" if database else "")
            + f"{sum(p.errors for p in group):>8}"
            f"{'-' if compactions is None else compactions:>13}"
        )
    return lines


def _total_compactions(phases: list[PhaseResult]) -> int | None:
    counts = [phase.compactions for phase in phases]
    return None if None in counts else sum(counts)  # type: ignore[arg-type]


def operation_table(latencies: dict[str, list[float]]) -> list[str]:
    lines = [f"  {'operation':<28}{'count':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for label, values in latencies.items():
        stats = summarize(values)
        lines.append(
            f"  {label:<28}{stats['count']:>9}{stats['p50_ms']:>9.2f}"
            f"{stats['p99_ms']:>9.2f}{stats['max_ms']:>9.1f}"
        )
    return lines


def size_report(size: SizeResult) -> list[str]:
    plan = size.plan
    small = plan.groups - plan.big_groups
    variant = f"{size.variant.describe()}; " if size.variant.label else ""
    lines = [
        "",
        f"== N = {plan.users:,} users, {plan.groups:,} groups ({plan.big_groups} of "
        f"{plan.big_group_size:,} members, {small:,} of {plan.small_group_size}; "
        f"member chunks of {plan.chunk}) ==",
        *([f"  {variant.rstrip('; ')}"] if variant else []),
        *phase_table(size.phases, "whole run"),
        "",
        f"  latency per operation, under load ({size.clients} clients):",
        *operation_table(size.latencies()),
        "",
    ]
    if size.unloaded is not None:
        lines += [
            f"  latency per operation, {unloaded.MODE}: one request at a time, once the server "
            f"was idle (after {size.idle_wait:.1f} s):",
            *phase_table([size.unloaded]),
            *operation_table(size.unloaded.latencies),
            _neighbours(size.unloaded),
            f"  the machine's speed before it: a fixed CPU loop took {_speed(size.unloaded)} ms "
            "in the client (same code, same machine: 90-163 ms here within minutes)",
            "",
        ]
    if size.member_runs:
        p99s = ", ".join(f"{p99:.2f}" for p99 in size.add_one_p99s())
        loops = ", ".join(_speed(run) for run in [size.unloaded, *size.member_runs] if run)
        lines += [
            f"  --repeat: the unloaded member changes again, {unloaded.MODE}, each once the "
            "servers were idle:",
            *phase_table(size.member_runs),
            f"  {entra.ADD_ONE} p99 in each unloaded run: {p99s} ms",
            f"  the machine's speed before each (a fixed CPU loop in the client): {loops} ms",
            "",
        ]
    worst_ms, worst_label = size.worst()
    files = ", ".join(f"{name} {nbytes / MB:.1f} MB" for name, nbytes in size.data_files.items())
    processes = size.variant.processes
    whose = (
        f"server RSS (all {processes} processes and their supervisor)"
        if processes > 1
        else "server RSS"
    )
    lines += [
        f"  max request latency: {worst_ms:.1f} ms ({worst_label}); p99.9 {size.p999():.1f} ms",
        *slowlog.report(size.slow),
        f"  {whose}: {size.rss / MB:.1f} MB after the run (peak {size.rss_peak / MB:.1f} MB), "
        f"{size.rss_restarted / MB:.1f} MB after restart",
        f"  data dir: {size.data_bytes / MB:.1f} MB running, {size.data_bytes_stopped / MB:.1f} MB "
        f"after a polite stop (exit {size.stop_code}): {files or '-'}",
    ]
    if size.database_bytes is not None:
        lines.append(f"  PostgreSQL database: {size.database_bytes / MB:.1f} MB after the run")
    lines += [
        f"  start-up (process start to /healthz): {size.startup_empty:.2f} s empty, "
        f"{size.startup:.2f} s on the final data",
        f"  after restart the server holds {_totals(size.totals)}; "
        f"acknowledged: {_totals(size.expected_totals)}"
        + ("" if size.totals_ok else "  <-- MISMATCH"),
    ]
    for phase in size.all_phases():
        lines += [f"  error sample: {sample}" for sample in phase.error_samples]
    return lines


def _neighbours(phase: PhaseResult) -> str:
    """How busy the rest of the machine was: its scheduling shows up in latency tails."""
    cores = phase.other_cpu / phase.seconds if phase.seconds else 0.0
    line = f"  other processes on the machine meanwhile: {cores:.2f} cores busy on average"
    if cores >= _BUSY_NEIGHBOURS:
        line += " - the tails above include waiting for them"
    return line


def _speed(phase: PhaseResult) -> str:
    """:attr:`PhaseResult.speed_loop_ms`, or "-" for a phase that did not measure it."""
    return "-" if phase.speed_loop_ms is None else f"{phase.speed_loop_ms:.0f}"


def _totals(totals: dict[str, int]) -> str:
    return ", ".join(f"{count:,} {kind}" for kind, count in totals.items()) or "-"


def baseline_report(runs: list[Baseline], ceiling: Baseline, clients: int) -> list[str]:
    """The trivial app's runs; the fastest (``ceiling``) is what the service is compared to."""
    lines = ["", f"== ceiling: trivial WSGI app on waitress, same client, {clients} clients =="]
    table = phase_table([run.phase for run in runs])
    lines.append(table[0])
    for run, row in zip(runs, table[1:], strict=True):
        lines.append(row + ("  <- the ceiling" if run is ceiling else ""))
    return lines


def to_json(
    sizes: list[SizeResult], baseline: Baseline | None, verdicts: list[Verdict], meta: dict
) -> dict:
    """The results as plain data (latency summaries, not every sample)."""

    def phase_data(phase: PhaseResult) -> dict:
        return {
            "name": phase.name,
            "requests": phase.requests,
            "seconds": phase.seconds,
            "req_per_s": phase.rate,
            "server_cpu_s": phase.server_cpu,
            "client_cpu_s": phase.client_cpu,
            "other_cpu_s": phase.other_cpu,
            "errors": phase.errors,
            "compactions": phase.compactions,
            "database_cpu_s": phase.database_cpu,
            "speed_loop_ms": phase.speed_loop_ms,
            "cut": phase.cut,
            "error_samples": phase.error_samples,
        }

    return {
        **meta,
        "baseline": None
        if baseline is None
        else {"threads": baseline.threads, **phase_data(baseline.phase)},
        "sizes": [
            {
                "plan": vars(size.plan),
                "variant": variant_data(size.variant),
                "phases": [phase_data(phase) for phase in size.phases],
                "whole_run": {
                    "requests": size.requests,
                    "seconds": size.seconds,
                    "req_per_s": size.rate,
                    "fraction_of_ceiling": size.rate / baseline.phase.rate
                    if baseline and baseline.phase.rate
                    else None,
                },
                "operations": {
                    label: summarize(values) for label, values in size.latencies().items()
                },
                "clients": size.clients,
                "unloaded": None
                if size.unloaded is None
                else {
                    **phase_data(size.unloaded),
                    "idle_wait_s": size.idle_wait,
                    "operations": {
                        label: summarize(values)
                        for label, values in size.unloaded.latencies.items()
                    },
                },
                "member_runs": [
                    {
                        **phase_data(run),
                        "operations": {
                            label: summarize(values) for label, values in run.latencies.items()
                        },
                    }
                    for run in size.member_runs
                ],
                "add_one_p99_ms_per_run": size.add_one_p99s(),
                "server_cpu_s": size.server_cpu,
                "database_cpu_s": size.database_cpu,
                "max_latency_ms": size.worst()[0],
                "max_latency_operation": size.worst()[1],
                "p99_9_latency_ms": size.p999(),
                "slow_requests": None if size.slow is None else size.slow.to_json(),
                "rss_bytes": size.rss,
                "rss_peak_bytes": size.rss_peak,
                "rss_after_restart_bytes": size.rss_restarted,
                "data_bytes": size.data_bytes,
                "data_bytes_after_stop": size.data_bytes_stopped,
                "data_files": size.data_files,
                "database_bytes": size.database_bytes,
                "stop_exit_code": size.stop_code,
                "startup_empty_s": size.startup_empty,
                "startup_s": size.startup,
                "totals_after_restart": size.totals,
                "acknowledged_totals": size.expected_totals,
                "cut": size.cut,
            }
            for size in sizes
        ],
        "targets": [vars(v) for v in verdicts],
    }


def variant_data(variant: Variant) -> dict:
    """A variant as plain data (its checkout's path is temporary: not kept)."""
    return {
        "label": variant.label,
        "backend": variant.backend,
        "processes": variant.processes,
        "revision": variant.revision,
    }


def write_json(directory: Path, stamp: str, data: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    # NaN is not JSON: unmeasured values become null.
    path.write_text(json.dumps(_no_nan(data), indent=2) + "\n", encoding="utf-8")
    return path


def _no_nan(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_no_nan(item) for item in value]
    return value
