"""Migrating a data file of an older format to the current one (format 2), keeping a copy.

Format 1 (:mod:`storage.tinydb_store`) kept each group's members inside the group document;
format 2 (:mod:`storage.journal.snapshot`) keeps them in a memberships table and pairs the file with
a journal. The original bytes are copied next to it first, so a migration that goes wrong
(or a downgrade) loses nothing; a crash mid-way leaves the format-1 file to migrate again.
"""

from __future__ import annotations

from pathlib import Path

from storage.controlfile import remove_stray_temp_files, write_atomically
from storage.journal.snapshot import DATA_FILE, meta_record, write_snapshot
from storage.state import State

FORMAT1_COPY = DATA_FILE + ".format1.bak"


def migrate_format1(data_dir: Path, state: State) -> Path:
    """Replace ``data_dir``'s format-1 data file with ``state`` (read from it) in format 2.

    :returns: where the original file was copied.
    """
    data_path = data_dir / DATA_FILE
    original = data_path.read_bytes()
    copy = _copy_path(data_dir, original)
    remove_stray_temp_files(copy)
    write_atomically(copy, original)
    # Generation 1 and seq 0: the journal starts afresh with this file.
    write_snapshot(data_path, state, meta_record(1, 0, 0))
    return copy


def _copy_path(data_dir: Path, original: bytes) -> Path:
    """Where to keep the original: the usual name, unless it already holds other bytes."""
    copy, number = data_dir / FORMAT1_COPY, 1
    while copy.exists() and copy.read_bytes() != original:
        number += 1
        copy = data_dir / f"{DATA_FILE}.format1.{number}.bak"
    return copy
