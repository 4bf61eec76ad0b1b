"""Document storage for Proware: knows documents and indexes, not SCIM and not HTTP.

- :mod:`storage.repository`: the interface every store implements; :mod:`storage.errors`
  its errors; :mod:`storage.memory` and :mod:`storage.state` the in-memory rules and
  copy-on-write state (the fake for service tests, and the base of the durable store);
- :mod:`storage.journal`: the embedded durable store the server runs on;
- :mod:`storage.tinydb_store`: the whole-file TinyDB store of format 1 (read for migration);
- :mod:`storage.controlfile`: small JSON documents shared by processes (tokens, accounts);
- :mod:`storage.settings` (``[storage]``), :mod:`storage.values` (copying JSON values, ids),
  :mod:`storage.jsontext` (JSON text, written by orjson where it writes the same),
  :mod:`storage.waits` (how long each thread waited for its commits to be durable).

Imports nothing of Proware outside this package, and neither Flask nor werkzeug.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.journal import JournalRepository
    from storage.repository import Index


def open_store(
    data_dir: Path,
    indexes: list[Index],
    *,
    compact_min_bytes: int = 1 << 20,
    compact_ratio: float = 0.5,
) -> JournalRepository:
    """Open the durable store in ``data_dir`` (created if missing; format 1 is migrated).

    :param compact_min_bytes: compact once the journal holds this many bytes, or
    :param compact_ratio: this fraction of the data file's size, whichever is larger.
    :raises StoreLocked: if another process owns ``data_dir``.
    :raises CorruptStore: if its files are damaged or of a newer format (left unchanged).
    """
    # Imported here so that `import storage.controlfile` stays light for the CLI.
    from storage.journal import JournalRepository

    return JournalRepository(
        Path(data_dir),
        indexes,
        compact_min_bytes=compact_min_bytes,
        compact_ratio=compact_ratio,
    )
