"""The journal's on-disk format: checksummed one-line records in numbered segment files.

A segment ``proware.journal.<generation>`` holds one record per committed transaction::

    <length> <crc32> <json>\\n

``length`` is the byte length of ``json`` in decimal, ``crc32`` its CRC-32 in 8 lowercase hex
digits, and ``json`` a UTF-8 JSON object on one line (JSON escapes newlines inside strings)::

    {"seq": 17,
     "docs": [["User", "3f2a...", {...the whole document...}], ["User", "9c1b...", null]],
     "members": [["add", "group id", ["user id", ...]], ["remove", "group id", [...]]],
     "events": [{"seq": 40, "operation": "create", ...}]}

``docs`` holds each changed document's new content (null: deleted), ``members`` the
membership deltas in order, so adding one member to a group of 10,000 writes one short
record. A crash mid-append leaves a torn final record, which start-up cuts away (keeping the
bytes in a ``.cut-`` file beside the segment: a last line edited by hand looks the same);
damage anywhere else is reported with the file and byte offset, and nothing is changed.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from storage.errors import CorruptStore
from storage.jsontext import ascii_json
from storage.wording import counted

SEGMENT_PREFIX = "proware.journal."
_SEGMENT_NAME = re.compile(re.escape(SEGMENT_PREFIX) + r"(\d{8,})")
_HEADER = re.compile(rb"(\d{1,10}) ([0-9a-f]{8}) ")
# What start-up cut from the end of a segment is kept beside it, in
# ``proware.journal.<generation>.cut-<UTC time>``: not a segment (list_segments skips it).
CUT_MARK = ".cut-"
_CUT_NAME = re.compile(re.escape(SEGMENT_PREFIX) + r"\d{8,}" + re.escape(CUT_MARK) + r"(.+)")


def segment_name(generation: int) -> str:
    """The file name of journal segment ``generation``."""
    return f"{SEGMENT_PREFIX}{generation:08d}"


def list_segments(directory: Path) -> dict[int, Path]:
    """The journal segments in ``directory`` by generation, in ascending order."""
    found = {}
    for path in directory.glob(SEGMENT_PREFIX + "*"):
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def cut_file_name(segment: Path, stamp: str) -> str:
    """The name of the file keeping what was cut from the end of ``segment`` at ``stamp``."""
    return f"{segment.name}{CUT_MARK}{stamp}"


def list_cut_files(directory: Path) -> list[Path]:
    """The files keeping bytes cut from journal segments in ``directory``, oldest first."""
    found = []
    for path in directory.glob(SEGMENT_PREFIX + "*" + CUT_MARK + "*"):
        match = _CUT_NAME.fullmatch(path.name)
        if match:
            found.append((match.group(1), path.name, path))
    return [path for _, _, path in sorted(found)]


def encode_json(value: object) -> bytes:
    """Compact, ASCII-only JSON: how a document is written in the journal and the data file.

    The same bytes serve both, so a compaction copies a changed document's bytes from its
    journal record instead of encoding it again. ASCII-only, so plain TinyDB reads the data
    file whatever the locale's encoding.
    """
    return ascii_json(value)


def encode_record(record: dict, docs: list[tuple[str, str, bytes | None]] | None = None) -> bytes:
    """One journal line for ``record``, with ``docs`` as its ``"docs"`` list.

    :param docs: ``(kind, id, document)`` per changed document, the document already
        encoded with :func:`encode_json` (None: deleted).
    """
    body = encode_json(record)
    if docs:
        items = b",".join(
            b"[%s,%s,%s]" % (encode_json(kind), encode_json(id), b"null" if raw is None else raw)
            for kind, id, raw in docs
        )
        body = body[:-1] + b',"docs":[' + items + b"]}"
    return b"%d %08x %s\n" % (len(body), zlib.crc32(body), body)


@dataclass
class Segment:
    """What a scan of one segment found."""

    path: Path
    records: list[dict]
    valid_end: int  # byte offset just after the last good record
    size: int  # bytes in the file when read

    @property
    def torn(self) -> bool:
        """Whether bytes after the last good record (a torn final record) were ignored."""
        return self.valid_end < self.size


def read_segment(path: Path, *, final: bool) -> Segment:
    """Decode every record of the segment at ``path``.

    :param final: whether this is the newest segment, the only one an interrupted append
        can have left a torn record in (any later segment is created only after the older
        one is complete and fsync'd).
    :raises CorruptStore: naming the file, byte offset and line of the first damaged record
        that is not a torn final record.
    """
    data = path.read_bytes()
    return scan_records(path, data, final=final)


def scan_records(path: Path, data: bytes, *, final: bool) -> Segment:
    """Decode the records in ``data`` read from ``path`` (see :func:`read_segment`)."""
    records: list[dict] = []
    offset, line = 0, 1
    while offset < len(data):
        end = data.find(b"\n", offset)
        record, problem = _decode_line(data, offset, end)
        if record is not None:
            records.append(record)
            offset, line = end + 1, line + 1
            continue
        # The damage is a torn append only if nothing follows the damaged line: an
        # interrupted write leaves a prefix of one record (maybe zero-filled), never more.
        if final and (end == -1 or end == len(data) - 1):
            break
        raise CorruptStore(
            f"{path}: damaged journal record at byte offset {offset} (line {line}): {problem}; "
            "the store was not opened and nothing was changed (restore from a backup, or "
            "move the damaged file away to lose the records from this point)"
        )
    return Segment(path, records, offset, len(data))


def _decode_line(data: bytes, offset: int, end: int) -> tuple[dict | None, str]:
    """The record on the line at ``offset``, or None and why it is not a good record."""
    if end == -1:
        return None, "the record is incomplete (no line end)"
    header = _HEADER.match(data, offset, end)
    if header is None:
        return None, "no '<length> <crc32> ' header"
    body = data[header.end() : end]
    if int(header.group(1)) != len(body):
        present = counted(len(body), "byte")
        return None, f"length {int(header.group(1))} does not match the {present} present"
    if zlib.crc32(body) != int(header.group(2), 16):
        return None, "checksum mismatch"
    try:
        record = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"checksum matches but the JSON is invalid ({exc})"
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
        return None, "the record is not an object with an integer seq"
    return record, ""
