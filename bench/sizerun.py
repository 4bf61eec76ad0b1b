"""One variant at one directory size: a fresh service, its phases, memory, a timed restart.

:class:`SizeRun` is driven in steps so that :mod:`bench.run` can alternate several variants
(before and after, or the embedded store and PostgreSQL) at one size: each variant's loaded
phases run alone, one variant after the other, and the unloaded runs (``--repeat``) then take
turns, so that whatever else the machine does meanwhile hits every variant alike.

1. :meth:`start`: a fresh data directory (and, on PostgreSQL, a fresh database),
   ``app.py token create`` and ``provisioning enable``, then ``app.py serve``, timed.
2. :meth:`run_loaded`: the loaded phases of :mod:`bench.entra` from ``clients`` keep-alive
   connections.
3. :meth:`run_unloaded`: once the server is idle, one client (:mod:`bench.unloaded`): the whole
   unloaded phase first, then only its member changes for each further run.
4. :meth:`finish`: memory and data size, a polite stop, the requests the server logged as
   slow (:mod:`bench.slowlog`), a timed restart on the final data and a check that the
   restarted server holds every user and group it acknowledged.

Only ``token create``, ``provisioning enable`` and a bare ``serve`` are used against an earlier
revision (:attr:`Variant.earlier`): it may predate any newer flag.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import entra, proctree, slowlog, unloaded
from bench.client import Connection, PhaseResult, Task, Worker, drive
from bench.database import BenchDatabase
from bench.results import SizeResult
from bench.variants import POSTGRESQL, Variant
from server.config import chosen_threads
from storage.journal.format import list_segments
from tests.serverproc import REPO, ScimConnection, ServerProcess

Say = Callable[..., None]


class SizeRun:
    """One variant at one size (see the module docstring for the steps)."""

    def __init__(
        self,
        plan: entra.Plan,
        variant: Variant,
        *,
        clients: int,
        threads: int,
        database: BenchDatabase | None,
        say: Say,
        slow_ms: int = slowlog.THRESHOLD_MS,
    ) -> None:
        if variant.backend == POSTGRESQL and database is None:
            raise ValueError("a PostgreSQL variant needs the bench's database")
        self.plan = plan
        self.variant = variant
        self.clients = clients
        self.threads = threads
        self.database = database if variant.backend == POSTGRESQL else None
        self.say = say
        self.slow_ms = slow_ms
        self.size = SizeResult(plan, clients=clients, variant=variant)
        self._root = Path(tempfile.mkdtemp(prefix="proware-bench-"))
        self._dsn = ""
        self.server: ServerProcess | None = None
        self.workload: entra.Workload | None = None
        self.token = ""
        self._workers: list[Worker] = []

    @property
    def tag(self) -> str:
        """How its progress lines start: ``[10,000]`` or ``[10,000, before]``."""
        label = f", {self.variant.label}" if self.variant.label else ""
        return f"[{self.plan.users:,}{label}]"

    # -- the steps -----------------------------------------------------------------------

    def start(self, deadline: float | None) -> None:
        """A fresh store, a token, provisioning on, and the server started (timed)."""
        if self.database is not None:
            self._dsn = self.database.create()
        self.server = ServerProcess(
            self._root / "service",
            # Resolved here, as the server would: a tree from before 0 meant "as served"
            # (bench.compare runs one) refuses 0.
            threads=chosen_threads(self.threads, self.variant.backend),
            access_log=False,
            extra_config="" if self.variant.earlier else slowlog.config(self.slow_ms),
            dsn=self._dsn,
            processes=self.variant.processes,
            source=self.variant.source or REPO,
        )
        self.token = self.server.create_token("bench")
        self.server.enable_provisioning()
        self.size.startup_empty = self.server.start(timeout=120)
        self.workload = entra.Workload(self.plan, self.server.port, self.token, self.clients)
        self._workers = [
            Worker(Connection(self.server.port), deadline) for _ in range(self.clients)
        ]

    def run_loaded(self) -> None:
        """The loaded phases, from every client at once; stops at the deadline."""
        assert self.workload is not None
        for name, build in self.workload.phases():
            phase = self._drive(name, build(), self._workers)
            self.workload.absorb(self._workers)
            self.size.phases.append(phase)
            self.say(
                f"  {self.tag} {name}: {phase.requests} requests in {phase.seconds:.1f} s "
                f"({phase.rate:.0f}/s), {phase.errors} errors{_cut(phase)}"
            )
            if phase.cut:
                self.size.cut = True
                return

    def run_unloaded(self, run: int, idle_wait: float) -> None:
        """Unloaded run ``run`` (1: the whole unloaded phase; 2...: its member changes), from
        one client on a connection already open; ``idle_wait``: how long the caller waited for
        the servers to go idle before it."""
        assert self.workload is not None
        if self.size.cut:
            return
        alone = self._workers[:1]
        if run == 1:
            task, name = unloaded.unloaded_task(self.workload), unloaded.UNLOADED
            self.size.idle_wait = idle_wait
        else:
            task, name = unloaded.member_changes_task(self.workload, run), unloaded.repeat_name(run)
        speed = unloaded.machine_speed_ms()
        phase = self._drive(name, [task], alone)
        phase.speed_loop_ms = speed
        if run == 1:
            self.size.unloaded = phase
        else:
            self.size.member_runs.append(phase)
        self.size.cut = phase.cut
        p99 = self.size.add_one_p99s()[-1]
        self.say(
            f"  {self.tag} {name}: {phase.requests} requests in {phase.seconds:.1f} s, "
            f"{phase.errors} errors, {entra.ADD_ONE} p99 {p99:.2f} ms (servers idle after "
            f"{idle_wait:.1f} s; speed loop {speed:.0f} ms){_cut(phase)}"
        )

    def finish(self) -> SizeResult:
        """Memory, data size, a polite stop, a timed restart, the totals; then stop."""
        server, size = self.server, self.size
        assert server is not None and self.workload is not None
        for worker in self._workers:
            worker.connection.close()
        memory = proctree.memory(proctree.session_pids(server.pid))
        size.rss, size.rss_peak = memory["VmRSS"], memory["VmHWM"]
        size.data_bytes = server.data_bytes()
        if self._dsn:
            size.database_bytes = BenchDatabase.size_bytes(self._dsn)
        size.stop_code = server.stop(timeout=120)
        if not self.variant.earlier:
            size.slow = slowlog.read(server.log_path, self.slow_ms)
        size.data_bytes_stopped = server.data_bytes()
        size.data_files = {
            str(path.relative_to(server.data_dir)): path.stat().st_size
            for path in sorted(server.data_dir.rglob("*"))
            if path.is_file()
        }
        size.startup = server.start(timeout=300)
        size.rss_restarted = proctree.memory(proctree.session_pids(server.pid))["VmRSS"]
        size.expected_totals = {
            "users": sum(1 for id in self.workload.user_ids if id),
            "groups": sum(1 for id in self.workload.group_ids if id),
        }
        size.totals = _totals(server.connect(self.token))
        server.stop(timeout=120)
        return size

    def close(self) -> None:
        """Stop the server if it still runs, and remove the run's files."""
        for worker in self._workers:
            worker.connection.close()
        if self.server is not None:
            self.server.stop(timeout=120)
        shutil.rmtree(self._root, ignore_errors=True)

    # -- measuring -----------------------------------------------------------------------

    def server_cpu_seconds(self) -> float:
        """CPU time of every server process so far (0 when it is not running)."""
        if self.server is None or self.server.process is None:
            return 0.0
        return proctree.session_cpu_seconds(self.server.pid)

    def _drive(self, name: str, tasks: list[Task], workers: list[Worker]) -> PhaseResult:
        """:func:`drive` one phase, counting the compactions it started (embedded store)."""
        assert self.server is not None
        data_dir = self.server.data_dir
        before = _generation(data_dir)
        phase = drive(
            name,
            tasks,
            workers,
            self.server_cpu_seconds,
            database_cpu=self.database.cpu_seconds if self.database else None,
        )
        if self.database is None:
            phase.compactions = _generation(data_dir) - before
        return phase


def _generation(data_dir: Path) -> int:
    """The journal's current generation: each compaction starts the next one."""
    return max(list_segments(data_dir), default=0)


def _totals(connection: ScimConnection) -> dict[str, int]:
    """How many users and groups the server holds (plain listings, one resource each);
    a kind it would not list is left out (the totals then mismatch)."""
    totals = {}
    for kind, target in (
        ("users", "/Users?count=1"),
        ("groups", "/Groups?count=1&excludedAttributes=members"),
    ):
        reply = connection.get(target)
        if reply.status == 200 and isinstance(reply.body, dict) and "totalResults" in reply.body:
            totals[kind] = reply.body["totalResults"]
    connection.close()
    return totals


def _cut(phase: PhaseResult) -> str:
    return " - time limit reached, phase cut" if phase.cut else ""
