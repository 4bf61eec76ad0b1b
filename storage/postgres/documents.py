"""Small JSON documents every process shares, one row of ``documents`` each; shared secrets.

:class:`PostgresDocument` is a :class:`storage.documents.SharedDocument`, as
:class:`storage.controlfile.ControlFile` is for a file: read on many requests (tokens, the
User Provisioning switch), changed rarely. Where the file compares an ``os.stat``, a
document compares its row's ``version``, and remembers it for :data:`STAMP_TTL` seconds: so
a request costs a query at most four times a second per document, and a change made by
another process (a revoked token, provisioning turned off) shows within a quarter second.
Updates lock the row, so concurrent updates from any process apply one after the other.
A row that is not an object of the shape its owner declared (a hand edit) is refused as
damaged, as a file is (:class:`storage.controlfile.ControlFile`): checked once a version.

:func:`shared_secret` creates a random key once and gives every process the same one.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from storage.documents import DocumentGuard
from storage.postgres.connection import Database, HasDatabase, database_of, jsonb
from storage.postgres.reads import fetch, rows
from storage.shapes import DocumentShape
from storage.values import clone

T = TypeVar("T")

STAMP_TTL = 0.25  # seconds a document's version is trusted without asking again
# A secret's length: as storage.backend's for the embedded backend (not imported from there,
# which imports this package).
SECRET_BYTES = 32

VERSION = "SELECT version FROM documents WHERE name = %s"
READ = "SELECT version, body FROM documents WHERE name = %s"
# The row to lock must exist: create it empty first (kept only if the update commits).
ENSURE = (
    "INSERT INTO documents (name, body, version) VALUES (%s, '{}', 0) ON CONFLICT (name) DO NOTHING"
)
LOCK = "SELECT version, body FROM documents WHERE name = %s FOR UPDATE"
WRITE = "UPDATE documents SET body = %s, version = version + 1 WHERE name = %s RETURNING version"
INSERT_SECRET = "INSERT INTO secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
READ_SECRET = "SELECT value FROM secrets WHERE name = %s"


class PostgresDocument:
    """A JSON object in a row of ``documents``; a missing row reads as ``{}``.

    :param database: the :class:`Database`, or a repository or backend holding one.
    :param name: the row's name (``control.json``, ``admins.json``, ...).
    :param monotonic: the clock that times :data:`STAMP_TTL`; inject one in tests.
    """

    def __init__(
        self,
        database: Database | HasDatabase,
        name: str,
        *,
        ttl: float = STAMP_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database_of(database)
        self.name = name
        self.path = f"PostgreSQL document {name!r}"  # for messages, as a file's path is
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()  # guards the caches, never held during a query
        self._checked: tuple[float, int | None] | None = None  # (when, version) last seen
        self._cache: tuple[int, dict] | None = None  # (version, content) last read
        # build function -> (version, what it built): see derived().
        self._derived: dict[Callable[[dict], Any], tuple[int | None, Any]] = {}
        self._guard = DocumentGuard(self.path, name)

    def declare(self, shape: DocumentShape) -> None:
        """Refuse every version not of ``shape`` from now on (:class:`SharedDocument`)."""
        with self._lock:
            if self._guard.declare(shape):  # what was read before was not checked against it
                self._cache = None
                self._derived.clear()

    def stamp(self) -> int | None:
        """The row's version (None if there is no row), at most :data:`STAMP_TTL` old."""
        now = self._monotonic()
        with self._lock:
            if self._checked is not None and now - self._checked[0] < self._ttl:
                return self._checked[1]
        with self.database.connection() as connection:
            version = fetch(connection, VERSION, (self.name,))
        with self._lock:
            self._checked = (now, version)
        return version

    def read(self) -> dict:
        """A copy of the content, read from the database only when its version changed.

        :raises DamagedDocument: it is not a JSON object of the declared shape.
        """
        version = self.stamp()
        if version is None:
            return {}
        with self._lock:
            if self._cache is not None and self._cache[0] == version:
                return clone(self._cache[1])
        was_damaged = self._guard.refuse_if_known(version)
        with self.database.connection() as connection:
            row = connection.execute(READ, (self.name,)).fetchone()
        if row is None:  # deleted since the stamp (by hand: Proware never deletes one)
            return {}
        self._guard.check(row[0], row[1], was_damaged)
        self._remember(row[0], row[1])
        return clone(row[1])

    def derived(self, build: Callable[[dict], T]) -> T:
        """``build(content)``, built again only when the version changed.

        For state read on every request (the token index, the provisioning switch), which
        :meth:`read` would copy each time. What ``build`` returns is shared by every caller
        until the document changes, so treat it as read-only.
        """
        version = self.stamp()
        with self._lock:
            known = self._derived.get(build)
            if known is not None and known[0] == version:
                return known[1]
        value = build(self.read() if version is not None else {})
        with self._lock:
            self._derived[build] = (version, value)
        return value

    def update(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to the latest content and write it; returns a copy of the result.

        The row stays locked from the read to the commit, so concurrent updates (from any
        process) apply one after the other. If ``change`` raises, nothing is written.

        :raises DamagedDocument: the row is not a JSON object of the declared shape (nothing
            is written).
        """
        started = self._monotonic()
        with self.database.transaction() as connection:
            with self.database.errors():
                connection.execute(ENSURE, (self.name,))
                ((found, content),) = rows(connection, LOCK, (self.name,))  # ENSURE made it
            self._guard.check(found, content, self._guard.refuse_if_known(found))
            change(content)
            with self.database.errors():
                version = fetch(connection, WRITE, (jsonb(content), self.name))
        self._remember(version, content, checked_at=started)
        return clone(content)

    def _remember(self, version: int, content: dict, *, checked_at: float | None = None) -> None:
        """Cache ``content`` as ``version`` unless a newer one is cached already.

        Updates commit under the row lock but reach this cache after it is released, so two
        of them can arrive in either order: the older one must not overwrite the newer one,
        or reads would be answered from it (without, say, a token just created) for a while.
        """
        with self._lock:
            if self._cache is None or self._cache[0] < version:
                self._cache = (version, content)
            if checked_at is not None and (
                self._checked is None or self._checked[1] is None or self._checked[1] <= version
            ):
                self._checked = (checked_at, version)


def shared_secret(database: Database | HasDatabase, name: str, size: int = SECRET_BYTES) -> bytes:
    """The random secret called ``name``: created on first use, the same for every process.

    The first process to insert it wins; every other one reads the winner's.
    """
    db = database_of(database)
    with db.connection() as connection:
        connection.execute(INSERT_SECRET, (name, secrets.token_bytes(size)))
        return bytes(fetch(connection, READ_SECRET, (name,)))
