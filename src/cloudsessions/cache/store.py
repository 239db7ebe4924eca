"""A store with cache tiers in front: the Store contract, kept, with fewer store reads.

Reads try the process-local tier, then the shared tier (Redis), then the store, and fill
the tiers they passed. Every write goes to the store first and then invalidates the record
in every tier (and on the channel), whether or not the write succeeded: a failed write may
still have happened. So:

- shared tier: no read served after a delete, a rotation or a revocation returns can show
  the session (fills carry a token an invalidation changes; see shared.py);
- local tier: a hit is never older than max_staleness; this process's writes apply at
  once, other processes' as fast as the channel delivers them, and within the bound
  without it (see local.py and channel.py).

Writes stay what they are in the store: per-key merges and counters added in place, so a
write made after a cached read never overwrites another server's change, and a save of a
session revoked elsewhere raises SessionGone (never re-creates it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from ..errors import ConfigurationError, StoreUnavailable
from ..record import Changes, CheckResult, EncodedRecord, SessionInfo, SessionRecord
from ..store import Progress, Store, StoreURL
from .local import LocalTier
from .options import CacheOptions, cache_options


@dataclass(frozen=True, slots=True)
class CacheMetrics:
    """Counts since the store was made (this process), read with CachedStore.metrics()."""

    local_hits: int  # reads served by the process-local tier, without a network call
    shared_hits: int  # reads served by the shared tier (one Redis round trip)
    misses: int  # reads that went to the store
    invalidations_sent: int  # records this process invalidated (its writes)
    invalidations_received: int  # record ids the channel delivered (every process's)
    oldest_served: float  # the age in seconds of the oldest local entry ever served
    cache_errors: int  # failed calls to the cache's Redis (each served by the store)
    entries: int  # local tier, now
    bytes: int  # local tier, now (estimated)
    channel_joined: bool  # listening to the channel now


class CachedStore(Store):
    kind = "cached"
    default_max_record_bytes = 2**62  # the store's own limit applies (see _encode)

    def __init__(self, store: Store, options: CacheOptions | Mapping[str, Any] | str) -> None:
        super().__init__()
        if isinstance(store, CachedStore):
            raise ConfigurationError("this store already has a cache in front")
        self.store = store
        self.options = cache_options(options)
        self.max_record_bytes = store.max_record_bytes
        self.deadline = store.deadline  # a request's store time, the cache's included
        self.local = (
            LocalTier(self.options.max_staleness, self.options.max_entries, self.options.max_bytes)
            if self.options.local_tier
            else None
        )
        self.shared = None
        self.channel = None
        if self.options.redis:
            try:
                from .shared import SharedTier  # imports redis-py: only for a Redis cache
            except ImportError as exc:
                raise ConfigurationError(
                    "a cache on Redis needs redis-py: pip install 'cloudsessions[redis]'"
                ) from exc
            self.shared = SharedTier(self.options)
            if self.local is not None and self.options.channel_name:
                from .channel import Channel

                self.channel = Channel(
                    self.options.channel_name,
                    self.shared.client,
                    self.local.invalidate,
                    self.local.clear,
                )
        self._misses = 0
        self._sent = 0

    @classmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> Self:
        raise ConfigurationError("a cache is configured with the CACHE setting, not a store URL")

    def describe(self) -> str:
        where = f" on {self.shared.describe()}" if self.shared else ""
        return f"{self.store.describe()}, cached: {self.options.describe()}{where}"

    def metrics(self) -> CacheMetrics:
        entries, size = self.local.size() if self.local else (0, 0)
        return CacheMetrics(
            local_hits=self.local.hits if self.local else 0,
            shared_hits=self.shared.hits if self.shared else 0,
            misses=self._misses,
            invalidations_sent=self._sent,
            invalidations_received=self.channel.received if self.channel else 0,
            oldest_served=self.local.oldest_served if self.local else 0.0,
            cache_errors=self.shared.errors if self.shared else 0,
            entries=entries,
            bytes=size,
            channel_joined=bool(self.channel and self.channel.joined.is_set()),
        )

    # ------------------------------------------------------------------ reads

    def _load(self, rid: str) -> EncodedRecord | None:
        if (hit := self._local_hit(rid)) is not None:
            return hit
        mark = self._local_mark()  # before the read that may be put
        read = self.shared.read(rid) if self.shared else None
        if read is not None and read.record is not None:
            self._keep_local(rid, read.record, mark)
            return read.record
        record = self.store._load(rid)
        self._misses += 1
        if record is not None and record.expires_at > time.time():
            if read is not None:
                self.shared.fill(rid, read, record)  # type: ignore[union-attr]
            self._keep_local(rid, record, mark)
        return record

    async def _aload(self, rid: str) -> EncodedRecord | None:
        if (hit := self._local_hit(rid)) is not None:
            return hit
        mark = self._local_mark()
        read = await self.shared.aread(rid) if self.shared else None
        if read is not None and read.record is not None:
            self._keep_local(rid, read.record, mark)
            return read.record
        record = await self.store._native(self.store._aload, self.store._load, rid)
        self._misses += 1
        if record is not None and record.expires_at > time.time():
            if read is not None:
                await self.shared.afill(rid, read, record)  # type: ignore[union-attr]
            self._keep_local(rid, record, mark)
        return record

    def _local_hit(self, rid: str) -> EncodedRecord | None:
        if self.local is None:
            return None
        if self.channel is not None:
            self.channel.start()  # once per process: before anything is served from here
        return self.local.get(rid)

    def _local_mark(self) -> tuple[int, float] | None:
        if self.local is None:
            return None
        if self.channel is not None:
            self.channel.start()
        return self.local.mark()

    def _keep_local(self, rid: str, record: EncodedRecord, mark: tuple[int, float] | None) -> None:
        if mark is not None:
            self.local.put(rid, record, mark)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ writes

    def _create(self, rid: str, record: EncodedRecord) -> None:
        mark = self._local_mark()
        self.store._create(rid, record)
        # Written through: the next request of a new session is almost always a read.
        if self.shared is not None:
            self.shared.fill(rid, self.shared.NEW, record)
        self._keep_local(rid, record, mark)

    async def _acreate(self, rid: str, record: EncodedRecord) -> None:
        mark = self._local_mark()
        await self.store._native(self.store._acreate, self.store._create, rid, record)
        if self.shared is not None:
            await self.shared.afill(rid, self.shared.NEW, record)
        self._keep_local(rid, record, mark)

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        try:
            self.store._save(rid, changes, expires_at, user_id, now)
        finally:
            told = self._invalidate([rid])
        self._require(told)

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        args = (rid, changes, expires_at, user_id, now)
        try:
            await self.store._native(self.store._asave, self.store._save, *args)
        finally:
            told = await self._ainvalidate([rid])
        self._require(told)

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        try:
            result = self.store._increment(rid, field, delta, base, expires_at, now)
        finally:
            told = self._invalidate([rid])
        self._require(told)
        return result

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        args = (rid, field, delta, base, expires_at, now)
        try:
            result = await self.store._native(self.store._aincrement, self.store._increment, *args)
        finally:
            told = await self._ainvalidate([rid])
        self._require(told)
        return result

    def _delete(self, rid: str) -> None:
        try:
            self.store._delete(rid)
        finally:
            told = self._invalidate([rid])
        self._require(told)

    async def _adelete(self, rid: str) -> None:
        try:
            await self.store._native(self.store._adelete, self.store._delete, rid)
        finally:
            told = await self._ainvalidate([rid])
        self._require(told)

    def _delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None = None
    ) -> list[str]:
        # Listed first too: if the delete fails half-way, what it did delete is unknown,
        # and every session it may have deleted is invalidated all the same.
        listed = [s.record_id for s in self.store._for_user(user_id) if s.record_id != keep_rid]
        deleted: list[str] = []
        try:
            deleted = self.store._call_delete_for_user(user_id, keep_rid, progress)
        finally:
            told = self._invalidate(dict.fromkeys([*listed, *deleted]))
        self._require(told)
        return deleted

    def _revoke(self, user_id: str, rid: str) -> bool:
        revoked = False
        try:
            revoked = self.store._revoke(user_id, rid)
        finally:
            told = self._invalidate([rid])
        self._require(told)
        return revoked

    def _invalidate(self, rids: Iterable[str]) -> bool:
        """Drop `rids` from every tier; False if the shared tier could not be told."""
        rids = self._drop_local(rids)
        return self.shared.invalidate(rids) if self.shared is not None else True

    async def _ainvalidate(self, rids: Iterable[str]) -> bool:
        rids = self._drop_local(rids)
        return await self.shared.ainvalidate(rids) if self.shared is not None else True

    def _drop_local(self, rids: Iterable[str]) -> list[str]:
        rids = list(rids)
        self._sent += len(rids)
        if self.local is not None:
            for rid in rids:
                self.local.invalidate(rid)
        return rids

    def _require(self, told: bool) -> None:
        if not told and self.options.strict_invalidation:
            raise StoreUnavailable(
                "the store has the change, but the session cache could not be told, so"
                " another server may still serve the old session from it; try again"
            )

    # ------------------------------------------------------- passed to the store

    def native_async(self) -> bool:
        return True  # the async twins above; each calls the store's own as it prefers

    def _encode(self, record: SessionRecord) -> EncodedRecord:
        return self.store._encode(record)  # the store's own size limit and message

    def record_size(self, record: EncodedRecord) -> int:
        return self.store.record_size(record)

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        return self.store._for_user(user_id)

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        # Expired records are never served from a tier either: expiry is checked on read.
        return self.store._purge_expired(now, batch_size, progress)

    def provision(self, *, fix: bool = False) -> list[str]:
        done = self.store.provision(fix=fix)
        return done + (self.shared.provision() if self.shared is not None else [])

    def drop(self, *, progress: Progress | None = None) -> None:
        self.store.drop(progress=progress)
        if self.local is not None:
            self.local.clear()
        if self.shared is not None:
            self.shared.drop()

    def drop_target(self) -> tuple[bool, str]:
        return self.store.drop_target()

    def purge_note(self) -> str | None:
        return self.store.purge_note()

    def count_records(self, *, expired_only: bool) -> int | None:
        return self.store.count_records(expired_only=expired_only)

    def check(self) -> list[CheckResult]:
        results = self.store.check()
        if self.shared is not None:
            results.append(self.shared.check())
        return results

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.shared is not None:
            self.shared.close()
        self.store.close()

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
        await self.store.aclose()
