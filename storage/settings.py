"""``[storage]``: where the directory and the state live (read by :mod:`server.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINYDB = "tinydb"
POSTGRESQL = "postgresql"
BACKENDS = (TINYDB, POSTGRESQL)


@dataclass(frozen=True)
class StorageSettings:
    """``[storage]``: the embedded store in a data directory (one server process), or a
    PostgreSQL database that several server processes share."""

    # "tinydb": the embedded store in ``path``. "postgresql": the database at ``dsn``; every
    # piece of state (directory, tokens, switches, admin accounts, sessions, activity) lives
    # there, so any number of processes on any number of machines can serve it.
    backend: str = TINYDB
    # The data directory (relative to the config file's directory). With PostgreSQL it holds
    # nothing the processes share.
    path: Path = Path("data")
    # A libpq connection string or URL, e.g. "postgresql://proware@db.example.com/proware".
    # Rather than a password here, use ~/.pgpass, PGPASSWORD or $PROWARE_STORAGE_DSN.
    dsn: str = ""
    # Connections each server process keeps open to PostgreSQL.
    pool_size: int = 4
    # Seconds PostgreSQL may stay silent (a network cut, a paused VM) before a request gives
    # it up (503) and a connection counts as lost: connecting, unacknowledged statements and
    # unanswered keepalives (storage.postgres.connection.silence_options). Also how long
    # PostgreSQL keeps a silent server's sessions (storage.postgres.sessions).
    timeout_seconds: int = 5
