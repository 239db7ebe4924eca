"""The process-local tier: a bounded LRU of records, each served only while young enough.

An entry is served while it is younger than max_staleness, its age counted from before the
read that fetched it. Every invalidation (this process's writes, or another's through the
channel) drops the entry at once. A read that was under way when its record was
invalidated must not put what it read: each read takes a mark first, and put() refuses a
record whose mark is older than an invalidation of that record (or older than what the
bounded log of recent invalidations remembers).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..record import EncodedRecord

# How many recent invalidations are remembered for the check in put(); a read that began
# before the oldest of them is not put.
_LOG_SIZE = 4096
_ENTRY_OVERHEAD = 200  # bytes: the entry, its key and the record object, roughly


@dataclass(slots=True)
class _Entry:
    record: EncodedRecord
    fetched_at: float  # time.monotonic() before the read that fetched it
    size: int


def record_bytes(record: EncodedRecord) -> int:
    texts = sum(len(name) + len(value) for name, value in record.fields.items())
    return texts + sum(len(name) + 8 for name in record.counters) + _ENTRY_OVERHEAD


class LocalTier:
    def __init__(self, max_staleness: float, max_entries: int, max_bytes: int) -> None:
        self.max_staleness = max_staleness
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._seq = 0  # one more at each invalidation
        self._log: OrderedDict[str, int] = OrderedDict()  # rid -> seq of its last invalidation
        self._floor = 0  # reads marked before this are never put
        self.hits = 0
        self.oldest_served = 0.0  # the age of the oldest entry ever served, seconds

    def get(self, rid: str) -> EncodedRecord | None:
        """The record if an entry younger than the bound holds it; counts the hit."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(rid)
            if entry is None:
                return None
            age = now - entry.fetched_at
            if age >= self.max_staleness:
                self._drop(rid)
                return None
            self._entries.move_to_end(rid)
            self.hits += 1
            self.oldest_served = max(self.oldest_served, age)
            return entry.record

    def mark(self) -> tuple[int, float]:
        """Taken before a read whose result may be put: (invalidation seq, fetch time)."""
        with self._lock:
            return self._seq, time.monotonic()

    def put(self, rid: str, record: EncodedRecord, mark: tuple[int, float]) -> bool:
        """Keep what a read marked `mark` found, unless the record was invalidated since."""
        seq, fetched_at = mark
        size = record_bytes(record)
        with self._lock:
            if seq < self._floor or self._log.get(rid, -1) > seq or size > self.max_bytes:
                return False
            self._drop(rid)
            self._entries[rid] = _Entry(record, fetched_at, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            return True

    def invalidate(self, rid: str) -> None:
        with self._lock:
            self._seq += 1
            self._log[rid] = self._seq
            self._log.move_to_end(rid)
            if len(self._log) > _LOG_SIZE:
                _, forgotten = self._log.popitem(last=False)
                self._floor = max(self._floor, forgotten)
            self._drop(rid)

    def clear(self) -> None:
        """Forget every entry, and refuse every read under way (the channel was (re)joined)."""
        with self._lock:
            self._seq += 1
            self._floor = self._seq
            self._log.clear()
            self._entries.clear()
            self._bytes = 0

    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._entries), self._bytes

    def _drop(self, rid: str) -> None:
        entry = self._entries.pop(rid, None)
        if entry is not None:
            self._bytes -= entry.size
