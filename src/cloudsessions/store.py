"""The Store contract: what every store does, sync and async, tested once for all.

Adapters call the public methods with the session id from the cookie. This base class
validates that id (a value of the wrong shape never reaches a store), hashes it to the
record id kept at rest, encodes values (see codec), checks the size limit before any
write and enforces expiry on read. A store implements only the underscore methods, which
work on record ids and encoded fields; async twins default to the sync method in a worker
thread and a store with a native async client overrides them.

The async API runs under any event loop anyio supports (asyncio and trio): the SDKs' native
async clients are asyncio-only, so under any other loop every call takes the sync client in
a worker thread (anyio's), which is what a store without a native client always does.
"""

from __future__ import annotations

import abc
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar

import anyio.to_thread
import sniffio

from . import codec, keys
from .errors import SessionGone, SessionTooLarge
from .record import Changes, CheckResult, SessionInfo, SessionRecord, StoredRecord

logger = logging.getLogger("cloudsessions")

Progress = Callable[[int], None]
"""Called by purge_expired with the running count of removed records."""

T = TypeVar("T")

# Room for the record id, expiry, user id and attribute names around the session fields.
RECORD_OVERHEAD = 512


class Store(abc.ABC):
    kind: ClassVar[str]
    default_max_record_bytes: ClassVar[int]

    def __init__(self, *, max_record_bytes: int | None = None) -> None:
        limit = self.default_max_record_bytes
        self.max_record_bytes = min(max_record_bytes, limit) if max_record_bytes else limit

    # ----------------------------------------------------------------- public (sync)

    def load(self, key: str) -> SessionRecord | None:
        """The live record for `key`, or None (unknown, expired or malformed). Never writes."""
        if not keys.is_valid_key(key):
            return None
        return self._decode(self._load(keys.record_id(key)))

    def create(self, key: str, record: SessionRecord) -> None:
        """Insert only if absent; raises SessionExists if the id is taken."""
        self._create(_rid_for_write(key), self._encode(record))

    def save(self, key: str, record: SessionRecord, changed: Iterable[str]) -> None:
        """Write the `changed` keys of a live record (absent from record.data = removed).

        Raises SessionGone if the record was deleted or has expired: never re-creates it.
        """
        rid, changes = self._prepare_save(key, record, changed)
        self._save(rid, changes, record.expires_at, record.user_id, time.time())

    def increment(
        self, key: str, name: str, delta: int = 1, *, expires_at: float, base: int = 0
    ) -> int:
        """Atomically add `delta` to the counter `name` of a live record; returns the new value.

        One conditional write, which also sets the record's expiry: concurrent increments
        never lose a count, and a record that was deleted or has expired raises SessionGone.
        If `name` is not a counter yet (absent, or a plain value written by a save), it
        becomes one worth base + delta: pass the plain integer you loaded as `base`.
        """
        rid, field = self._prepare_increment(key, name)
        return self._increment(rid, field, delta, base, expires_at, time.time())

    def delete(self, key: str) -> None:
        """Remove the record; idempotent."""
        if keys.is_valid_key(key):
            self._delete(keys.record_id(key))

    def purge_expired(self, *, batch_size: int = 500, progress: Progress | None = None) -> int:
        """Remove expired records in batches; returns how many (0 where the store's TTL does it)."""
        return self._purge_expired(time.time(), batch_size, progress)

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """The live sessions of one user, found through an index."""
        now = time.time()
        return [s for s in self._for_user(str(user_id)) if s.expires_at > now]

    def delete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every session of one user except `keep` (a session id); returns the count."""
        keep_rid = keys.record_id(keep) if keep and keys.is_valid_key(keep) else None
        return self._delete_for_user(str(user_id), keep_rid)

    # ---------------------------------------------------------------- public (async)

    async def aload(self, key: str) -> SessionRecord | None:
        if not keys.is_valid_key(key):
            return None
        return self._decode(await self._native(self._aload, self._load, keys.record_id(key)))

    async def acreate(self, key: str, record: SessionRecord) -> None:
        await self._native(self._acreate, self._create, _rid_for_write(key), self._encode(record))

    async def asave(self, key: str, record: SessionRecord, changed: Iterable[str]) -> None:
        rid, changes = self._prepare_save(key, record, changed)
        args = (rid, changes, record.expires_at, record.user_id, time.time())
        await self._native(self._asave, self._save, *args)

    async def aincrement(
        self, key: str, name: str, delta: int = 1, *, expires_at: float, base: int = 0
    ) -> int:
        rid, field = self._prepare_increment(key, name)
        args = (rid, field, delta, base, expires_at, time.time())
        return await self._native(self._aincrement, self._increment, *args)

    async def adelete(self, key: str) -> None:
        if keys.is_valid_key(key):
            await self._native(self._adelete, self._delete, keys.record_id(key))

    async def apurge_expired(
        self, *, batch_size: int = 500, progress: Progress | None = None
    ) -> int:
        call = functools.partial(self.purge_expired, batch_size=batch_size, progress=progress)
        return await in_thread(call)

    async def afor_user(self, user_id: str) -> list[SessionInfo]:
        return await in_thread(functools.partial(self.for_user, user_id))

    async def adelete_for_user(self, user_id: str, *, keep: str | None = None) -> int:
        return await in_thread(functools.partial(self.delete_for_user, user_id, keep=keep))

    @staticmethod
    async def _native(native: Callable[..., Awaitable[T]], sync: Callable[..., T], *args: Any) -> T:
        # The SDKs' async clients need asyncio; under trio (or any other loop) the sync
        # client runs in a worker thread instead.
        if _on_asyncio():
            return await native(*args)
        return await in_thread(functools.partial(sync, *args))

    # ------------------------------------------------------------------- operations

    @abc.abstractmethod
    def provision(self, *, fix: bool = False) -> list[str]:
        """Create what the store needs (table, indexes, TTL); idempotent. Returns what it did.

        Something of ours that exists with other settings (say, an index with another TTL)
        is reported as a ConfigurationError and left alone, unless `fix` is true.
        """

    @abc.abstractmethod
    def drop(self) -> None:
        """Delete the store's table or collection and every session in it."""

    @abc.abstractmethod
    def check(self) -> list[CheckResult]:
        """Report, without changing anything, whether the store is ready to serve sessions."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A one-line, secret-free description for messages (e.g. 'sqlite file ./x.db')."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store reopens them lazily if used again."""

    # ------------------------------------------------------- what a store implements

    @abc.abstractmethod
    def _load(self, rid: str) -> StoredRecord | None: ...

    @abc.abstractmethod
    def _create(self, rid: str, record: StoredRecord) -> None: ...

    @abc.abstractmethod
    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        """One conditional write: only if the record exists and expires after `now`."""

    @abc.abstractmethod
    def _delete(self, rid: str) -> None: ...

    @abc.abstractmethod
    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        """One conditional write: field = (the counter if it is one, else base) + delta."""

    @abc.abstractmethod
    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int: ...

    @abc.abstractmethod
    def _for_user(self, user_id: str) -> list[SessionInfo]: ...

    @abc.abstractmethod
    def _delete_for_user(self, user_id: str, keep_rid: str | None) -> int: ...

    def record_size(self, record: StoredRecord) -> int:
        """Bytes the store will count against its item limit; stores refine it."""
        return codec.encoded_size(record.fields) + 8 * len(record.fields) + RECORD_OVERHEAD

    # Native async twins, called under asyncio only (see _native); by default the sync
    # method in a worker thread.

    async def _aload(self, rid: str) -> StoredRecord | None:
        return await in_thread(functools.partial(self._load, rid))

    async def _acreate(self, rid: str, record: StoredRecord) -> None:
        await in_thread(functools.partial(self._create, rid, record))

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        await in_thread(functools.partial(self._save, rid, changes, expires_at, user_id, now))

    async def _adelete(self, rid: str) -> None:
        await in_thread(functools.partial(self._delete, rid))

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        call = functools.partial(self._increment, rid, field, delta, base, expires_at, now)
        return await in_thread(call)

    # ---------------------------------------------------------------------- helpers

    def _encode(self, record: SessionRecord) -> StoredRecord:
        stored = StoredRecord(codec.encode_data(record.data), record.expires_at, record.user_id)
        size = self.record_size(stored)
        if size > self.max_record_bytes:
            raise SessionTooLarge(size, self.max_record_bytes, self.kind)
        return stored

    def _prepare_save(
        self, key: str, record: SessionRecord, changed: Iterable[str]
    ) -> tuple[str, Changes]:
        if not keys.is_valid_key(key):
            raise SessionGone("a malformed session id names no record")
        fields = self._encode(record).fields
        changes = Changes()
        for name in changed:
            field = codec.encode_field(name)
            if field in fields:
                changes.set_fields[field] = fields[field]
            else:
                changes.removed_fields.append(field)
        return keys.record_id(key), changes

    @staticmethod
    def _prepare_increment(key: str, name: str) -> tuple[str, str]:
        if not keys.is_valid_key(key):
            raise SessionGone("a malformed session id names no record")
        return keys.record_id(key), codec.encode_field(name)

    @staticmethod
    def _decode(stored: StoredRecord | None) -> SessionRecord | None:
        # Expiry is enforced here, whatever the store's own TTL sweeper has done so far.
        if stored is None or stored.expires_at <= time.time():
            return None
        try:
            data = codec.decode_data(stored.fields)
            counters = codec.decode_counters(stored.counters)
        except ValueError:
            # Treated like an unknown id, as Django does with undecodable session data.
            logger.warning("a session record could not be decoded and was ignored")
            return None
        data.update(counters)
        return SessionRecord(data, stored.expires_at, stored.user_id, frozenset(counters))


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call in a worker thread of whatever event loop is running."""
    return await anyio.to_thread.run_sync(call)


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _rid_for_write(key: str) -> str:
    if not keys.is_valid_key(key):
        raise ValueError("session ids are made by cloudsessions.keys.new_key()")
    return keys.record_id(key)
