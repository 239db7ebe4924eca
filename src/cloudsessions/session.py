"""The session lifecycle, written once for every front door (Django, Flask, ASGI).

Each front door maps its framework's session API onto one `SessionState` per request (per
Django SessionStore object); the state makes every decision about the store:

- load: one read; none without a cookie, none for a malformed one; a miss creates nothing;
- nothing changed -> no write (unless an expiry refresh is due, see Policy);
- changed keys -> one conditional save of only those keys, diffed against the JSON of each
  value as loaded, so a mutated nested value counts and an unchanged re-assignment does not;
- new session -> one create under a fresh id from `secrets` (no existence check), tried
  under another id at most MAX_CREATE_ATTEMPTS times;
- emptied or cleared -> the record is deleted, and the cookie too;
- regenerate(), or the session's user changed (session fixation) -> the data is created
  under a new id, then the old id is retired (expired at once, only if it is still live);
- a save that finds the record gone (logged out elsewhere) never re-creates it.

Every value is encoded before the first write, so a value that cannot be stored fails the
request with nothing written. State changes only after the store confirmed a write: a
write that failed (store unavailable) leaves the session as if it had not been tried.

The decisions are generators that yield store operations (cloudsessions.steps), run on the
sync or the async store API by the same drivers, so the sync and async paths of every front
door are the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from . import codec, session_ids, signals, steps
from .deadline import Budget
from .errors import (
    SessionExists,
    SessionGone,
    SessionValueError,
    StoreUnavailable,
)
from .metadata import Client
from .policy import Cookie, Policy, Values
from .record import Metadata, SessionInfo, SessionRecord
from .steps import Steps, adrive, drive
from .store import Store

logger = logging.getLogger("cloudsessions")

T = TypeVar("T")

# A fresh 165-bit id is never taken; a store that keeps saying "exists" is broken, and
# looping on it forever would hang the request.
MAX_CREATE_ATTEMPTS = 5
# How long before the expiry a retirement writes the record must be live (Store.save's
# live_at): more than any store's time precision (MongoDB's is 1 ms).
RETIREMENT_MARGIN = 0.01


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A session's data as a write needs it, worked out once per write."""

    values: dict[str, Any]  # JSON values, as the store is given them (see Values)
    texts: dict[str, str]  # the JSON text of each: what the diff compares
    user: str | None  # the user id (see Policy)


# Immutable JSON scalars: one that is still the object a load gave still has its text.
_SCALARS = frozenset({str, int, float, bool, type(None)})


# ------------------------------------------------------------------ one session's state


class SessionState:
    """What one request knows about its session beyond the data: id, what is stored, plan.

    The data itself lives in the framework's session object (a dict); the plans take it as
    an argument, so this class never needs to know the framework.
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        session_id: str | None = None,
        client: Client | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        # Who is asking (address, user agent): recorded by a signed-in session's writes.
        self.client = client
        # The store time this request may still spend (the store's `deadline`): renewed
        # when a commit or save ends the request's session work, so an object kept for
        # longer (a script's Django SessionStore) gets one budget per save.
        self.budget = Budget(store.deadline)
        self.ask(session_id)

    def ask(self, session_id: str | None, *, old_key: str | None = None) -> None:
        """Start over with the session id the browser (or the caller) named; nothing is read.

        `old_key`: the cookie value as the browser sent it, when it is not `session_id` (the
        previous backend's key, see cloudsessions.migration; default: `session_id`).
        """
        # The id of this session: the one asked for until a load finds no record, then None
        # until a new session is first written.
        self.session_id = session_id
        # The id the browser sent, if it had the shape of one (live or not).
        valid = session_ids.is_valid_session_id(session_id)
        self.cookie_session_id = session_id if valid else None
        # The cookie value a migration looks up in the previous backend, once.
        self._old_key = old_key if old_key is not None else session_id
        # This request copied (or found copied) its session from the previous backend: the
        # response carries the new cookie.
        self.migrated = False
        self.new = True
        self.expires_at: float | None = None
        # JSON of each value as last loaded or written: what a write diffs against.
        self._stored: dict[str, str] = {}
        # Scalar values as loaded, with their stored text: a value that is still that very
        # object, while its stored text is still that very text, need not be encoded again.
        self._loaded: dict[str, tuple[Any, str]] = {}
        # Keys the store keeps as counters: an increment adds to them, whatever `base` says.
        self._counters: set[str] = set()
        # The user id of the record as last loaded or written (see Policy).
        self._user: str | None = None
        # When the record (or the one it was rotated from) was created, as its metadata says.
        self._created_at: float | None = None
        # regenerate() was called on a stored session: the next create is a rotation.
        self._rotating = False
        # Records this request ended (clear, logout), with their user: deleted at the next
        # write.
        self._ended: list[tuple[str, str | None]] = []
        # The id regenerate() replaced: retired once the new record exists (see retire()),
        # and the expiry its retirement writes, fixed when regenerate() was called.
        self._retiring: str | None = None
        self._retired_at = 0.0
        # True while self.session_id is a fresh id that the store does not hold yet.
        self._unsaved = False
        # The id a rotation created in this request, which no browser holds yet: a change of
        # user on it needs no second rotation, and the response must carry it (moved_to).
        self._rotated_to: str | None = None
        # cycle() created the rotation's record before the view set the user: the rotation
        # is announced (signals.session_rotated) by the next write, which knows the user.
        self._announce_rotation = False
        # The record vanished under us (logged out elsewhere): write nothing more.
        self.gone = False
        # This request wrote the record (so the cookie is re-sent) / created it.
        self.wrote = False
        self.created = False
        # Set for a session that can never send a cookie (a WebSocket's): it writes nothing.
        self.read_only = False

    @property
    def stored(self) -> bool:
        """The store holds a live record under self.session_id, as far as this request knows."""
        return self.session_id is not None and not self._unsaved and not self.new and not self.gone

    @property
    def moved_to(self) -> str | None:
        """The id the browser must be sent whatever the response (a 503 included): the
        record a rotation created in this request, while the browser's cookie names the
        old id, which is retired (or being retired). None: the browser's cookie is right."""
        moved = self._rotated_to
        return moved if moved == self.session_id and self.stored else None

    def run(self, plan: Steps[T]) -> T:
        return drive(self.store, plan, self.budget)

    async def arun(self, plan: Steps[T]) -> T:
        return await adrive(self.store, plan, self.budget)

    # ----------------------------------------------------------------- loading

    @classmethod
    def open(
        cls, store: Store, policy: Policy, cookie: str | None, client: Client | None = None
    ) -> tuple[dict[str, Any], SessionState]:
        """The session named by a request's cookie: its data and state (one read at most)."""
        state = cls(store, policy, cookie, client)
        return state.run(state.load()), state

    @classmethod
    async def aopen(
        cls, store: Store, policy: Policy, cookie: str | None, client: Client | None = None
    ) -> tuple[dict[str, Any], SessionState]:
        state = cls(store, policy, cookie, client)
        return await state.arun(state.load()), state

    def load(self) -> Steps[dict[str, Any]]:
        """The data of the live record, or {} (and session_id None) if there is none."""
        # No id, no round trip; a malformed one costs none either (Store.load checks).
        record = (yield steps.load(self.session_id)) if self.session_id else None
        old_key, self._old_key = self._old_key, None
        if record is None and old_key and self.policy.migration is not None:
            record = yield from self._migrate(old_key)
        self._end_current(keep=False)
        self._unsaved = self.gone = False
        if record is None:
            self.session_id, self.new = None, True
            return {}
        values = self.policy.values
        data: dict[str, Any]
        if type(values) is Values:  # plain JSON: the values as loaded (a fresh dict)
            data = record.data
        else:
            data = {k: values.load(v) for k, v in record.data.items()}
        self.new = False
        self.expires_at = record.expires_at
        self._stored = record.texts if record.texts is not None else codec.snapshot(record.data)
        stored = self._stored
        self._loaded = {k: (v, stored[k]) for k, v in data.items() if type(v) in _SCALARS}
        self._counters = set(record.counters)
        self._user = self.policy.user_id(data)
        self._created_at = record.meta.created_at if record.meta is not None else None
        return data

    @property
    def old_cookie_to_delete(self) -> str | None:
        """The previous backend's cookie, when it has a name of its own and this request
        moved its session: the response deletes it, so it is never looked up again (with a
        source that keeps its records, it could otherwise bring back a session signed out
        here)."""
        migration = self.policy.migration
        return migration.source.cookie_name if migration is not None and self.migrated else None

    def _migrate(self, old_key: str) -> Steps[SessionRecord | None]:
        """The session the previous backend holds under `old_key`, copied into the store.

        Every request that carries one old key meets on one id, migrated_id(old_key): the
        first copies the old session there (a create), a concurrent one finds the create
        taken and loads the copy, a bulk copy (`cloudsessions migrate`) made it before.
        The old backend is asked first: a request that finds the old record gone loads the
        copy whoever deleted it made before deleting it. Then the old record is deleted
        (idempotent; a failure is a StoreUnavailable, so the browser keeps its old cookie
        and the next request tries again) and the response sends the new id. Nothing
        copies a session the old backend no longer has: logged out there, it stays out.
        """
        migration = self.policy.migration
        assert migration is not None
        new_id = migration.new_id(old_key)
        if new_id == self.session_id:
            return None  # the cookie is a copy's id already: gone since
        old = yield steps.fetch_old(migration, old_key)
        record: SessionRecord | None
        if old is None:
            record = yield steps.load(new_id)  # copied (and the old one deleted) before
            if record is None:
                return None
        else:
            user = self.policy.user_id(old.data)
            self.session_id = new_id  # for the metadata: a session created now
            meta = self._observe(user)
            record = SessionRecord(dict(old.data), old.expires_at, user, meta=meta)
            try:
                yield steps.create(new_id, record)
            except SessionExists:  # another request of this browser, or the bulk copy
                record = yield steps.load(new_id)
                if record is None:
                    self.session_id = None
                    return None  # and it has ended since (a logout): it stays ended
            yield steps.discard_old(migration, old_key)
        self.session_id = self.cookie_session_id = new_id
        self.migrated = self.wrote = True  # the response sends the new cookie
        return record

    # ----------------------------------------------------------------- id changes

    def regenerate(self) -> None:
        """Move the data to a new id at the next write; the old id is retired after it."""
        if self.session_id is not None and not self._unsaved and self._retiring is None:
            self._retiring, self._retired_at = self.session_id, time.time()
            self._rotating = True
        self._end_current(keep=False)
        self.session_id, self._unsaved = session_ids.new_session_id(), True

    def cycle(self, data: Mapping[str, Any], expires_at: float) -> Steps[None]:
        """regenerate(), carried out now (Django's cycle_key()): the data is created under
        the new id, then the old id is retired, so the old id is never served again once
        this returns, and the data always has a live record: a request that fails later
        (a 503) moves the browser to the new id (moved_to) instead of leaving it on a
        retired one. No stored session: nothing is written. A store that fails here leaves
        what did not happen to the next write (create, then retire)."""
        enc = self._encode(data)
        self.regenerate()
        if self._retiring is None:
            return
        yield from self._create(enc, expires_at, announce=False)
        yield from self._retire_after_create()

    def end(self) -> None:
        """The session was cleared: delete its record; anything set later gets a new id."""
        if self._retiring is not None:  # regenerated, then cleared: a plain logout
            self._ended.append((self._retiring, self._user))
            self._retiring = None
        self._end_current()
        self.session_id, self._unsaved = None, False
        self._created_at, self._rotating = None, False

    def retire(self) -> Steps[None]:
        """End the id that regenerate() replaced, now, and only if it is still live.

        One conditional write that expires the old record at once (it is never served
        again; the store's TTL or purge removes it). If it was already ended elsewhere (a
        logout, a revocation) it raises SessionGone: the session must not live on under a
        new id. If the store fails (StoreUnavailable) the retirement stays due: it writes
        the same expiry every time, so one that went through before its answer was lost
        goes through again (see Store.save).
        """
        old = self._retiring
        if old is None:
            return
        try:
            # Live just before the expiry it writes: a retry of this very write (its answer
            # lost) passes again, a session ended elsewhere before it does not (Store.save).
            ended = SessionRecord({}, self._retired_at, None)
            yield steps.save(old, ended, [], live_at=self._retired_at - RETIREMENT_MARGIN)
        except SessionGone:
            self._retiring = None
            self._lost()
            raise
        self._retiring = None

    def delete_ended(self) -> Steps[None]:
        """Delete the records regenerate() and end() left behind, now."""
        while self._ended:
            session_id, user = self._ended[0]
            yield steps.delete(session_id)
            self._ended.pop(0)
            if signals.session_revoked.receivers:
                signals.session_revoked.send(
                    self.store, user_id=user, meta=Metadata(), reason="logout", count=1
                )

    def _end_current(self, keep: bool = True) -> None:
        # An id asked for but not loaded yet (Django's flush() without a read) is deleted
        # too: deleting an unknown id is harmless, keeping a live one is not.
        if keep and self.session_id is not None and not self._unsaved:
            self._ended.append((self.session_id, self._user))
        self._stored, self.expires_at, self._user = {}, None, None
        self._counters = set()

    def _rotate_if_user_changed(self, enc: _Encoded) -> None:
        # An id this request's rotation made has never reached a browser: nobody can have
        # planted it, so the user's change on it needs no second rotation.
        if (
            self.policy.rotate_on_user_change
            and self.stored
            and enc.user != self._user
            and self.moved_to is None
        ):
            self.regenerate()

    # ----------------------------------------------------------------- writes

    def commit(self, data: Mapping[str, Any], now: float | None = None) -> Steps[Cookie]:
        """The end of a Flask or ASGI request: write what it changed, if anything.

        An emptied session is deleted; a session ended elsewhere is left alone (the changes
        are dropped, with a warning). Returns what to do with the cookie.
        """
        try:
            return (yield from self._commit(data, now))
        finally:
            self.budget.renew()

    def _commit(self, data: Mapping[str, Any], now: float | None) -> Steps[Cookie]:
        now = time.time() if now is None else now
        enc = self._encode(data)
        if self.gone:
            return Cookie.KEEP
        if not data:
            if self.stored or self._retiring is not None:
                self.end()
            ended = bool(self._ended)
            yield from self.delete_ended()
            self.session_id, self._unsaved = None, False
            # Only a session this request ended loses its cookie. A cookie that named no live
            # session is left alone: a concurrent login may just have replaced it, and
            # deleting it would log that browser out. It costs one read per request until
            # the browser gets a new id, and nothing at all if it is malformed.
            return Cookie.DELETE if ended and self.cookie_session_id else Cookie.KEEP
        touch = self.policy.refresh_due(self.expires_at, now)
        try:
            yield from self._write(
                enc, now + self.policy.lifetime, touch=touch, optional_touch=True
            )
        except SessionGone:
            return Cookie.KEEP
        return Cookie.SET if self.wrote else Cookie.KEEP

    def save(
        self, data: Mapping[str, Any], expires_at: float, *, must_create: bool = False
    ) -> Steps[None]:
        """An explicit save (Django's save()): write now, an empty session included.

        Nothing changed since this object last wrote -> no write; otherwise the changed keys,
        or only the expiry. `must_create` creates under the current id and raises
        SessionExists if it is taken. A record ended elsewhere raises SessionGone.
        """
        exact = must_create and self.session_id is not None
        try:
            yield from self._write(
                self._encode(data), expires_at, touch=not self.wrote, exact=exact
            )
        finally:
            self.budget.renew()
            if self._announce_rotation:  # no write after cycle(): the rotation all the same
                self._rotated(self._user, None)

    def create(self, data: Mapping[str, Any], expires_at: float) -> Steps[None]:
        """Store the data under a fresh id (Django's create()); the current id is dropped."""
        enc = self._encode(data)
        self.session_id, self._unsaved = None, False
        yield from self._create(enc, expires_at)

    def increment(
        self, data: dict[str, Any], name: str, delta: int, expires_at: float | None = None
    ) -> Steps[int]:
        """Add `delta` to the counter `name` in the store, now; sets data[name].

        A new or regenerated session is created first, and a value this request assigned
        to `name` is saved first, because the store adds to its own copy.
        """
        if self.read_only:
            raise RuntimeError("this session is read-only: a WebSocket cannot set a cookie")
        if self.gone:
            raise SessionGone("the session was deleted or has expired")
        expires_at = time.time() + self.policy.lifetime if expires_at is None else expires_at
        enc = self._encode(data)
        self._rotate_if_user_changed(enc)
        yield from self.delete_ended()
        if self.session_id is None or self._unsaved:
            yield from self._create(enc, expires_at)
            yield from self._retire_after_create()
        elif self._stored.get(name) != enc.texts.get(name):
            # A value this request assigned (or removed) reaches the store first.
            yield from self._save(enc, [name], expires_at)
        assert self.session_id is not None
        # The store starts a field that is not a counter yet from `base`: the plain integer
        # the session holds.
        value = data.get(name)
        base = value if type(value) is int and name not in self._counters else 0
        try:
            result = yield steps.increment(self.session_id, name, delta, expires_at, base)
        except SessionGone:
            self._lost()
            raise
        assert isinstance(result, int)
        data[name] = result
        self._stored[name] = codec.encode_value(result)
        self._counters.add(name)
        self.expires_at, self.wrote = expires_at, True
        return result

    def _write(
        self,
        enc: _Encoded,
        expires_at: float,
        *,
        touch: bool,
        exact: bool = False,
        optional_touch: bool = False,
    ) -> Steps[None]:
        """The one write a request makes: create, save the changed keys, or refresh.

        With `optional_touch`, a refresh that is all there is to write may fail (store
        unavailable) without failing the request: the record is still live, and the next
        request tries again.
        """
        if self.gone:
            raise SessionGone("the session was deleted or has expired")
        if not exact:
            self._rotate_if_user_changed(enc)
        yield from self.delete_ended()
        if exact or self.session_id is None or self._unsaved or self.new:
            yield from self._create(enc, expires_at, exact=exact)
            yield from self._retire_after_create()
            return
        changed = [k for k, text in enc.texts.items() if self._stored.get(k) != text]
        changed += [k for k in self._stored if k not in enc.texts]
        if not (changed or touch):
            return
        try:
            yield from self._save(enc, changed, expires_at)
        except StoreUnavailable:
            if changed or not optional_touch:
                raise
            logger.warning("the store did not answer an expiry refresh; it is retried later")

    def _retire_after_create(self) -> Steps[None]:
        # The new record exists before the old one is retired: a create that fails (too
        # large, store unavailable) leaves the session as it was. If the old one turns out
        # to have been ended elsewhere meanwhile, the new one goes too.
        try:
            yield from self.retire()
        except SessionGone:
            assert self.session_id is not None
            yield steps.delete(self.session_id)
            self.session_id, self.new, self.created = None, True, False
            raise
        except StoreUnavailable:
            # The browser moves to the new id all the same: the retirement may have gone
            # through before its answer was lost, and failing the request would leave the
            # browser on a retired id, signed out. An old id the write missed keeps the
            # session as it was before this request (never what this request wrote) until
            # it expires, and no browser sends it again.
            self._retiring = None
            logger.warning(
                "the store did not confirm the retirement of a rotated session id; the"
                " browser moves to the new one"
            )

    def _create(
        self, enc: _Encoded, expires_at: float, *, exact: bool = False, announce: bool = True
    ) -> Steps[None]:
        meta = self._observe(enc.user)
        record = SessionRecord(enc.values, expires_at, enc.user, meta=meta)
        # A regenerated id may already be in the view's hands (Django's session_key): use it.
        wanted = self.session_id if exact or self._unsaved else None
        for _ in range(MAX_CREATE_ATTEMPTS):
            candidate = wanted or session_ids.new_session_id()
            try:
                yield steps.create(candidate, record)
            except SessionExists:
                if exact:
                    raise
                if not (yield from self._created_before(candidate, enc)):
                    wanted = None
                    continue
            self.session_id, self._unsaved, self.new, self.gone = candidate, False, False, False
            self._stored, self._counters, self._user = dict(enc.texts), set(), enc.user
            self.expires_at, self.wrote, self.created = expires_at, True, True
            self._wrote_meta(meta)
            rotated, self._rotating = self._rotating, False
            if not rotated:
                if signals.session_created.receivers:
                    signals.session_created.send(
                        self.store, user_id=enc.user, meta=meta or Metadata()
                    )
                return
            self._rotated_to = candidate
            self._announce_rotation = True
            if announce:
                self._rotated(enc.user, meta)
            return
        raise SessionExists(f"no free session id after {MAX_CREATE_ATTEMPTS} attempts")

    def _created_before(self, candidate: str, enc: _Encoded) -> Steps[bool]:
        """Whether the record that took `candidate` is this very create's.

        A fresh id from `secrets` is never taken by anyone else: "exists" means the SDK sent
        the create again after the first attempt's answer was lost (a cut connection), and
        that attempt stored it. Taking another id would leave this data behind under the
        first, live and listed among the user's sessions until it expires. One read, on
        this path only; a record that is not the same data and user is another's.
        """
        found = yield steps.load(candidate)
        return (
            found is not None
            and found.user_id == enc.user
            and (found.texts or codec.snapshot(found.data)) == enc.texts
        )

    def _save(self, enc: _Encoded, changed: list[str], expires_at: float) -> Steps[None]:
        assert self.session_id is not None
        meta = self._observe(enc.user)
        record = SessionRecord(enc.values, expires_at, enc.user, meta=meta)
        try:
            yield steps.save(self.session_id, record, changed)
        except SessionGone:
            self._lost()
            raise
        self._counters.difference_update(changed)  # a save writes plain JSON over a counter
        for name in changed:
            if name in enc.texts:
                self._stored[name] = enc.texts[name]
            else:
                self._stored.pop(name, None)
        self._user, self.expires_at, self.wrote = enc.user, expires_at, True
        self._wrote_meta(meta)
        if self._announce_rotation:
            self._rotated(enc.user, meta)

    def _rotated(self, user: str | None, meta: Metadata | None) -> None:
        self._announce_rotation = False
        if signals.session_rotated.receivers:
            signals.session_rotated.send(self.store, user_id=user, meta=meta or Metadata())

    def _observe(self, user: str | None) -> Metadata | None:
        """The metadata a write records: a signed-in session's only (see cloudsessions.metadata)."""
        settings = self.policy.metadata
        if user is None or settings is None:
            return None
        return settings.observe(self.client, self._created_at, time.time())

    def _wrote_meta(self, meta: Metadata | None) -> None:
        if meta is not None and meta.created_at is not None:
            self._created_at = meta.created_at

    # ------------------------------------------------------- where you're signed in

    def signed_in(self) -> Steps[list[SessionInfo]]:
        """The live sessions of this session's user (the current one marked); [] when it
        has no user. One index query."""
        if self._user is None or not self.stored:
            return []
        found: list[SessionInfo] = yield steps.for_user(self._user, self.session_id)
        return found

    def revoke(self, handle: str) -> Steps[bool]:
        """Revoke one of this user's sessions by its handle (from signed_in()).

        False if the handle names no live session of this user. Revoking the current
        session ends it like a logout elsewhere: this request writes nothing more.
        """
        if self._user is None or not self.stored:
            return False
        revoked: bool = yield steps.revoke(self._user, handle)
        if revoked and self.session_id and handle == session_ids.record_id(self.session_id):
            self.gone = True
        return revoked

    def revoke_others(self) -> Steps[int]:
        """Sign this user out everywhere else: every session of theirs but this one.
        One index query and one batch delete; returns how many were revoked."""
        if self._user is None or not self.stored:
            return 0
        count: int = yield steps.delete_for_user(self._user, self.session_id)
        return count

    def _encode(self, data: Mapping[str, Any]) -> _Encoded:
        """Every value as the store gets it, and its JSON text; a value that has none fails
        here, before any write."""
        values = self.policy.values
        plain: dict[str, Any] = {}
        texts: dict[str, str] = {}
        loaded, stored = self._loaded, self._stored
        for key, value in data.items():
            unchanged = loaded.get(key)
            if unchanged is not None and unchanged[0] is value and stored.get(key) is unchanged[1]:
                plain[key], texts[key] = value, unchanged[1]  # a scalar is its own dump
                continue
            try:
                plain[key] = values.dump(value)
                texts[key] = codec.encode_value(plain[key])
            except (TypeError, ValueError) as exc:
                raise SessionValueError(key, value, values.name) from exc
        return _Encoded(plain, texts, self.policy.user_id(data))

    def discard_created(self) -> Steps[None]:
        """Delete the record this request created, when its id will never reach the browser
        (the response failed); otherwise nothing could ever name it until it expires."""
        if self.created and self.session_id is not None:
            self.created = False
            yield steps.delete(self.session_id)

    def _lost(self) -> None:
        # Never resurrect a session ended elsewhere (logout, revocation, expiry).
        self.gone = True
        logger.warning(
            "a session was deleted or expired while a request used it; its changes were dropped"
        )
