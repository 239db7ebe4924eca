"""Starlette / FastAPI sessions on any cloudsessions store.

A drop-in for Starlette's cookie-based ``starlette.middleware.sessions.SessionMiddleware``:
change the import line and nothing else. The constructor takes Starlette's arguments with
their meaning (``secret_key`` is accepted and unused: the cookie carries only a random
165-bit id, nothing to sign; see cloudsessions.flask), ``request.session`` is a subclass of
Starlette's own `Session` (`modified`, `accessed`, `mark_modified()`), and Starlette's own
session-middleware tests pass on asyncio and trio. The store comes from the ``store``
keyword, else $CLOUDSESSIONS_STORE, else an SQLite file.

The data lives in the store, reached through its async API (natively on asyncio, in a worker
thread under trio); the write decisions are the shared lifecycle's (cloudsessions.session):
nothing is written for a request that changed nothing, only changed keys are saved, a change
of the user id rotates the session id, and so on. The session is saved when the response
starts, before its headers go out, so a store error can still change the answer: 503 with
Retry-After, never a response whose cookie points nowhere. WebSocket connections get the
session read-only: a WebSocket cannot set a cookie, and nothing is written for it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from typing import Any, Literal

import anyio
from starlette.datastructures import MutableHeaders, Secret
from starlette.middleware.sessions import Session as StarletteSession
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import outage
from .errors import ConfigurationError, StoreUnavailable
from .metadata import Client, MetadataSettings
from .migration import Migration, Source
from .policy import Cookie, Policy, check_refresh_after
from .registry import checked_cache, configured_store
from .server_session import ServerSession
from .session import SessionState
from .store import Store

DEFAULT_MAX_AGE = 14 * 24 * 60 * 60  # Starlette's default: 14 days, in seconds


class Session(ServerSession, StarletteSession):
    """``request.session``: Starlette's Session, plus `regenerate()`, `aincrement()`, `sid`."""

    def __init__(self, initial: Mapping[str, Any] | None = None, state: SessionState | None = None):
        super().__init__(initial or {})
        self._state = state


def _migration(
    value: str | Source | None,
    secret_key: str | Secret | None,
    max_age: int | None,
    lifetime: float | None,
) -> Migration | None:
    if value is None:
        return None
    if isinstance(value, Source):
        return Migration(value)
    if value != "starlette":
        raise ConfigurationError(
            'migrate_from must be "starlette" (Starlette\'s signed cookie) or a'
            f" cloudsessions.migration.Source, got {value!r}"
        )
    if not secret_key:
        raise ConfigurationError(
            'migrate_from="starlette" reads the old cookies with their secret: pass the'
            " secret_key Starlette's SessionMiddleware had"
        )
    from .migration.cookies import StarletteCookieSource

    copy_lifetime = lifetime or max_age or DEFAULT_MAX_AGE
    return Migration(
        StarletteCookieSource(str(secret_key), max_age=max_age, lifetime=copy_lifetime)
    )


class SessionMiddleware:
    """Server-side sessions for Starlette and FastAPI.

    Starlette's parameters, with Starlette's meaning: secret_key (accepted, unused),
    session_cookie, max_age (the cookie's Max-Age in seconds, None for a browser-session
    cookie), path, same_site, https_only, domain, partitioned. Ours, keyword-only:

    store: a store URL or a Store object (default: $CLOUDSESSIONS_STORE, else SQLite);
    options: store options merged over the URL's.
    cache: cache tiers in front of the store (see cloudsessions.cache), e.g.
        {"redis": "redis://cache:6379/0", "max_staleness": 1.0}.
    lifetime: seconds a record lives after its last write (default: max_age, or 14 days
        when max_age is None: a record needs an expiry even when its cookie has none).
    refresh_after: the fraction of the lifetime after which a request that changed nothing
        writes a new expiry (and re-sends the cookie); 0 = every request, None = never.
    user_id_key: the session key recorded as the record's user id (for for_user()).
    rotate_on_login: a change of that key moves the session to a new id (fixation).
    migrate_from: the session backend you are leaving: "starlette" (Starlette's signed
        cookie, read with `secret_key` and `max_age`) or a cloudsessions.migration.Source
        (see docs/migrating.md).
    metadata: what a signed-in session records (True: created, last seen, address truncated
        to its network, user agent; False; or a dict of those, see cloudsessions.metadata).
        The address is the ASGI client's: run uvicorn with --proxy-headers behind a proxy.
    outage_response: answer 503 when the store is unavailable (False: the error propagates);
    retry_after: the Retry-After seconds of that answer (None: no header).
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Secret | None = None,
        session_cookie: str = "session",
        max_age: int | None = DEFAULT_MAX_AGE,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        *,
        store: str | Store | None = None,
        options: Mapping[str, Any] | None = None,
        cache: Mapping[str, Any] | str | None = None,
        lifetime: float | None = None,
        refresh_after: float | None = 0.1,
        user_id_key: str | None = "_user_id",
        rotate_on_login: bool = True,
        metadata: bool | Mapping[str, bool] = True,
        migrate_from: str | Source | None = None,
        outage_response: bool = True,
        retry_after: int | None = outage.DEFAULT_RETRY_AFTER,
    ) -> None:
        if store is not None and not isinstance(store, str | Store):
            raise ConfigurationError(f"store must be a store URL or a Store, got {store!r}")
        migration = _migration(migrate_from, secret_key, max_age, lifetime)
        del secret_key  # see the module docstring: read only by a migration from its cookie
        self.app = app
        self._store_setting = store
        self._options = dict(options or {})
        self._cache = checked_cache(cache, "cache")
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        # The same attributes, in the same order, as Starlette's middleware sends.
        self.security_flags = "httponly; samesite=" + same_site
        if https_only:
            self.security_flags += "; secure"
        if domain is not None:
            self.security_flags += f"; domain={domain}"
        if partitioned:
            self.security_flags += "; partitioned"
        if lifetime is None:
            lifetime = max_age if max_age is not None else DEFAULT_MAX_AGE
        self.policy = Policy(
            lifetime=float(lifetime),
            refresh_after=check_refresh_after(refresh_after, "refresh_after"),
            user_id_key=user_id_key,
            rotate_on_user_change=rotate_on_login,
            metadata=MetadataSettings.parse(metadata, "metadata"),
            migration=migration,
        )
        self.outage_response = outage_response
        self.retry_after = outage.check_retry_after(retry_after, "retry_after")

    @functools.cached_property
    def store(self) -> Store:
        """The store, created on first use and shared by every request of this process."""
        return configured_store(self._store_setting, self._options, self._cache)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        cookie = connection.cookies.get(self.session_cookie)
        migration = self.policy.migration
        if cookie is None and migration is not None and migration.source.cookie_name:
            cookie = connection.cookies.get(migration.source.cookie_name)
        peer = connection.client
        client = Client(peer.host if peer else None, connection.headers.get("user-agent"))
        try:
            # A store error is never an empty session, which would silently log users out.
            data, state = await SessionState.aopen(self.store, self.policy, cookie, client)
        except StoreUnavailable:
            if not self.outage_response or scope["type"] != "http":
                raise
            await self._send_unavailable(send)
            return
        session = Session(data, state)
        scope["session"] = session
        if scope["type"] == "websocket":
            state.read_only = True  # a WebSocket cannot set a cookie: nothing is written
            await self.app(scope, receive, send)
            return
        started = replaced = False  # the response started / was replaced by the 503

        async def send_wrapper(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the rest of the app's response, which the client never sees
            if message["type"] == "http.response.start":
                started = True
                try:
                    action = await state.arun(state.commit(session))
                except StoreUnavailable:
                    if not self.outage_response:
                        raise
                    replaced = True
                    await self._send_unavailable(send, state)
                    return
                except BaseException:
                    await self._discard_created(state)
                    raise
                self._set_cookie(message, session, state, action)
            try:
                await send(message)
            except BaseException:
                if message["type"] == "http.response.start":
                    await self._discard_created(state)
                raise

        try:
            await self.app(scope, receive, send_wrapper)
        except StoreUnavailable:
            # Raised by the view itself (an increment, a store call of its own).
            if not self.outage_response or started:
                raise
            await self._send_unavailable(send, state)

    async def _discard_created(self, state: SessionState) -> None:
        # The browser never gets the cookie of a record this request created: remove the
        # record rather than leave it unreachable, even while the request is being cancelled.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await state.arun(state.discard_created())

    def _set_cookie(
        self, message: Message, session: Session, state: SessionState, action: Cookie
    ) -> None:
        message.setdefault("headers", [])
        headers = MutableHeaders(scope=message)
        if action is Cookie.KEEP and session.modified and state.stored:
            action = Cookie.SET  # Starlette re-sends the cookie of a modified session
        if session.accessed or action is not Cookie.KEEP:
            headers.add_vary_header("Cookie")
        if action is Cookie.SET:
            assert state.session_id is not None
            headers.append("Set-Cookie", self._cookie(state.session_id))
        elif action is Cookie.DELETE:
            headers.append("Set-Cookie", self._expired(self.session_cookie))
        old = state.old_cookie_to_delete
        if old and old != self.session_cookie:
            headers.append("Set-Cookie", self._expired(old))

    def _cookie(self, session_id: str) -> str:
        max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
        flags = f"path={self.path}; {max_age}{self.security_flags}"
        return f"{self.session_cookie}={session_id}; {flags}"

    def _expired(self, name: str) -> str:
        return (
            f"{name}=null; path={self.path}; "
            f"expires=Thu, 01 Jan 1970 00:00:00 GMT; {self.security_flags}"
        )

    async def _send_unavailable(self, send: Send, state: SessionState | None = None) -> None:
        body = outage.BODY.encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in outage.headers(self.retry_after)]
        headers.append((b"content-length", str(len(body)).encode()))
        moved = state.moved_to if state is not None else None
        if moved is not None:
            # The view moved the session to a new id and retired the old one (regenerate(),
            # then an increment): the browser goes with it, 503 or not.
            headers.append((b"set-cookie", self._cookie(moved).encode("latin-1")))
            headers.append((b"vary", b"Cookie"))
        await send({"type": "http.response.start", "status": outage.STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": body})


__all__ = ["Session", "SessionMiddleware"]
