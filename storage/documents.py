"""Small JSON documents that every process of one install reads and updates safely.

Tokens and the User Provisioning switch, control-panel accounts, single sign-on settings,
sign-outs, the setup link: each is one JSON object, read on many requests and changed
rarely. :class:`storage.controlfile.ControlFile` keeps one in a file of the data directory;
the PostgreSQL backend keeps each in a row. Both have this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")


class Unchanged(Exception):
    """Raised by an :meth:`SharedDocument.update` change that finds nothing to change, to
    leave the document unwritten; the caller of ``update`` catches it."""


class SharedDocument(Protocol):
    """A JSON object shared by every process; a missing one reads as ``{}``."""

    @property
    def path(self) -> Path | str:
        """Where it lives, for messages (a file, or the database row's name)."""
        ...

    def stamp(self) -> object:
        """What identifies the current content (None: there is none); cheap enough for
        every request. A change made by another process shows at once for a file, within
        a quarter of a second (``STAMP_TTL``) on PostgreSQL."""
        ...

    def read(self) -> dict:
        """A copy of the current content."""
        ...

    def derived(self, build: Callable[[dict], T]) -> T:
        """``build(content)``, built again only when the content changed; treat it as
        read-only, it is shared by every caller."""
        ...

    def update(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to the latest content and store it, excluding every other
        writer meanwhile; if ``change`` raises (:class:`Unchanged` when it has nothing to
        change), nothing is stored. Returns a copy."""
        ...
