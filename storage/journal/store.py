"""The fast, durable store (format 2): state in memory, one fsync'd journal record per commit.

A data directory holds::

    proware.json              the state at the last compaction (TinyDB JSON, format 2)
    proware.journal.00000007  every commit since, one checksummed record each (segments)
    proware.lock              flock'd by the one process that owns the directory
    proware.journal.00000007.cut-20261207T101500.123456Z
                              bytes start-up cut from a segment's end, kept (the newest 10)

Reads never touch the disk: documents, indexes and memberships live in memory
(:class:`storage.memory.MemoryRepository`'s rules and copy-on-write state). A commit appends
one record (changed documents, membership deltas, noted events) and returns only once an
fsync covers it; concurrent commits share fsyncs. The change becomes visible to readers
only once durable, and listeners get events in commit order.

When the current segment outgrows a fraction of the data file, a compaction rotates to a
new segment under the lock (one fsync), then writes the frozen state to ``proware.json``
in a background thread (temp file, fsync, rename, directory fsync) while commits go on, and
deletes the segments it covers. It writes anew only the records changed since the last
compaction, copying documents' bytes from their journal records (:class:`SnapshotEncoder`),
works in short steps (:mod:`storage.journal.pacing`) and frees big files gradually, so requests
beside it are barely slowed. Start-up reads the data file, replays the segments, cuts a
torn final record away (keeping its bytes in a file), and refuses anything else unreadable
without changing it.
"""

from __future__ import annotations

import bisect
import gc
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from storage.controlfile import delete_gradually, fsync_directory, remove_stray_temp_files
from storage.journal import pacing
from storage.journal.file import JournalBroken, JournalFile
from storage.journal.format import encode_json, encode_record, list_segments
from storage.journal.lock import DataDirLock
from storage.journal.recovery import prepare_directory
from storage.journal.snapshot import (
    DATA_FILE,
    JOINED,
    MEMBERSHIPS,
    TABLES,
    SnapshotEncoder,
    meta_record,
    write_snapshot,
)
from storage.memory import GROUP, MemoryRepository, MemoryTransaction, stamp_events
from storage.repository import Clock, CompactionHook, IdFactory, Index
from storage.state import State
from storage.values import clone, new_hex_id, utcnow
from storage.waits import add_wait, clocks
from storage.wording import counted

log = logging.getLogger("proware.storage")


@dataclass
class _Pending:
    """A commit whose record is written but maybe not yet durable."""

    seq: int
    state: State
    events: list[dict]


@dataclass
class _Compaction:
    """What one compaction writes: a frozen state and the counters it includes."""

    state: State
    seq: int
    event_seq: int
    generation: int  # the first segment after this state
    # Records written since the last compaction began, with a document's encoded bytes.
    changed: dict[tuple[str, str], bytes | None]


class JournalRepository(MemoryRepository):
    """A repository kept in memory, journaled to ``data_dir`` and compacted into a TinyDB file.

    Opening takes the directory's lock, migrates a format-1 file (keeping a copy), replays
    the journal and freezes the loaded objects out of the garbage collector's way.

    :param compact_min_bytes: compact once the current segment holds this many bytes ...
    :param compact_ratio: ... or this fraction of the data file's size, whichever is larger
        (so the work of compacting stays proportional to the writes that caused it).
    :raises StoreLocked: if another process owns ``data_dir``.
    :raises CorruptStore: naming the file and position of anything unreadable; nothing on
        disk is changed then.
    """

    def __init__(
        self,
        data_dir: Path,
        indexes: list[Index],
        clock: Clock = utcnow,
        new_id: IdFactory = new_hex_id,
        *,
        compact_min_bytes: int = 1 << 20,
        compact_ratio: float = 0.5,
    ) -> None:
        super().__init__(indexes, clock, new_id)
        self.data_dir = Path(data_dir)
        self.data_path = self.data_dir / DATA_FILE
        self._compact_min_bytes = compact_min_bytes
        self._compact_ratio = compact_ratio
        self._hooks: list[CompactionHook] = []
        self._closed = False
        # Held from the start of a compaction to its end (across threads): one at a time, or
        # an older state could replace a newer one and its journal.
        self._compacting = threading.Lock()
        # Used by compactions only (one at a time, under _compacting): reuses the bytes of
        # every record that did not change since the last compaction.
        self._encoder = SnapshotEncoder()
        # (table, key) of every record written since the last compaction began, in order,
        # with a document's bytes as journaled (None: deleted, or members): what the next
        # compaction writes anew (the encoder keeps the other records' bytes).
        self._changed: dict[tuple[str, str], bytes | None] = {}
        # Deliveries happen in record order: a commit waits for its predecessor's turn.
        self._turn = threading.Condition(threading.Lock())
        self._local = threading.local()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir_lock = DataDirLock(self.data_dir)
        try:
            self._open(list(indexes))
        except BaseException:
            self._dir_lock.release()
            raise
        # Everything loaded lives until shutdown: keep full collections from walking it
        # (about 34 ms per pass at 50,000 users).
        gc.freeze()

    # -- the Repository interface -----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        """Serialise a unit of work; return only once it is durable, discard it on exception."""
        if getattr(self._local, "delivering", False):
            raise RuntimeError(
                "commit listeners must not write to the repository: later commits wait for them"
            )
        pending = None
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the store in {self.data_dir} is closed")
            transaction = self._begin(self._head)
            try:
                yield transaction
                if transaction.changed or transaction.events:
                    pending = self._append(transaction)
            finally:
                self._end(transaction)
        if pending is not None:
            self._complete(pending)

    def add_compaction_hook(self, hook: CompactionHook) -> None:
        """Call ``hook()`` before a compaction discards journal records (and their events).

        Every event of those records has been delivered to the commit listeners by then;
        an audit log fsyncs itself here. A hook that raises stops that compaction.
        """
        self._hooks.append(hook)

    def close(self) -> None:
        """Wait for commits in flight, compact, and release the files and the lock."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._compacting.acquire()  # lets a background compaction finish
        try:
            if self._journal.failure is None and self._head_seq > self._snapshot_seq:
                self._wait_delivered(self._head_seq)
                with self._lock:
                    job = self._start_compaction()
                self._compact(job)
        except Exception:
            log.exception("closing %s: the final compaction failed; the journal keeps it all", self)
        finally:
            self._compacting.release()
            self._journal.close()
            self._dir_lock.release()

    # -- beyond the interface ----------------------------------------------------------------

    def compact(self) -> None:
        """Write the whole state to the data file now and drop the journal it covers."""
        with self._compacting:
            with self._lock:
                if self._closed:
                    raise RuntimeError(f"the store in {self.data_dir} is closed")
                job = self._start_compaction()
            self._compact(job)

    def snapshot_to(self, target: Path) -> tuple[State, dict]:
        """Write a consistent copy of the committed state to ``target`` (format 2).

        Holds the lock only to take the (immutable) state; writing happens outside it.
        :returns: the state written and its ``_meta`` record.
        """
        with self._lock:
            self._journal.sync(self._head_seq)  # what is copied must be durable here too
            state = self._head
            meta = meta_record(1, self._head_seq, self._event_seq)
        write_snapshot(target, state, meta)
        return state, meta

    def recent_events(self, after_seq: int = 0) -> list[dict]:
        """Committed events still in the journal whose ``seq`` is above ``after_seq``.

        An audit log that was not told about the last commits before a crash (they were
        durable, the process died before the listeners ran) catches up from here.
        """
        with self._turn:
            delivered = self._delivered_seq
        return [
            clone(event)
            for record_seq, event in self._events
            if record_seq <= delivered and event["seq"] > after_seq
        ]

    def __repr__(self) -> str:
        return f"JournalRepository({str(self.data_dir)!r})"

    # -- start-up ----------------------------------------------------------------------------

    def _open(self, indexes: list[Index]) -> None:
        remove_stray_temp_files(self.data_path)
        ready = prepare_directory(self.data_dir, indexes)
        self._state = self._head = ready.state
        self._head_seq = self._delivered_seq = ready.seq
        self._snapshot_seq = ready.file_seq  # the journal holds the records after it
        self._event_seq = ready.event_seq
        self._events = ready.events
        self._journal = JournalFile(
            self.data_dir, ready.generation, size=ready.segment_size, seq=ready.seq
        )
        self._compact_at = self._threshold()

    # -- committing --------------------------------------------------------------------------

    def _append(self, transaction: MemoryTransaction) -> _Pending:
        """Write the transaction's record (not yet durable); the caller holds the lock."""
        state, seq = transaction.state, self._head_seq + 1
        docs: list[tuple[str, str, bytes | None]] = []
        for kind, id in transaction.changed:
            if kind not in TABLES:
                raise ValueError(f"this store keeps only {', '.join(TABLES)} documents")
            document = state.documents[kind].get(id)
            docs.append((kind, id, None if document is None else encode_json(document)))
        groups = state.documents.get(GROUP)
        # A group deleted in this transaction takes its memberships with it on replay.
        members = [
            [operation, group_id, list(user_ids)]
            for operation, group_id, user_ids in transaction.membership_changes
            if groups is not None and group_id in groups
        ]
        stamp_events(transaction.events, self._event_seq + 1)
        record: dict = {"seq": seq}
        for name, value in (("members", members), ("events", transaction.events)):
            if value:
                record[name] = value
        self._journal.append(encode_record(record, docs), seq)
        self._head, self._head_seq = state, seq
        # The same keys as the record, what the journal replays, for the next compaction,
        # with the documents' bytes: it copies them rather than encode them again. A
        # group's members go with the group: every membership change gives the group a new
        # version, and a deleted group takes its memberships with it (as on replay).
        changed = self._changed
        for kind, id, raw in docs:
            changed[(kind, id)] = raw
            if kind == GROUP:
                changed[(MEMBERSHIPS, id)] = None
            elif raw is None:  # a deleted user's order of groups goes with it
                changed[(JOINED, id)] = None
        # The order in which each member joined its groups (a group deleted leaves its id
        # in its members' records, which readers ignore).
        for _, _, user_ids in transaction.membership_changes:
            for user_id in user_ids:
                changed[(JOINED, user_id)] = None
        self._event_seq += len(transaction.events)
        self._events.extend((seq, event) for event in transaction.events)
        if self._journal.size >= self._compact_at and self._compacting.acquire(blocking=False):
            self._start_background_compaction()
        return _Pending(seq, state, transaction.events)

    def _complete(self, pending: _Pending) -> None:
        """Wait until the record is durable, then publish it and tell the listeners, in order."""
        started = clocks()
        self._journal.sync(pending.seq)
        add_wait(started)
        with self._turn:
            while self._delivered_seq < pending.seq - 1:
                self._turn.wait()
            try:
                self._state = pending.state  # readers see a change only once it is durable
                if pending.events:
                    self._local.delivering = True
                    try:
                        self._notify(pending.events)
                    finally:
                        self._local.delivering = False
            finally:
                self._delivered_seq = pending.seq
                self._turn.notify_all()

    def _wait_delivered(self, seq: int) -> None:
        with self._turn:
            while self._delivered_seq < seq:
                if self._journal.failure is not None:
                    raise JournalBroken(f"{self._journal.path}: a write failed; not compacting")
                self._turn.wait(timeout=0.1)

    # -- compaction --------------------------------------------------------------------------

    def _forget_events_through(self, seq: int) -> None:
        """Drop the kept events of records up to ``seq`` (now in the data file), a few
        hundred at a time: they are a prefix of the list, and freeing the 20,000 events of a
        compaction at 50,000 users at once held the GIL (and the lock) for about 4 ms."""
        with self._lock:
            left = bisect.bisect_right(self._events, seq, key=itemgetter(0))
        while left:  # commits only append meanwhile, so the prefix stays where it is
            step = min(left, pacing.RELEASE_STEP)
            with self._lock:
                del self._events[:step]
            left -= step
            pacing.pause()

    def _threshold(self) -> int:
        try:
            size = self.data_path.stat().st_size
        except FileNotFoundError:
            size = 0
        return max(self._compact_min_bytes, int(size * self._compact_ratio))

    def _start_compaction(self) -> _Compaction:
        """Freeze the state and start a new segment; the caller holds the lock."""
        generation = self._journal.generation + 1
        self._journal.rotate(generation)  # everything so far is durable and in older segments
        changed, self._changed = self._changed, {}
        return _Compaction(self._head, self._head_seq, self._event_seq, generation, changed)

    def _start_background_compaction(self) -> None:
        """Compact in another thread; the caller holds the lock and ``_compacting``."""
        try:
            job = self._start_compaction()
            threading.Thread(
                target=self._compact_in_background,
                args=(job,),
                name="proware-compaction",
                daemon=True,
            ).start()
        except Exception:
            self._compacting.release()
            log.exception("%s: could not start a compaction; trying again later", self)
            self._compact_at += self._compact_min_bytes

    def _compact_in_background(self, job: _Compaction) -> None:
        try:
            self._compact(job)
        except Exception:
            log.exception("%s: compaction failed; the journal keeps every change", self)
        finally:
            self._compacting.release()

    def _compact(self, job: _Compaction) -> None:
        """Write ``job``'s state as the data file, then delete the segments it covers."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        self._wait_delivered(job.seq)
        for hook in self._hooks:
            hook()
        self._encoder.write(
            self.data_path,
            job.state,
            meta_record(job.generation, job.seq, job.event_seq),
            job.changed,
        )
        for generation, path in list_segments(self.data_dir).items():
            if generation < job.generation:
                delete_gradually(path)  # a segment reaches half the data file's size
        fsync_directory(self.data_dir)
        with self._lock:
            self._snapshot_seq = job.seq
            self._compact_at = self._threshold()
        self._forget_events_through(job.seq)
        log.info(
            "%s: compacted through record %d in %.0f ms (%.0f ms of CPU): %s "
            "written anew, %d of them encoded",
            self,
            job.seq,
            (time.perf_counter() - started) * 1000,
            (time.thread_time() - cpu_started) * 1000,
            counted(self._encoder.rewritten_records, "record"),
            self._encoder.encoded_records,
        )
        # Documents created since start-up are long-lived too: keep full collections from
        # walking them as the directory grows. (Objects alive elsewhere right now are frozen
        # as well; acyclic ones are still freed by reference counting.)
        gc.freeze()
