"""`make bench` keeps working: its quick run drives the real service through every phase.

Nothing here asserts a time: the benchmark reports the issue's targets, the tests do not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import REPO

pytestmark = pytest.mark.slow

# The phases (issue 3, "make bench"), as the bench names them.
PHASES = [
    "initial cycle",
    "groups: match and create",
    "groups: add members",
    "groups: add 1 member",
    "incremental cycle",
    "matching lookups",
]
REPORTED = [
    "trivial app",  # the ceiling
    "whole run",
    "max request latency",
    "server RSS",
    "data dir",
    "start-up",
    "== targets (issue 3) ==",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    results = tmp_path_factory.mktemp("bench-results")
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results-dir", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (path,) = Path(results).glob("*.json")
    return run.stdout, json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("phase", PHASES)
def test_quick_run_reports_every_phase(quick_run: tuple[str, dict], phase: str) -> None:
    output, results = quick_run
    assert phase in output
    assert phase in [p["name"] for p in results["sizes"][0]["phases"]]


@pytest.mark.parametrize("figure", REPORTED)
def test_quick_run_reports_ceiling_memory_startup_and_targets(
    quick_run: tuple[str, dict], figure: str
) -> None:
    assert figure in quick_run[0]


def test_quick_run_got_every_answer_right_and_kept_every_create(quick_run) -> None:
    """No request failed or answered wrong, and the restarted server holds every user."""
    size = quick_run[1]["sizes"][0]
    assert [phase["errors"] for phase in size["phases"]] == [0] * len(PHASES)
    assert size["totals_after_restart"] == size["acknowledged_totals"]
    assert size["acknowledged_totals"]["users"] == size["plan"]["users"]
