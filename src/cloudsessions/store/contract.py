"""The Store contract: what every store does, sync and async, tested once for all
(cloudsessions.testing ships that suite).

Adapters call the public methods with the session id from the cookie. This base class
validates that id (a value of the wrong shape never reaches a store), hashes it to the
record id kept at rest, encodes values (see codec), checks the size limit before any
write and enforces expiry on read. A store implements only the underscore methods, which
work on record ids and encoded fields (see docs/writing-a-store.md).

The async API runs under any event loop anyio supports (asyncio and trio). A store with a
native asyncio client overrides the async twins (_aload, ...) and says when they apply
(native_async); otherwise, and under any other loop, each call runs the sync method in one
of anyio's worker threads.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Self, TypeVar

import anyio.to_thread
import sniffio

from .. import codec, deadline, metadata, retries, session_ids, signals, telemetry
from ..errors import DeadlineExceeded, SessionGone, SessionTooLarge
from ..record import Changes, CheckResult, EncodedRecord, Metadata, SessionInfo, SessionRecord
from .translate import ErrorKind, translated
from .url import StoreURL

logger = logging.getLogger("cloudsessions")

Progress = Callable[[int], None]
"""Called by purge_expired, delete_for_user and drop after each batch, with the running
count of records removed so far."""

T = TypeVar("T")

# Room for the record id, expiry, user id and attribute names around the session fields.
RECORD_OVERHEAD = 512


Method = TypeVar("Method", bound=Callable[..., Any])


def _bounded(what: str, *, own: bool = True) -> Callable[[Method], Method]:
    """A public sync call: within the running request's deadline, or one of its own.

    `own=False`: outside a request, no deadline of its own (listing or revoking every
    session of a user from a script or the CLI may take longer than a request may; each
    SDK call is still bounded by the store's timeouts).
    """

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def call(store: Store, /, *args: Any, **kwargs: Any) -> Any:
            with deadline.call(store.deadline if own else None, what):
                return method(store, *args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


def _abounded(what: str) -> Callable[[Method], Method]:
    """The async twin of _bounded()."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        async def call(store: Store, /, *args: Any, **kwargs: Any) -> Any:
            with deadline.call(store.deadline, what):
                return await method(store, *args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


class Store(abc.ABC):
    kind: ClassVar[str]
    """The name in messages and errors, e.g. "sqlite"."""
    default_max_record_bytes: ClassVar[int]
    """The store's own item limit: the most a session may take, encoded."""
    error_kinds: ClassVar[tuple[ErrorKind, ...]] = ()
    """Which SDK errors become which of ours, applied by _errors()."""

    def __init__(
        self, *, max_record_bytes: int | None = None, deadline: float = deadline.DEFAULT
    ) -> None:
        limit = self.default_max_record_bytes
        self.max_record_bytes = min(max_record_bytes, limit) if max_record_bytes else limit
        # Seconds of store time a request may spend, retries included (cloudsessions.deadline).
        self.deadline = deadline

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> Self:
        """The store `url` names; `options` are the URL's query merged with given options.

        Parse them with cloudsessions.store.parse_options into the store's options class.
        """

    # ----------------------------------------------------------------- public (sync)

    @telemetry.traced("load")
    @_bounded("load a session")
    def load(self, session_id: str) -> SessionRecord | None:
        """The live record of `session_id`, or None (unknown, expired, malformed); no write."""
        if not session_ids.is_valid_session_id(session_id):
            return None
        return self._decode(self._load(session_ids.record_id(session_id)))

    @telemetry.traced("create")
    @_bounded("create a session")
    def create(self, session_id: str, record: SessionRecord) -> None:
        """Insert only if absent; raises SessionExists if the id is taken."""
        self._create(_rid_for_write(session_id), self._encode(record))

    @telemetry.traced("save")
    @_bounded("save a session")
    def save(
        self,
        session_id: str,
        record: SessionRecord,
        changed: Iterable[str],
        *,
        live_at: float | None = None,
    ) -> None:
        """Write the `changed` keys of a live record (absent from record.data = removed).

        Raises SessionGone if the record was deleted or has expired: never re-creates it.
        `live_at` is when the record must be live (default: now). A save that ends a
        session (a rotation retires the old id so) gives the instant before the expiry it
        writes, the same on every attempt: every SDK sends a write again when its answer
        is lost, and tested against now, the second attempt would find the first one's
        expired record and report the session ended elsewhere.
        """
        self._save(*self._save_call(session_id, record, changed, live_at))

    @telemetry.traced("increment")
    @_bounded("increment a counter")
    def increment(
        self, session_id: str, name: str, delta: int = 1, *, expires_at: float, base: int = 0
    ) -> int:
        """Atomically add `delta` to the counter `name` of a live record; returns the new value.

        One conditional write, which also sets the record's expiry: concurrent increments
        never lose a count, and a record that was deleted or has expired raises SessionGone.
        If `name` is not a counter yet (absent, or a plain value written by a save), it
        becomes one worth base + delta: pass the plain integer you loaded as `base`.
        """
        rid, field = self._prepare_increment(session_id, name)
        with retries.at_most_once():
            return self._increment(rid, field, delta, base, expires_at, time.time())

    @telemetry.traced("delete")
    @_bounded("delete a session")
    def delete(self, session_id: str) -> None:
        """Remove the record; idempotent."""
        if session_ids.is_valid_session_id(session_id):
            self._delete(session_ids.record_id(session_id))

    @telemetry.traced("purge_expired")
    def purge_expired(self, *, batch_size: int = 500, progress: Progress | None = None) -> int:
        """Remove expired records in batches; returns how many (0 where the store's TTL does it)."""
        return self._purge_expired(time.time(), batch_size, progress)

    @telemetry.traced("for_user")
    @_bounded("list the sessions of a user", own=False)
    def for_user(self, user_id: str, *, current: str | None = None) -> list[SessionInfo]:
        """The live sessions of one user, found through an index, most recent first.

        Each comes with its metadata and a handle for revoke(); the one whose session id is
        `current` (the asking request's) is marked current.
        """
        return _listing(self._for_user(str(user_id)), current)

    @telemetry.traced("revoke")
    @_bounded("revoke a session", own=False)
    def revoke(self, user_id: str, handle: str) -> bool:
        """Revoke the session `handle` (from for_user) names, if it is one of `user_id`'s.

        Returns False if it is not (gone already, or another user's: a handle never
        reaches a session of somebody else).
        """
        if not session_ids.is_record_id(handle):
            return False  # a forged or mangled form value never reaches the store
        revoked = self._revoke(str(user_id), handle)
        _revoked(self, str(user_id), "revoked", int(revoked))
        return revoked

    @telemetry.traced("delete_for_user")
    @_bounded("delete the sessions of a user", own=False)
    def delete_for_user(
        self, user_id: str, *, keep: str | None = None, progress: Progress | None = None
    ) -> int:
        """Revoke every session of one user except `keep` (a session id); returns the count.

        `progress`, if given, is called after each batch of deletes with the running count
        (the last call's is the count returned); not at all if there was nothing to delete.
        """
        count = len(self._call_delete_for_user(str(user_id), _keep_rid(keep), progress))
        _revoked(self, str(user_id), "others" if keep else "user", count)
        return count

    # ---------------------------------------------------------------- public (async)

    @telemetry.atraced("load")
    @_abounded("load a session")
    async def aload(self, session_id: str) -> SessionRecord | None:
        if not session_ids.is_valid_session_id(session_id):
            return None
        rid = session_ids.record_id(session_id)
        return self._decode(await self._native(self._aload, self._load, rid))

    @telemetry.atraced("create")
    @_abounded("create a session")
    async def acreate(self, session_id: str, record: SessionRecord) -> None:
        rid, encoded = _rid_for_write(session_id), self._encode(record)
        await self._native(self._acreate, self._create, rid, encoded)

    @telemetry.atraced("save")
    @_abounded("save a session")
    async def asave(
        self,
        session_id: str,
        record: SessionRecord,
        changed: Iterable[str],
        *,
        live_at: float | None = None,
    ) -> None:
        args = self._save_call(session_id, record, changed, live_at)
        await self._native(self._asave, self._save, *args)

    @telemetry.atraced("increment")
    @_abounded("increment a counter")
    async def aincrement(
        self, session_id: str, name: str, delta: int = 1, *, expires_at: float, base: int = 0
    ) -> int:
        rid, field = self._prepare_increment(session_id, name)
        args = (rid, field, delta, base, expires_at, time.time())
        with retries.at_most_once():
            return await self._native(self._aincrement, self._increment, *args)

    @telemetry.atraced("delete")
    @_abounded("delete a session")
    async def adelete(self, session_id: str) -> None:
        if session_ids.is_valid_session_id(session_id):
            await self._native(self._adelete, self._delete, session_ids.record_id(session_id))

    # These run their sync twin in a worker thread: its span (and the context, copied
    # into the thread by anyio) covers them; a `progress` callback is called in that thread.
    async def apurge_expired(
        self, *, batch_size: int = 500, progress: Progress | None = None
    ) -> int:
        call = functools.partial(self.purge_expired, batch_size=batch_size, progress=progress)
        return await in_thread(call)

    async def afor_user(self, user_id: str, *, current: str | None = None) -> list[SessionInfo]:
        return await in_thread(functools.partial(self.for_user, user_id, current=current))

    async def arevoke(self, user_id: str, handle: str) -> bool:
        return await in_thread(functools.partial(self.revoke, user_id, handle))

    async def adelete_for_user(
        self, user_id: str, *, keep: str | None = None, progress: Progress | None = None
    ) -> int:
        call = functools.partial(self.delete_for_user, user_id, keep=keep, progress=progress)
        return await in_thread(call)

    async def _native(
        self, native: Callable[..., Awaitable[T]], sync: Callable[..., T], *args: Any
    ) -> T:
        # The SDKs' async clients need asyncio; under trio (or any other loop), or without a
        # native client, the sync method runs in a worker thread instead.
        cancel_after = deadline.backstop()
        if self.native_async() and _on_asyncio():
            if cancel_after is None:
                return await native(*args)
            try:
                async with asyncio.timeout(cancel_after):
                    return await native(*args)
            except TimeoutError:
                raise self._late() from None
        call = functools.partial(sync, *args)
        if cancel_after is None:
            return await in_thread(call)
        # A sync client may overrun the deadline (PyMongo waits for its monitor in steps of
        # 0.5 s): the request stops waiting for it at the backstop, as for a native client,
        # and the thread finishes the call on its own, bounded by the SDK's own timeouts.
        with anyio.move_on_after(cancel_after):
            return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        raise self._late()

    def _late(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the {self.kind} store did not answer within the request deadline"
            f" ({self.deadline:g} s of store time)"
        )

    # ------------------------------------------------------------------- operations

    @abc.abstractmethod
    def provision(self, *, fix: bool = False) -> list[str]:
        """Create what the store needs (table, indexes, TTL); idempotent. Returns what it did.

        Something of ours that exists with other settings (say, an index with another TTL)
        is reported as a ConfigurationError and left alone, unless `fix` is true.
        """

    @abc.abstractmethod
    def drop(self, *, progress: Progress | None = None) -> None:
        """Delete the store's table or collection and every session in it.

        A store that deletes record by record calls `progress` with the running count.
        """

    @abc.abstractmethod
    def check(self) -> list[CheckResult]:
        """Report, without changing anything, whether the store is ready to serve sessions."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A one-line, secret-free description for messages (e.g. 'sqlite file ./x.db')."""

    # What the operations (cloudsessions purge/destroy) report; stores refine them.

    def drop_target(self) -> tuple[bool, str]:
        """(True, what drop() deletes) or (False, why there is nothing to delete)."""
        return True, f"{self.describe()} and every session in it"

    def purge_note(self) -> str | None:
        """Who else deletes expired sessions (the store's own TTL), said after a purge."""
        return None

    def count_records(self, *, expired_only: bool) -> int | None:
        """The progress bar's total, when cheap to count: how many records purge_expired
        (expired_only) or drop will report through `progress`; None if unknown or if it
        reports none (a DROP TABLE)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (every event loop's too); reopened lazily if used again."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the running event loop's async client (e.g. at ASGI lifespan shutdown)."""

    def native_async(self) -> bool:
        """True if the async twins below apply (a native asyncio client); else worker threads."""
        return False

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Raise the block's SDK errors as ours, by the store's error_kinds."""
        return translated(self.error_kinds, self, what)

    # ------------------------------------------------------- what a store implements

    @abc.abstractmethod
    def _load(self, rid: str) -> EncodedRecord | None: ...

    @abc.abstractmethod
    def _create(self, rid: str, record: EncodedRecord) -> None: ...

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
    def _delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None = None
    ) -> list[str]:
        """Delete the user's sessions but keep_rid; returns the record ids it deleted (a
        cache in front invalidates exactly those). After each batch it deletes, it calls
        `progress` (if given) with the running count; with nothing to delete, never."""

    def _call_delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None
    ) -> list[str]:
        """_delete_for_user, given `progress` only if there is one: a store written before
        the hook took it (another package's) still works when nobody asks for progress."""
        if progress is None:
            return self._delete_for_user(user_id, keep_rid)
        return self._delete_for_user(user_id, keep_rid, progress)

    def _revoke(self, user_id: str, rid: str) -> bool:
        """Delete record `rid` only if it is `user_id`'s; True if it was deleted.

        This default is one index query and one delete; a store that can delete on a
        condition does it in one.
        """
        if not any(s.record_id == rid for s in self._for_user(user_id)):
            return False
        self._delete(rid)
        return True

    def record_size(self, record: EncodedRecord) -> int:
        """Bytes the store will count against its item limit; stores refine it."""
        return codec.encoded_size(record.fields) + 8 * len(record.fields) + RECORD_OVERHEAD

    # Native async twins, called under asyncio when native_async() is true (see _native).

    async def _aload(self, rid: str) -> EncodedRecord | None:
        raise NotImplementedError(f"{type(self).__name__} has no native async client")

    async def _acreate(self, rid: str, record: EncodedRecord) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no native async client")

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no native async client")

    async def _adelete(self, rid: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no native async client")

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no native async client")

    # ---------------------------------------------------------------------- helpers

    def _encode(self, record: SessionRecord) -> EncodedRecord:
        meta = metadata.encode(record.meta) if record.meta is not None else None
        fields = codec.encode_data(record.data)
        stored = EncodedRecord(fields, record.expires_at, record.user_id, meta=meta)
        size = self.record_size(stored)
        if size > self.max_record_bytes:
            raise SessionTooLarge(size, self.max_record_bytes, self.kind)
        return stored

    def _save_call(
        self,
        session_id: str,
        record: SessionRecord,
        changed: Iterable[str],
        live_at: float | None,
    ) -> tuple[str, Changes, float, str | None, float]:
        """What save() gives _save: the changes, and the record live at `live_at` (now)."""
        rid, changes = self._prepare_save(session_id, record, changed)
        now = time.time() if live_at is None else live_at
        return rid, changes, record.expires_at, record.user_id, now

    def _prepare_save(
        self, session_id: str, record: SessionRecord, changed: Iterable[str]
    ) -> tuple[str, Changes]:
        if not session_ids.is_valid_session_id(session_id):
            raise SessionGone("a malformed session id names no record")
        encoded = self._encode(record)
        fields = encoded.fields
        changes = Changes(meta=encoded.meta)
        for name in changed:
            field = codec.encode_field(name)
            if field in fields:
                changes.set_fields[field] = fields[field]
            else:
                changes.removed_fields.append(field)
        return session_ids.record_id(session_id), changes

    @staticmethod
    def _prepare_increment(session_id: str, name: str) -> tuple[str, str]:
        if not session_ids.is_valid_session_id(session_id):
            raise SessionGone("a malformed session id names no record")
        return session_ids.record_id(session_id), codec.encode_field(name)

    def _decode(self, stored: EncodedRecord | None) -> SessionRecord | None:
        # Expiry is enforced here, whatever the store's own TTL sweeper has done so far.
        if stored is None:
            return None
        meta = metadata.decode(stored.meta) if stored.meta else None
        if stored.expires_at <= time.time():
            if signals.session_expired.receivers:
                user_id, meta = stored.user_id, meta or Metadata()
                signals.session_expired.send(self, user_id=user_id, meta=meta)
            return None
        try:
            data, texts = codec.decode_data(stored.fields)
            counters = codec.decode_counters(stored.counters) if stored.counters else {}
        except ValueError:
            # Treated like an unknown id, as Django does with undecodable session data.
            logger.warning("a session record could not be decoded and was ignored")
            return None
        if counters:
            data.update(counters)
            texts.update((name, str(count)) for name, count in counters.items())
        counted = frozenset(counters)
        return SessionRecord(data, stored.expires_at, stored.user_id, counted, texts, meta)


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call in a worker thread of whatever event loop is running."""
    return await anyio.to_thread.run_sync(call)


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def _keep_rid(session_id: str | None) -> str | None:
    valid = session_id and session_ids.is_valid_session_id(session_id)
    return session_ids.record_id(session_id) if valid and session_id else None


def _listing(sessions: Iterable[SessionInfo], current: str | None) -> list[SessionInfo]:
    """Live sessions only (a TTL sweeper may lag), the current one marked, most recently
    seen first."""
    now, current_rid = time.time(), _keep_rid(current)
    live = [
        dataclasses.replace(s, current=True) if s.record_id == current_rid else s
        for s in sessions
        if s.expires_at > now
    ]
    live.sort(key=lambda s: (not s.current, -(s.last_seen or s.created_at or 0.0)))
    return live


def _revoked(store: Store, user_id: str, reason: str, count: int) -> None:
    if count and signals.session_revoked.receivers:
        signals.session_revoked.send(
            store, user_id=user_id, meta=Metadata(), reason=reason, count=count
        )


def _rid_for_write(session_id: str) -> str:
    if not session_ids.is_valid_session_id(session_id):
        raise ValueError("session ids are made by cloudsessions.new_session_id()")
    return session_ids.record_id(session_id)
