"""CPU time and memory of a whole group of processes, read from ``/proc`` (Linux).

The server may run as several processes (``serve --processes N``: a supervisor and its
workers), and PostgreSQL always does (the postmaster, one backend per connection, and its
background workers, under the ``postgres`` user). The CPU cost of a request is what all of
them spent, so each is summed over its group:

- the server: every process whose session id is the server's pid (``ServerProcess`` starts
  it with ``start_new_session``, and its workers inherit the session);
- PostgreSQL: the postmaster and every process below it.

A process's own CPU time (``utime + stime``) plus what its ended and reaped children used
(``cutime + cstime``) counts each process once: a live child's time is only in its own
figures, a reaped one's only in its parent's. So a worker or a backend that ends during a
phase stays in the sum.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessStat:
    """What the benchmark reads from one ``/proc/<pid>/stat``."""

    pid: int
    parent: int
    session: int
    cpu_seconds: float  # its own and its reaped children's, user and system


def read_stat(pid: int) -> ProcessStat | None:
    """The stat line of ``pid``, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses; fields start after its ")".
    fields = text.rpartition(")")[2].split()
    ticks = sum(int(fields[k]) for k in (11, 12, 13, 14))  # utime stime cutime cstime
    return ProcessStat(pid, int(fields[1]), int(fields[3]), ticks / _TICKS)


def all_processes() -> Iterator[ProcessStat]:
    """Every process on the machine that is still there when read."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                yield stat


def session_pids(session: int) -> list[int]:
    """The processes of session ``session`` (a leader's pid), leader first.

    Not by pid alone: pids wrap (``kernel.pid_max`` is 32768 on many machines), and a child
    forked after the wrap has a smaller pid than its leader.
    """
    pids = sorted(stat.pid for stat in all_processes() if stat.session == session)
    return sorted(pids, key=lambda pid: pid != session)


def session_cpu_seconds(session: int) -> float:
    """CPU seconds used by every process of session ``session`` and their reaped children."""
    return sum(stat.cpu_seconds for stat in all_processes() if stat.session == session)


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used by ``root``, every process below it, and their reaped children."""
    stats = list(all_processes())
    children: dict[int, list[ProcessStat]] = {}
    for stat in stats:
        children.setdefault(stat.parent, []).append(stat)
    total, todo = 0.0, [stat for stat in stats if stat.pid == root]
    while todo:
        stat = todo.pop()
        total += stat.cpu_seconds
        todo.extend(children.get(stat.pid, []))
    return total


def memory(pids: list[int]) -> dict[str, int]:
    """Resident memory of ``pids`` summed, now (VmRSS) and each one's peak (VmHWM), in bytes.

    The sum of peaks bounds the group's peak from above: the processes need not have peaked
    at the same moment. Pages shared after a fork count once per process, as ``ps`` shows.
    """
    totals = {"VmRSS": 0, "VmHWM": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    name, _, value = line.partition(":")
                    if name in totals:
                        totals[name] += int(value.split()[0]) * 1024  # reported in kB
        except (FileNotFoundError, ProcessLookupError):
            continue
    return totals


def postmaster_pid(data_dir: Path) -> int:
    """The pid of the PostgreSQL server of ``data_dir`` (first line of ``postmaster.pid``)."""
    return int((data_dir / "postmaster.pid").read_text(encoding="ascii").splitlines()[0])
