"""Failed attempts per key in the database: :class:`storage.failures.FailureLog` for every
server process of an install at once.

One row per key of ``failures`` (migration 3). The key is never stored as given: a sign-in
name is whatever someone typed, a password pasted in the wrong field included, so the row
holds its HMAC-SHA256 under a secret of the database's (:func:`shared_secret`). The table is
bounded: a row whose moments are all older than ``keep_for`` expires, and every write
deletes the expired rows and, past ``max_keys`` rows, those that expire first. Rows another
transaction holds are skipped there (``SKIP LOCKED``), so two writers never wait on each
other's rows, let alone deadlock.

An update costs what a shared document's does: two round trips (the row locked with
``BEGIN``; the write, the pruning and ``COMMIT`` together).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from storage.failures import MAX_KEYS, MAX_MOMENTS, Change
from storage.postgres.connection import Database, HasDatabase, database_of
from storage.postgres.documents import shared_secret
from storage.postgres.reads import first_row

SECRET_NAME = "failures.key"

ENSURE = (
    "INSERT INTO failures (digest, moments, expires) VALUES (%s, '{}', %s) "
    "ON CONFLICT (digest) DO NOTHING"
)
LOCK = "SELECT moments, expires FROM failures WHERE digest = %s FOR UPDATE"
WRITE = "UPDATE failures SET moments = %s, expires = %s WHERE digest = %s"
PRUNE = """
    DELETE FROM failures WHERE digest IN (
        SELECT digest FROM failures WHERE expires <= %s FOR UPDATE SKIP LOCKED
    )
"""
CAP = """
    DELETE FROM failures WHERE digest IN (
        SELECT digest FROM failures ORDER BY expires DESC, digest OFFSET %s
        FOR UPDATE SKIP LOCKED
    )
"""


class PostgresFailureLog:
    """A :class:`storage.failures.FailureLog` in the ``failures`` table.

    :param database: the :class:`Database`, or a repository or backend holding one.
    :param max_keys: rows kept at most.
    """

    def __init__(self, database: Database | HasDatabase, *, max_keys: int = MAX_KEYS) -> None:
        self.database = database_of(database)
        self._max_keys = max_keys
        self._secret: bytes | None = None

    def update(self, key: str, change: Change, *, now: datetime, keep_for: timedelta) -> None:
        digest = self._digest(key)
        with self.database.transaction() as connection, self.database.errors():
            connection.execute(ENSURE, (digest, now))
            row = first_row(connection, LOCK, (digest,))
            moments, expires = row if row is not None else ([], now)
            recorded = change(list(moments) if expires > now else [])[-MAX_MOMENTS:]
            keep_until = max(recorded, default=now) + keep_for
            connection.execute(WRITE, (recorded, keep_until, digest))
            connection.execute(PRUNE, (now,))
            connection.execute(CAP, (self._max_keys,))

    def _digest(self, key: str) -> bytes:
        if self._secret is None:
            self._secret = shared_secret(self.database, SECRET_NAME)
        return hmac.new(self._secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
