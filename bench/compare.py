"""Runs side by side: one column per variant at one size (before/after, or one per store).

``--compare REV`` prints a before/after table per size with a change column; ``--backends``
and ``--processes`` print the same rows with a column per store and process count (issue
12's table, with :mod:`bench.scaling`'s curve and targets). :func:`compare_targets` adds
issue 13's "start-up and RSS no worse than today" when a revision was compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bench import entra, unloaded
from bench.results import MB, Baseline, SizeResult
from bench.targets import Verdict, p99_ms, per_request_ms

# "No worse than before", with room for run-to-run noise: 10 %, or an absolute amount where
# that is more (start-up, mostly the interpreter's imports, moved 0.46 -> 0.52 s between runs
# on this shared machine; RSS moves by a few MB).
NO_WORSE_MARGIN = 0.10
NO_WORSE_STARTUP_S = 0.10
NO_WORSE_RSS_MB = 5.0

Row = tuple[str, Callable[[SizeResult], float], str]  # label, figure, format ("rate", "ms"...)


def _rows(ceiling: Baseline | None, proware_server: Baseline | None) -> list[Row]:
    lookups = (entra.MATCH_USER_HIT, entra.MATCH_GROUP_HIT)
    rows: list[Row] = [("whole run, req/s", lambda size: size.rate, "rate")]
    if ceiling is not None and ceiling.phase.rate:
        rate = ceiling.phase.rate
        rows.append(("  % of the ceiling (trivial app)", lambda size: size.rate / rate, "share"))
    if proware_server is not None and proware_server.phase.rate:
        own = proware_server.phase.rate
        rows.append(("  % of trivial app, Proware's server", lambda size: size.rate / own, "share"))
    rows += [
        (
            "server CPU/req, whole run",
            lambda size: per_request_ms(size.server_cpu, size.requests),
            "ms",
        ),
        (
            "server CPU/req, 1 client (unloaded)",
            lambda size: (
                per_request_ms(size.unloaded.server_cpu, size.unloaded.requests)
                if size.unloaded
                else math.nan
            ),
            "ms",
        ),
        (
            "PostgreSQL CPU/req, whole run",
            lambda size: (
                per_request_ms(size.database_cpu, size.requests)
                if size.database_cpu is not None
                else math.nan
            ),
            "ms",
        ),
        (
            "matching lookup p99, unloaded",
            lambda size: p99_ms(size.unloaded.latencies if size.unloaded else {}, *lookups),
            "ms",
        ),
        ("matching lookup p99, under load", lambda size: p99_ms(size.latencies(), *lookups), "ms"),
        (
            f"{entra.ADD_ONE} p99, unloaded (worst run)",
            lambda size: max(size.add_one_p99s(), default=math.nan),
            "ms",
        ),
        ("max request latency", lambda size: size.worst()[0], "ms"),
        ("p99.9 request latency", lambda size: size.p999(), "ms"),
        ("start-up, empty", lambda size: size.startup_empty, "s"),
        ("start-up on the final data", lambda size: size.startup, "s"),
        ("server RSS peak", lambda size: size.rss_peak / MB, "MB"),
        ("errors", lambda size: size.errors, "count"),
    ]
    return rows


def _cell(value: float, kind: str) -> str:
    if math.isnan(value):
        return "-"
    return {
        "rate": f"{value:,.0f}",
        "share": f"{value:.1%}",
        "ms": f"{value:.2f} ms",
        "s": f"{value:.2f} s",
        "MB": f"{value:.1f} MB",
        "count": f"{value:.0f}",
    }[kind]


def _change(before: float, after: float, kind: str) -> str:
    if math.isnan(before) or math.isnan(after) or kind == "count":
        return ""
    if kind == "share":
        return f"{(after - before) * 100:+.1f} pt"
    if before == 0:
        return ""
    return f"{after / before:.2f}x"


def side_by_side(
    runs: list[SizeResult],
    ceiling: Baseline | None,
    proware_server: Baseline | None,
    title: str,
) -> list[str]:
    """One row per figure, one column per run (all of one size); with two runs, a column
    with the second's change against the first (x: ratio, pt: percentage points)."""
    if not runs:
        return []
    rows = _rows(ceiling, proware_server)
    if all(run.database_cpu is None for run in runs):
        rows = [row for row in rows if not row[0].startswith("PostgreSQL")]
    width = max(len(label) for label, _, _ in rows) + 2
    column = max(16, *(len(run.variant.label) + 2 for run in runs))
    pair = len(runs) == 2
    header = "".join(f"{run.variant.label or 'run':>{column}}" for run in runs)
    lines = ["", title, f"  {'':<{width}}{header}" + (f"{'change':>12}" if pair else "")]
    for label, figure, kind in rows:
        values = [float(figure(run)) for run in runs]
        cells = "".join(f"{_cell(value, kind):>{column}}" for value in values)
        change = f"{_change(values[0], values[1], kind):>12}" if pair else ""
        lines.append(f"  {label:<{width}}{cells}{change}")
    p99s = ["/".join(f"{p99:.2f}" for p99 in run.add_one_p99s()) or "-" for run in runs]
    if any(len(run.add_one_p99s()) > 1 for run in runs):
        lines.append(f"  {entra.ADD_ONE} p99 of each unloaded run (ms):")
        lines += [
            f"    {run.variant.label or 'run'}: {text}"
            for run, text in zip(runs, p99s, strict=True)
        ]
    lines += [f"  {run.variant.describe()}" for run in runs]
    lines.append(
        f"  CPU/req: every server process's CPU (and PostgreSQL's apart) per request; "
        f"unloaded: {unloaded.MODE}."
    )
    return lines


def compare_targets(before: SizeResult, after: SizeResult) -> list[Verdict]:
    """Issue 13's "start-up and RSS no worse than today": after against before, one size."""
    label, n = after.variant.label, after.plan.users
    verdicts = []
    for target, old, new, unit, slack in (
        (
            "start-up on the final data no worse than before",
            before.startup,
            after.startup,
            "s",
            NO_WORSE_STARTUP_S,
        ),
        (
            "server RSS peak no worse than before",
            before.rss_peak / MB,
            after.rss_peak / MB,
            "MB",
            NO_WORSE_RSS_MB,
        ),
    ):
        margin = f"(+{NO_WORSE_MARGIN:.0%} or +{slack:g} {unit} for noise)"
        measured = f"{old:.2f} -> {new:.2f} s" if unit == "s" else f"{old:.0f} -> {new:.0f} MB"
        if math.isnan(old) or math.isnan(new) or not old:
            verdict = "n/a"
        else:
            allowed = max(old * (1 + NO_WORSE_MARGIN), old + slack)
            verdict = "PASS" if new <= allowed else "FAIL"
        if before.cut or after.cut:
            verdict += " (cut short)"
        verdicts.append(Verdict(f"{target} {margin}", "all", n, measured, verdict, "13", label))
    return verdicts
