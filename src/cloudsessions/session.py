"""The per-request session logic shared by the Flask and ASGI adapters, framework-free.

One request's session goes through: load (one read, and none without a cookie), the view
reading and changing a plain dict, then one commit that decides every write:

- nothing changed -> no write, no Set-Cookie (unless an expiry refresh is due, see Policy);
- changed keys -> one conditional save of only those keys (diffed against the JSON of each
  value as loaded, so a mutated nested value counts and an unchanged re-assignment does not);
- new session -> one create under a fresh id from `secrets` (no existence check);
- emptied or cleared -> the record is deleted and the cookie too;
- regenerate() -> the old record is deleted and the data is created under a new id.

The decisions are written once, as generators that yield store operations (`_Op`); `drive`
runs them on the sync store API (Flask) and `adrive` on the async one (ASGI), so the two
adapters cannot drift apart. Store errors the logic handles (SessionExists, SessionGone)
are thrown back into the generator; every other error propagates to the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from . import codec, keys
from .errors import ConfigurationError, SessionExists, SessionGone
from .record import SessionRecord
from .store import Store

logger = logging.getLogger("cloudsessions")

T = TypeVar("T")

# A fresh 165-bit id is never taken; a store that keeps saying "exists" is broken, and
# looping on it forever would hang the request.
MAX_CREATE_ATTEMPTS = 5


class Cookie(Enum):
    """What the response does with the session cookie."""

    KEEP = "keep"  # no Set-Cookie header
    SET = "set"  # (re)send the session id, with the current expiry
    DELETE = "delete"  # expire the cookie in the browser


@dataclass(frozen=True, slots=True)
class Policy:
    """How long records live and when a request that changed nothing refreshes them.

    Every write sets the record's expiry to now + `lifetime`. A request that changes nothing
    writes only when a refresh is due: when more than `refresh_after` (a fraction of the
    lifetime) has passed since the expiry was last set. With 0.1 and a 14-day lifetime an
    active session costs one extra write every 1.4 days and survives at least 12.6 days of
    inactivity; 0 refreshes on every request (one write each); None never refreshes, so a
    session expires `lifetime` after its last change however often it is read.
    """

    lifetime: float
    refresh_after: float | None = 0.1
    user_id_key: str | None = None

    def refresh_due(self, expires_at: float | None, now: float) -> bool:
        if self.refresh_after is None or expires_at is None:
            return False
        return expires_at - now < self.lifetime * (1.0 - self.refresh_after)

    def user_id(self, data: Mapping[str, Any]) -> str | None:
        if self.user_id_key is None:
            return None
        value = data.get(self.user_id_key)
        return None if value is None else str(value)


def check_refresh_after(value: object, name: str) -> float | None:
    """Validate a refresh fraction from configuration; `name` is the setting to fix."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigurationError(f"{name} must be a number from 0 to 1 or None, got {value!r}")
    return float(value)


# ------------------------------------------------------------------ store operations


@dataclass(frozen=True, slots=True)
class _Delete:
    key: str


@dataclass(frozen=True, slots=True)
class _Create:
    key: str
    record: SessionRecord


@dataclass(frozen=True, slots=True)
class _Save:
    key: str
    record: SessionRecord
    changed: list[str]


@dataclass(frozen=True, slots=True)
class _Increment:
    key: str
    name: str
    delta: int
    expires_at: float
    base: int


_Op = _Delete | _Create | _Save | _Increment
Steps = Generator[_Op, int | None, T]


def _run(store: Store, op: _Op) -> int | None:
    if isinstance(op, _Delete):
        store.delete(op.key)
    elif isinstance(op, _Create):
        store.create(op.key, op.record)
    elif isinstance(op, _Save):
        store.save(op.key, op.record, op.changed)
    else:
        return store.increment(op.key, op.name, op.delta, expires_at=op.expires_at, base=op.base)
    return None


async def _arun(store: Store, op: _Op) -> int | None:
    if isinstance(op, _Delete):
        await store.adelete(op.key)
    elif isinstance(op, _Create):
        await store.acreate(op.key, op.record)
    elif isinstance(op, _Save):
        await store.asave(op.key, op.record, op.changed)
    else:
        return await store.aincrement(
            op.key, op.name, op.delta, expires_at=op.expires_at, base=op.base
        )
    return None


def drive(store: Store, steps: Steps[T]) -> T:
    """Run `steps` against the sync store API."""
    result: int | None = None
    error: SessionExists | SessionGone | None = None
    try:
        while True:
            try:
                op = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as stop:
                value: T = stop.value
                return value
            result, error = None, None
            try:
                result = _run(store, op)
            except (SessionExists, SessionGone) as exc:
                error = exc
    finally:
        steps.close()


async def adrive(store: Store, steps: Steps[T]) -> T:
    """Run `steps` against the async store API (no thread hop for native async stores)."""
    result: int | None = None
    error: SessionExists | SessionGone | None = None
    try:
        while True:
            try:
                op = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as stop:
                value: T = stop.value
                return value
            result, error = None, None
            try:
                result = await _arun(store, op)
            except (SessionExists, SessionGone) as exc:
                error = exc
    finally:
        steps.close()


# ------------------------------------------------------------------ one request's state


class SessionState:
    """What one request knows about its session beyond the data: id, what is stored, plan.

    The data itself lives in the framework's session object (a dict); methods take it as
    an argument, so this class never needs to know the framework.
    """

    def __init__(
        self, store: Store, policy: Policy, cookie: str | None, record: SessionRecord | None
    ) -> None:
        self.store = store
        self.policy = policy
        # The id the browser sent, if it had the shape of one (live or not).
        self.cookie_key = cookie if keys.is_valid_key(cookie) else None
        # The id of this session: None until a fresh session is first written.
        self.key = self.cookie_key if record is not None else None
        self.new = record is None
        self.expires_at = record.expires_at if record is not None else None
        # JSON of each value as last loaded or written: what the commit diffs against.
        loaded = record.data if record is not None else {}
        self._stored = codec.snapshot(loaded)
        # Keys the store keeps as counters: an increment adds to them, whatever `base` says.
        self._counters = set(record.counters) if record is not None else set()
        # Ids of records this request ended (regenerate/clear): deleted at the next write.
        self._ended: list[str] = []
        # True while self.key is a fresh id that the store does not hold yet.
        self._unsaved = False
        # The record vanished under us (logged out elsewhere): write nothing more.
        self.gone = False
        # This request already wrote the record (an increment), so the cookie is re-sent.
        self._wrote = False

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(
        cls, store: Store, policy: Policy, cookie: str | None
    ) -> tuple[dict[str, Any], SessionState]:
        # No cookie, no round trip; a malformed one costs none either (Store.load checks).
        record = store.load(cookie) if cookie else None
        return (dict(record.data) if record else {}), cls(store, policy, cookie, record)

    @classmethod
    async def aload(
        cls, store: Store, policy: Policy, cookie: str | None
    ) -> tuple[dict[str, Any], SessionState]:
        record = await store.aload(cookie) if cookie else None
        return (dict(record.data) if record else {}), cls(store, policy, cookie, record)

    # ----------------------------------------------------------------- id changes

    def regenerate(self) -> None:
        """Move the data to a new id at the next write; the old record is deleted then."""
        self._end_current()
        self.key, self._unsaved = keys.new_key(), True

    def end(self) -> None:
        """The session was cleared: delete its record; anything set later gets a new id."""
        self._end_current()
        self.key, self._unsaved = None, False

    def _end_current(self) -> None:
        if self.key is not None and not self._unsaved:
            self._ended.append(self.key)
        self._stored, self.expires_at = {}, None
        self._counters = set()

    # ----------------------------------------------------------------- writes

    def commit(self, data: Mapping[str, Any], now: float | None = None) -> Cookie:
        """Write what the request changed (sync store API); returns the cookie action."""
        return drive(self.store, self._commit(data, time.time() if now is None else now))

    async def acommit(self, data: Mapping[str, Any], now: float | None = None) -> Cookie:
        return await adrive(self.store, self._commit(data, time.time() if now is None else now))

    def increment(self, data: dict[str, Any], name: str, delta: int = 1) -> int:
        return drive(self.store, self._increment(data, name, delta, time.time()))

    async def aincrement(self, data: dict[str, Any], name: str, delta: int = 1) -> int:
        return await adrive(self.store, self._increment(data, name, delta, time.time()))

    def _commit(self, data: Mapping[str, Any], now: float) -> Steps[Cookie]:
        ended = bool(self._ended)
        yield from self._delete_ended()
        if self.gone:
            return Cookie.KEEP
        if not data:
            if self.key is not None and not self._unsaved:
                yield _Delete(self.key)  # emptied: the session ends
                ended = True
            self.key, self._unsaved = None, False
            # Only a session this request ended loses its cookie. A cookie that named no live
            # session is left alone: a concurrent login may just have replaced it, and
            # deleting it would log that browser out. It costs one read per request until
            # the browser gets a new id, and nothing at all if it is malformed.
            return Cookie.DELETE if ended and self.cookie_key else Cookie.KEEP
        if self.key is None or self._unsaved:
            yield from self._create(data, now)
            return Cookie.SET
        changed = codec.changed_keys(self._stored, data)
        if changed or self.policy.refresh_due(self.expires_at, now):
            try:
                yield from self._save(data, changed, now)
            except SessionGone:
                return Cookie.KEEP
        return Cookie.SET if self._wrote else Cookie.KEEP

    def _increment(self, data: dict[str, Any], name: str, delta: int, now: float) -> Steps[int]:
        if self.gone:
            raise SessionGone("the session was deleted or has expired")
        yield from self._delete_ended()
        if self.key is None or self._unsaved:
            # The counter must live in a record: create it (with the data so far) first.
            yield from self._create(data, now)
        assert self.key is not None
        value = data.get(name)
        if name in data and self._stored.get(name) != codec.encode_value(value):
            # The store adds to its own copy; a value this request set must reach it first.
            yield from self._save(data, [name], now)
        # The store starts a field that is not a counter yet from `base`: the plain integer
        # the session holds.
        base = value if type(value) is int and name not in self._counters else 0
        expires_at = now + self.policy.lifetime
        try:
            result = yield _Increment(self.key, name, delta, expires_at, base)
        except SessionGone:
            self._lost()
            raise
        assert isinstance(result, int)
        data[name] = result
        self._stored[name] = codec.encode_value(result)
        self._counters.add(name)
        self.expires_at, self._wrote = expires_at, True
        return result

    def _delete_ended(self) -> Steps[None]:
        while self._ended:
            yield _Delete(self._ended[0])
            self._ended.pop(0)

    def _create(self, data: Mapping[str, Any], now: float) -> Steps[None]:
        record = SessionRecord(dict(data), now + self.policy.lifetime, self.policy.user_id(data))
        for _ in range(MAX_CREATE_ATTEMPTS):
            if self.key is None:
                self.key = keys.new_key()
            try:
                yield _Create(self.key, record)
            except SessionExists:
                self.key = None
                continue
            self._unsaved = False
            self._stored = codec.snapshot(record.data)
            self._counters = set()  # a create writes every value as plain JSON
            self.expires_at, self._wrote = record.expires_at, True
            return
        raise SessionExists(f"no free session id after {MAX_CREATE_ATTEMPTS} attempts")

    def _save(self, data: Mapping[str, Any], changed: list[str], now: float) -> Steps[None]:
        assert self.key is not None
        user_id = self.policy.user_id(data)
        record = SessionRecord(dict(data), now + self.policy.lifetime, user_id)
        try:
            yield _Save(self.key, record, changed)
        except SessionGone:
            self._lost()
            raise
        self._counters.difference_update(changed)  # a save writes plain JSON over a counter
        for name in changed:
            if name in data:
                self._stored[name] = codec.encode_value(data[name])
            else:
                self._stored.pop(name, None)
        self.expires_at, self._wrote = record.expires_at, True

    def _lost(self) -> None:
        # Never resurrect a session ended elsewhere (logout, revocation, expiry): this
        # request's changes are dropped and the cookie is left as it is (see _commit).
        self.gone = True
        logger.warning(
            "a session was deleted or expired while a request used it; its changes were dropped"
        )


class ServerSession(dict[str, Any]):
    """The methods every adapter's session object adds to the plain dict interface.

    Subclasses set `_state` in their constructor.
    """

    _state: SessionState

    @property
    def sid(self) -> str | None:
        """The session id (the cookie value); None for a session not written yet."""
        return self._state.key

    @property
    def record_id(self) -> str | None:
        """The id the record is stored under (a hash of the session id): safe to show or log."""
        key = self._state.key
        return keys.record_id(key) if key is not None else None

    def regenerate(self) -> None:
        """A new session id for the same data, e.g. at login (defeats session fixation).

        The old record is deleted and the data created under the new id when the response
        is sent (or at the next increment): one delete and one create.
        """
        self._state.regenerate()

    cycle_key = regenerate  # Django's name for it

    def clear(self) -> None:
        """End the session: its record and cookie are deleted when the response is sent.

        Anything set afterwards in the same request starts a new session with a new id,
        so clear() at login or logout also rotates the id.
        """
        super().clear()
        self._state.end()

    def increment(self, name: str, delta: int = 1) -> int:
        """Add `delta` to the integer `name` atomically in the store; returns the new value.

        Unlike ``session[name] += 1``, concurrent requests never lose a count. It writes at
        once (one conditional write that also refreshes the expiry); a new or regenerated
        session is created first. Raises SessionGone if the session was ended elsewhere.
        """
        return self._state.increment(self, name, delta)

    async def aincrement(self, name: str, delta: int = 1) -> int:
        """increment() through the store's async API."""
        return await self._state.aincrement(self, name, delta)
