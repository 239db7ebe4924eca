"""The Django SessionStore on any cloudsessions store: Django's API mapped onto the core.

Built on Django's SessionBase (the dict interface, expiry arithmetic, `flush`, `clear`,
`set_expiry` are Django's); every decision about the store is made by
`cloudsessions.session.SessionState`, the lifecycle the Flask and ASGI front doors share.
What that brings to Django: new ids from `secrets` with no existence check (create is a
conditional insert), saves that write only the keys that changed, a save of a session
deleted elsewhere raises UpdateError instead of resurrecting it, cycle_key() that creates
the new record before it retires the old one (a login is 1 read + 3 writes, as Django's own
engines: the session is never without a live record), a change of the logged-in user that
rotates the id whatever the app calls, and a bounded create.

Every method below is Django's API over one core step, once on the sync and once on the
async store API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError

from .. import session_ids
from ..errors import SessionExists, SessionGone, StoreUnavailable
from ..metadata import Client
from ..policy import Policy
from ..session import SessionState
from ..signed_in import SignedInMethods
from ..store import Store
from .conf import config


@contextlib.contextmanager
def _django_errors() -> Iterator[None]:
    # Django's two contract errors; every other store error propagates as it is.
    try:
        yield
    except SessionExists:
        raise CreateError from None
    except SessionGone:
        raise UpdateError from None


class SessionStore(SignedInMethods, SessionBase):
    def __init__(self, session_key: str | None = None) -> None:
        settings = config()
        self._core = SessionState(
            settings.store(),
            # Django sets each record's expiry itself (set_expiry, SESSION_COOKIE_AGE) and
            # refreshes it only on save (SESSION_SAVE_EVERY_REQUEST), so no refresh policy.
            Policy(
                lifetime=float(self.get_session_cookie_age()),
                refresh_after=None,
                user_id_key=settings.user_id_key,
                rotate_on_user_change=settings.rotate_on_login,
                metadata=settings.metadata,
                migration=settings.migration,
            ),
        )
        super().__init__(session_key)

    def seen_from(self, client: Client) -> None:
        """Who makes the request (cloudsessions' SessionMiddleware tells it): a signed-in
        session's writes record it (see cloudsessions.metadata)."""
        self._core.client = client

    def _loaded_state(self) -> SessionState:
        self._get_session()  # type: ignore[attr-defined]
        return self._core

    async def _aloaded_state(self) -> SessionState:
        await self._aget_session()  # type: ignore[attr-defined]
        return self._core

    @classmethod
    def get_store(cls) -> Store:
        return config().store()

    @classmethod
    def old_cookie_name(cls) -> str | None:
        """The previous backend's cookie name, if MIGRATE_FROM's source has one of its own
        (read by cloudsessions' SessionMiddleware when the browser has no cookie of ours)."""
        migration = config().migration
        return migration.source.cookie_name if migration is not None else None

    @property
    def old_cookie_to_delete(self) -> str | None:
        return self._core.old_cookie_to_delete

    # The session id is the core's: Django's validation (8+ characters) on assignment.
    @property
    def session_key(self) -> str | None:
        return self._core.session_id

    @property
    def _session_key(self) -> str | None:
        return self._core.session_id

    @_session_key.setter
    def _session_key(self, value: str | None) -> None:
        valid = self._validate_session_key(value)  # type: ignore[attr-defined]
        self._core.ask(value if valid else None, old_key=value)

    def _get_new_session_key(self) -> str:
        return session_ids.new_session_id()

    async def _aget_new_session_key(self) -> str:
        return session_ids.new_session_id()

    def _expires_at(self, data: Mapping[str, Any]) -> float:
        # Aware datetimes convert exactly; naive ones (USE_TZ=False) are local time, which
        # is what datetime.timestamp() assumes.
        return self.get_expiry_date(expiry=data.get("_session_expiry")).timestamp()

    # ------------------------------------------------------------------ reads

    def load(self) -> dict[str, Any]:
        data = self._core.run(self._core.load())
        self._note_migration()
        return data

    async def aload(self) -> dict[str, Any]:
        data = await self._core.arun(self._core.load())
        self._note_migration()
        return data

    def _note_migration(self) -> None:
        # A session copied from the previous backend (MIGRATE_FROM) has a new id: marked
        # modified, the middleware sends it (the save finds nothing left to write).
        if self._core.migrated:
            self.modified = True

    def exists(self, session_key: str | None) -> bool:
        return self._core.store.load(session_key or "") is not None

    async def aexists(self, session_key: str | None) -> bool:
        return await self._core.store.aload(session_key or "") is not None

    # ------------------------------------------------------------------ writes

    def create(self) -> None:
        data = self._get_session(no_load=True)  # type: ignore[attr-defined]
        with _django_errors():
            self._core.run(self._core.create(data, self._expires_at(data)))
        self.modified = True

    async def acreate(self) -> None:
        data = await self._aget_session(no_load=True)  # type: ignore[attr-defined]
        with _django_errors():
            await self._core.arun(self._core.create(data, self._expires_at(data)))
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        with _django_errors():
            self._core.run(self._core.save(data, self._expires_at(data), must_create=must_create))

    async def asave(self, must_create: bool = False) -> None:
        data = await self._aget_session(no_load=must_create)  # type: ignore[attr-defined]
        steps = self._core.save(data, self._expires_at(data), must_create=must_create)
        with _django_errors():
            await self._core.arun(steps)

    def cycle_key(self) -> None:
        # The data is created under the new id (the one the view can already read), then the
        # old id is retired: it is never served again once this returns (Django's contract),
        # and no failure leaves the data without a live record (a save that fails later
        # answers 503 with the new id's cookie, see moved_to). A session ended elsewhere
        # meanwhile stays ended: the save raises UpdateError. A store that fails now leaves
        # the rest to that save (create, then retire): the login is not failed for it.
        data = self._session_cache = self._get_session()  # type: ignore[attr-defined]
        with contextlib.suppress(SessionGone, StoreUnavailable):
            self._core.run(self._core.cycle(data, self._expires_at(data)))
        self.modified = True

    async def acycle_key(self) -> None:
        data = self._session_cache = await self._aget_session()  # type: ignore[attr-defined]
        with contextlib.suppress(SessionGone, StoreUnavailable):
            await self._core.arun(self._core.cycle(data, self._expires_at(data)))
        self.modified = True

    @property
    def moved_to(self) -> str | None:
        """The id this request's cycle_key() moved the session to, which the response must
        carry even when it is a 503 (cloudsessions' SessionMiddleware sets it)."""
        return self._core.moved_to

    def flush(self) -> None:
        self.clear()
        self._core.end()
        self._core.run(self._core.delete_ended())

    async def aflush(self) -> None:
        self.clear()
        self._core.end()
        await self._core.arun(self._core.delete_ended())

    def increment(self, name: str, delta: int = 1) -> int:
        """Add `delta` to the integer `name` atomically in the store; returns the new value.

        Unlike ``session[name] += 1``, concurrent requests never lose a count. The write
        happens now (one conditional write, which also refreshes the expiry), not at the
        end of the request; a new session is created first.
        """
        data = self._get_session()  # type: ignore[attr-defined]
        with _django_errors():
            value = self._core.run(self._core.increment(data, name, delta, self._expires_at(data)))
        # The record (maybe new) and its expiry were written: the middleware re-sends the
        # cookie, and its save finds nothing left to write.
        self.modified = True
        return value

    async def aincrement(self, name: str, delta: int = 1) -> int:
        data = await self._aget_session()  # type: ignore[attr-defined]
        steps = self._core.increment(data, name, delta, self._expires_at(data))
        with _django_errors():
            value = await self._core.arun(steps)
        self.modified = True
        return value

    def delete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        if key is not None:
            self._core.store.delete(key)

    async def adelete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        if key is not None:
            await self._core.store.adelete(key)

    @classmethod
    def clear_expired(cls) -> None:
        cls.get_store().purge_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        await cls.get_store().apurge_expired()
