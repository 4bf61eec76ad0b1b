"""Small JSON documents that every process of one install reads and updates safely.

Tokens and the User Provisioning switch, control-panel accounts, single sign-on settings,
sign-outs, the setup link: each is one JSON object, read on many requests and changed
rarely. :class:`storage.controlfile.ControlFile` keeps one in a file of the data directory;
the PostgreSQL backend keeps each in a row. Both have this interface.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Protocol, TypeVar

from storage.errors import DamagedDocument
from storage.shapes import DocumentShape

T = TypeVar("T")

log = logging.getLogger("proware.storage")

# What to do about a document that cannot be used (most likely edited by hand).
REPAIR = "; nothing was changed: repair it by hand (it is JSON)"


class Unchanged(Exception):
    """Raised by an :meth:`SharedDocument.update` change that finds nothing to change, to
    leave the document unwritten; the caller of ``update`` catches it."""


class SharedDocument(Protocol):
    """A JSON object shared by every process; a missing one reads as ``{}``."""

    @property
    def path(self) -> Path | str:
        """Where it lives, for messages (a file, or the database row's name)."""
        ...

    def declare(self, shape: DocumentShape) -> None:
        """The layout every reader of this document relies on (its owner's, declared when
        the owner is made): from now on a version that does not have it is refused as
        damaged, like one that is not JSON, so readers never meet a wrong shape.

        :raises ValueError: another layout was declared for it already.
        """
        ...

    def stamp(self) -> object:
        """What identifies the current content (None: there is none); cheap enough for
        every request. A change made by another process shows at once for a file, within
        a quarter of a second (``STAMP_TTL``) on PostgreSQL."""
        ...

    def read(self) -> dict:
        """A copy of the current content.

        :raises DamagedDocument: it is not a JSON object of the declared shape.
        """
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


class DocumentGuard:
    """What a shared document refuses to use: a version that is not an object of the shape
    its owner declared (:meth:`declare`), and the version last found damaged, which is
    refused again without being read or checked, and logged only the first time.

    :param name: the document's name for clients (``control.json``); the detail of a
        :class:`DamagedDocument` names nothing more.
    """

    def __init__(self, path: Path | str, name: str) -> None:
        self.path = path
        self.name = name
        self._shape: DocumentShape | None = None
        self._damage: tuple[Hashable, str] | None = None
        self._lock = threading.Lock()

    def declare(self, shape: DocumentShape) -> bool:
        """Check every version against ``shape`` from now on (:meth:`SharedDocument.declare`).

        :returns: whether it is newly declared: what was read before was not checked.
        :raises ValueError: another layout was declared already (two owners disagree).
        """
        if self._shape is not None and self._shape is not shape:
            raise ValueError(f"{self.path}: another layout was declared for it already")
        first = self._shape is None
        self._shape = shape
        return first

    def refuse_if_known(self, stamp: Hashable) -> bool:
        """Raise if version ``stamp`` is the damaged one; else whether some damage was
        known (the caller passes it on to :meth:`check`).

        :raises DamagedDocument: it is (a new exception each time: raising one object
            again would grow its traceback).
        """
        with self._lock:
            damage = self._damage
        if damage is not None and damage[0] == stamp:
            raise DamagedDocument(self.path, damage[1], name=self.name)
        return damage is not None

    def check(self, stamp: Hashable, content: object, was_damaged: bool) -> None:
        """Refuse version ``stamp`` unless ``content`` is an object of the declared shape;
        a good version read after a damaged one is a repair, logged once.

        :raises DamagedDocument: it is not.
        """
        problem = _problem(content, self._shape)
        if problem is not None:
            raise self.found(stamp, f"{self.path}{problem}{REPAIR}")
        if was_damaged:
            with self._lock:
                damage, self._damage = self._damage, None
            if damage is not None:
                log.info("%s can be read again and is used again", self.path)

    def found(self, stamp: Hashable, problem: str) -> DamagedDocument:
        """Remember that version ``stamp`` is damaged; the first refusal of it says so."""
        with self._lock:
            first = self._damage is None or self._damage[0] != stamp
            self._damage = (stamp, problem)
        return DamagedDocument(self.path, problem, name=self.name, first_report=first)


def _problem(content: object, shape: DocumentShape | None) -> str | None:
    """What makes ``content`` unusable, for a message after the document's name: it is not
    an object, or not of ``shape``; None when it can be used."""
    if not isinstance(content, dict):
        return f" holds a JSON {type(content).__name__}, not an object"
    found = shape.problem(content) if shape is not None else None
    return None if found is None else f" is valid JSON but not what Proware reads: {found}"
