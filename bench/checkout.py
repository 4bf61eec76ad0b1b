"""An earlier revision of the repository, checked out beside the working tree for ``--compare``.

:func:`worktree` adds a detached ``git worktree`` of the revision in a temporary directory
and removes it afterwards (also when the run fails), so that the service can be started from
it (``ServerProcess(source=...)``) while the working tree stays as it is. The checkout shares
the working tree's virtual environment: a revision that needs other dependencies cannot be
compared this way.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class RevisionError(Exception):
    """The revision does not name a commit of this repository."""


@dataclass(frozen=True)
class Revision:
    """A commit checked out at ``path``."""

    name: str  # as given: HEAD~3, a tag, a hash
    commit: str  # the full hash
    subject: str  # its first line
    path: Path

    @property
    def short(self) -> str:
        return self.commit[:7]


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RevisionError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def resolve(name: str) -> str:
    """The full hash of the commit ``name`` names.

    :raises RevisionError: it names no commit.
    """
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    except RevisionError:
        raise RevisionError(f"{name!r} is not a commit of {REPO}") from None


@contextmanager
def worktree(name: str) -> Iterator[Revision]:
    """Check out revision ``name`` into a temporary worktree for the duration of the block.

    :raises RevisionError: ``name`` names no commit, or git cannot add the worktree.
    """
    commit = resolve(name)
    subject = _git("log", "-1", "--format=%s", commit)
    parent = Path(tempfile.mkdtemp(prefix="proware-bench-rev-"))
    path = parent / commit[:12]
    try:
        _git("worktree", "add", "--detach", "--quiet", str(path), commit)
        yield Revision(name, commit, subject, path)
    finally:
        if path.exists():
            try:
                _git("worktree", "remove", "--force", str(path))
            except RevisionError:
                pass  # removed below; prune forgets it
        shutil.rmtree(parent, ignore_errors=True)
        try:
            _git("worktree", "prune")
        except RevisionError:
            pass
