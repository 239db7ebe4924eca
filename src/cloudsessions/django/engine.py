"""The Django SessionStore on any cloudsessions store.

Built on Django's SessionBase. What it adds: new ids come from `secrets` with no existence
check (create is a conditional insert), a save writes only the keys that changed since the
load (diffed against the JSON of each loaded value, so mutating a nested value counts too),
and a save of a session deleted elsewhere raises UpdateError instead of resurrecting it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from .. import codec, keys
from ..errors import SessionExists, SessionGone
from ..record import SessionRecord
from ..store import Store
from .conf import config


class SessionStore(SessionBase):
    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        # JSON of each value as last loaded or written: what save() diffs against.
        self._stored: dict[str, str] = {}
        # Set by cycle_key: the next save creates the record under a new id.
        self._create_on_save = False
        # Keys the store keeps as counters (see increment).
        self._counters: set[str] = set()
        # True once this object wrote the record: a later save with no changed key is skipped.
        self._written = False

    @classmethod
    def get_store(cls) -> Store:
        return config().store()

    # ------------------------------------------------------------------ ids

    def _get_new_session_key(self) -> str:
        return keys.new_key()

    async def _aget_new_session_key(self) -> str:
        return keys.new_key()

    # ------------------------------------------------------------------ reads

    def load(self) -> dict[str, Any]:
        return self._loaded(self.get_store().load(self.session_key or ""))

    async def aload(self) -> dict[str, Any]:
        return self._loaded(await self.get_store().aload(self.session_key or ""))

    def _loaded(self, record: SessionRecord | None) -> dict[str, Any]:
        if record is None:
            # Unknown, expired or malformed: forget the id so a new one is made on save.
            self._session_key = None
            self._stored, self._counters = {}, set()
            return {}
        self._stored = codec.snapshot(record.data)
        self._counters = set(record.counters)
        return record.data

    def exists(self, session_key: str | None) -> bool:
        return self.get_store().load(session_key or "") is not None

    async def aexists(self, session_key: str | None) -> bool:
        return await self.get_store().aload(session_key or "") is not None

    # ------------------------------------------------------------------ writes

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    async def acreate(self) -> None:
        while True:
            self._session_key = await self._aget_new_session_key()
            try:
                await self.asave(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return

    def cycle_key(self) -> None:
        # Django's cycle_key creates the new record at once and the middleware then saves
        # it again; deferring the create to that save makes a login one write cheaper.
        data = self._session  # type: ignore[attr-defined]
        old_key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self._create_on_save = self.modified = True
        if old_key:
            self.delete(old_key)

    async def acycle_key(self) -> None:
        data = await self._aget_session()  # type: ignore[attr-defined]
        old_key = self.session_key
        self._session_key = await self._aget_new_session_key()
        self._session_cache = data
        self._create_on_save = self.modified = True
        if old_key:
            await self.adelete(old_key)

    def save(self, must_create: bool = False) -> None:
        if self._create_on_save and not must_create:
            # Create under the id cycle_key() handed out, which the view may have read.
            try:
                self.save(must_create=True)
            except CreateError:
                self.create()
            self._create_on_save = False
            return None
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        if self.session_key is None:  # the load found no live session
            return self.create()
        changed = [] if must_create else codec.changed_keys(self._stored, data)
        if not must_create and not changed and self._written:
            return None
        record = SessionRecord(data, self._epoch(self.get_expiry_date()), self._user_id(data))
        store, key = self.get_store(), self.session_key
        try:
            if must_create:
                store.create(key, record)
            else:
                store.save(key, record, changed)
        except SessionExists:
            raise CreateError from None
        except SessionGone:
            raise UpdateError from None
        self._wrote(data, must_create, changed)
        return None

    async def asave(self, must_create: bool = False) -> None:
        if self._create_on_save and not must_create:
            try:
                await self.asave(must_create=True)
            except CreateError:
                await self.acreate()
            self._create_on_save = False
            return None
        if self.session_key is None:
            return await self.acreate()
        data = await self._aget_session(no_load=must_create)  # type: ignore[attr-defined]
        if self.session_key is None:
            return await self.acreate()
        changed = [] if must_create else codec.changed_keys(self._stored, data)
        if not must_create and not changed and self._written:
            return None
        expiry = self._epoch(await self.aget_expiry_date())
        record = SessionRecord(data, expiry, self._user_id(data))
        store, key = self.get_store(), self.session_key
        try:
            if must_create:
                await store.acreate(key, record)
            else:
                await store.asave(key, record, changed)
        except SessionExists:
            raise CreateError from None
        except SessionGone:
            raise UpdateError from None
        self._wrote(data, must_create, changed)
        return None

    def increment(self, name: str, delta: int = 1) -> int:
        """Add `delta` to the integer `name` atomically in the store; returns the new value.

        Unlike ``session[name] += 1``, concurrent requests never lose a count. The write
        happens now (one conditional write, which also refreshes the expiry), not at the
        end of the request; a new session is created first.
        """
        data = self._session  # type: ignore[attr-defined]
        if self.session_key is None or self._create_on_save or self._assigned(data, name):
            # The store adds to its own copy: a new record, or a value this request
            # assigned, must reach it first.
            self.save()
        key = self.session_key
        assert key is not None
        try:
            value = self.get_store().increment(
                key,
                name,
                delta,
                expires_at=self._epoch(self.get_expiry_date()),
                base=self._increment_base(data, name),
            )
        except SessionGone:
            raise UpdateError from None
        self._counted(data, name, value)
        return value

    async def aincrement(self, name: str, delta: int = 1) -> int:
        data = await self._aget_session()  # type: ignore[attr-defined]
        if self.session_key is None or self._create_on_save or self._assigned(data, name):
            await self.asave()
        key = self.session_key
        assert key is not None
        try:
            value = await self.get_store().aincrement(
                key,
                name,
                delta,
                expires_at=self._epoch(await self.aget_expiry_date()),
                base=self._increment_base(data, name),
            )
        except SessionGone:
            raise UpdateError from None
        self._counted(data, name, value)
        return value

    def _assigned(self, data: dict[str, Any], name: str) -> bool:
        return name in data and self._stored.get(name) != codec.encode_value(data[name])

    def _increment_base(self, data: dict[str, Any], name: str) -> int:
        # A plain integer written by an ordinary save becomes a counter from its value.
        value = data.get(name)
        return value if name not in self._counters and type(value) is int else 0

    def _counted(self, data: dict[str, Any], name: str, value: int) -> None:
        data[name] = value
        self._stored[name] = codec.encode_value(value)
        self._counters.add(name)
        self._written = True

    def _wrote(self, data: dict[str, Any], created: bool, changed: list[str]) -> None:
        self._stored = codec.snapshot(data)
        if created:
            self._counters = set()  # a create writes every value as plain JSON
        else:
            self._counters.difference_update(changed)  # plain JSON over a counter
        self._written = True

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self.get_store().delete(session_key)

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        await self.get_store().adelete(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        cls.get_store().purge_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        await cls.get_store().apurge_expired()

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _epoch(moment: datetime) -> float:
        # Aware datetimes convert exactly; naive ones (USE_TZ=False) are local time,
        # which is what datetime.timestamp() assumes.
        return moment.timestamp()

    @staticmethod
    def _user_id(data: dict[str, Any]) -> str | None:
        user_id = data.get(config().user_id_key)
        return None if user_id is None else str(user_id)
