"""Which servers one benchmark invocation measures side by side, at every size.

A variant is one way to serve: a checkout (the working tree, or the revision ``--compare``
names), a store (``tinydb``, the embedded journal store, or ``postgresql``) and a number of
server processes. Plain ``make bench`` has one variant. ``--compare REV`` has two, "before"
(REV) and "after" (the working tree); ``--backends tinydb,postgresql --processes 1,2,4``
has the embedded store with one process, then PostgreSQL with each count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINYDB = "tinydb"
POSTGRESQL = "postgresql"
BACKENDS = (TINYDB, POSTGRESQL)
WORKING_TREE = "working tree"


@dataclass(frozen=True)
class Variant:
    """One way to serve, measured at every size."""

    label: str  # names its column and its runs: "before", "after", "postgresql x2"
    backend: str = TINYDB
    processes: int = 1
    source: Path | None = None  # the checkout whose app.py runs (None: the working tree)
    revision: str = WORKING_TREE  # "<short hash> <subject>" for an earlier revision

    @property
    def earlier(self) -> bool:
        """An earlier revision: only ``token create``, ``provisioning enable`` and ``serve``
        (without options) may be used against it, it may predate any newer flag."""
        return self.source is not None

    def describe(self) -> str:
        processes = f"{self.processes} process" + ("es" if self.processes != 1 else "")
        return f"{self.label}: {self.revision}, {self.backend}, {processes}"


def backend_variants(backends: list[str], processes: list[int]) -> list[Variant]:
    """The embedded store with one process, then PostgreSQL with each count, as asked.

    :raises ValueError: more than one process with only the embedded store.
    """
    if POSTGRESQL not in backends and processes != [1]:
        raise ValueError(
            "--processes above 1 needs PostgreSQL (--backend postgresql): the embedded store "
            "belongs to one process"
        )
    variants = []
    for backend in backends:
        if backend == TINYDB:
            variants.append(Variant(TINYDB if len(backends) > 1 else "", TINYDB, 1))
        else:
            for count in processes:
                label = f"{POSTGRESQL} x{count}" if len(backends) > 1 or len(processes) > 1 else ""
                variants.append(Variant(label, POSTGRESQL, count))
    return variants


def compare_variants(backend: str, source: Path, revision: str) -> list[Variant]:
    """ "before" (the earlier revision) then "after" (the working tree), one process each."""
    return [
        Variant("before", backend, 1, source, revision),
        Variant("after", backend, 1),
    ]
