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
            self._stored = {}
            return {}
        self._stored = {k: codec.encode_value(v) for k, v in record.data.items()}
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
        if self.session_key is None or (self._create_on_save and not must_create):
            self.create()
            self._create_on_save = False
            return None
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        if self.session_key is None:  # the load found no live session
            return self.create()
        record = SessionRecord(data, self._epoch(self.get_expiry_date()), self._user_id(data))
        store, key = self.get_store(), self.session_key
        try:
            if must_create:
                store.create(key, record)
            else:
                store.save(key, record, self._changed_keys(data))
        except SessionExists:
            raise CreateError from None
        except SessionGone:
            raise UpdateError from None
        self._stored = {k: codec.encode_value(v) for k, v in data.items()}

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None or (self._create_on_save and not must_create):
            await self.acreate()
            self._create_on_save = False
            return None
        data = await self._aget_session(no_load=must_create)  # type: ignore[attr-defined]
        if self.session_key is None:
            return await self.acreate()
        expiry = self._epoch(await self.aget_expiry_date())
        record = SessionRecord(data, expiry, self._user_id(data))
        store, key = self.get_store(), self.session_key
        try:
            if must_create:
                await store.acreate(key, record)
            else:
                await store.asave(key, record, self._changed_keys(data))
        except SessionExists:
            raise CreateError from None
        except SessionGone:
            raise UpdateError from None
        self._stored = {k: codec.encode_value(v) for k, v in data.items()}

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

    def _changed_keys(self, data: dict[str, Any]) -> list[str]:
        stored = self._stored
        changed = [k for k, v in data.items() if stored.get(k) != codec.encode_value(v)]
        changed += [k for k in stored if k not in data]
        return changed

    @staticmethod
    def _epoch(moment: datetime) -> float:
        # Aware datetimes convert exactly; naive ones (USE_TZ=False) are local time,
        # which is what datetime.timestamp() assumes.
        return moment.timestamp()

    @staticmethod
    def _user_id(data: dict[str, Any]) -> str | None:
        user_id = data.get(config().user_id_key)
        return None if user_id is None else str(user_id)
