"""The embedded durable store: the directory in memory, each commit an fsync'd journal record.

- :mod:`storage.journal.store`: :class:`JournalRepository`, the repository the server uses;
- :mod:`storage.journal.file` and :mod:`storage.journal.format`: the journal's segments and
  its checksummed records;
- :mod:`storage.journal.snapshot`: the data file (TinyDB JSON, format 2) that compaction
  writes, and :mod:`storage.journal.pacing`, the steps it writes in;
- :mod:`storage.journal.recovery` and :mod:`storage.journal.migrate`: reading a data
  directory back at start-up, and format 1 into format 2;
- :mod:`storage.journal.lock`: one process per data directory;
- :mod:`storage.journal.backup`: a consistent copy while serving, and restore.

Builds on the repository interface and the in-memory rules (:mod:`storage.memory`,
:mod:`storage.state`); imports nothing above ``storage``.
"""

from storage.journal.store import JournalRepository

__all__ = ["JournalRepository"]
