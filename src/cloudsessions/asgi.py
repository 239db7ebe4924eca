"""Starlette / FastAPI sessions on any cloudsessions store.

``app.add_middleware(SessionMiddleware, store="dynamodb://sessions?region=eu-west-1")``

A drop-in for Starlette's cookie-based ``starlette.middleware.sessions.SessionMiddleware``:
``request.session`` (``scope["session"]``) is a dict, and the cookie parameters are the same
(session_cookie, max_age, path, same_site, https_only, domain, partitioned). There is no
secret_key: the cookie holds only a random 165-bit id (see cloudsessions.flask for why it
is not signed). The data lives in the store, reached through its async API, and the write
decisions are the Flask adapter's (cloudsessions.session): nothing is written for a request
that changed nothing, only changed keys are saved, and so on.

The session is saved when the response starts (before its headers go out), so a store error
is a 500 rather than a response whose cookie points nowhere. WebSocket connections get the
session read-only: a WebSocket cannot set a cookie, and nothing is written for it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ConfigurationError
from .session import Cookie, Policy, ServerSession, SessionState, check_refresh_after
from .store import Store
from .urls import DEFAULT_STORE_URL, shared_store

DEFAULT_MAX_AGE = 14 * 24 * 60 * 60  # Starlette's default: 14 days, in seconds


class ASGISession(ServerSession):
    """``request.session``: a dict, plus `regenerate()`, `aincrement()`, `sid`."""

    accessed = False

    def __init__(self, initial: Mapping[str, Any], state: SessionState) -> None:
        super().__init__(initial)
        self._state = state

    def mark_accessed(self) -> None:
        # Called by Starlette's Request.session: the response then varies by Cookie.
        self.accessed = True


class SessionMiddleware:
    """Server-side sessions for Starlette and FastAPI.

    store: a store URL or a Store object; options: store options merged over the URL's.
    max_age: the cookie's Max-Age in seconds, None for a browser-session cookie.
    lifetime: seconds a record lives after its last write (default: max_age, or 14 days
        when max_age is None: a record needs an expiry even when its cookie has none).
    refresh_after: the fraction of the lifetime after which a request that changed nothing
        writes a new expiry (and re-sends the cookie); 0 = every request, None = never.
    user_id_key: the session key recorded as the record's user id (for for_user()).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: str | Store = DEFAULT_STORE_URL,
        *,
        options: Mapping[str, Any] | None = None,
        session_cookie: str = "session",
        max_age: int | None = DEFAULT_MAX_AGE,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
        lifetime: float | None = None,
        refresh_after: float | None = 0.1,
        user_id_key: str | None = "_user_id",
    ) -> None:
        if not isinstance(store, str | Store):
            raise ConfigurationError(f"store must be a store URL or a Store, got {store!r}")
        self.app = app
        self._store_setting = store
        self._options = dict(options or {})
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
        record_lifetime = lifetime if lifetime is not None else (max_age or DEFAULT_MAX_AGE)
        self.policy = Policy(
            lifetime=float(record_lifetime),
            refresh_after=check_refresh_after(refresh_after, "refresh_after"),
            user_id_key=user_id_key,
        )

    @functools.cached_property
    def store(self) -> Store:
        """The store, created on first use and shared by every request of this process."""
        if isinstance(self._store_setting, Store):
            return self._store_setting
        return shared_store(self._store_setting, self._options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookie = HTTPConnection(scope).cookies.get(self.session_cookie)
        # A store error propagates: an empty session instead would silently log users out.
        data, state = await SessionState.aload(self.store, self.policy, cookie)
        session = ASGISession(data, state)
        scope["session"] = session
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                action = await state.acommit(session)
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                if session.accessed or action is not Cookie.KEEP:
                    headers.add_vary_header("Cookie")
                if action is Cookie.SET:
                    assert state.key is not None
                    max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
                    headers.append(
                        "Set-Cookie",
                        f"{self.session_cookie}={state.key}; path={self.path}; "
                        f"{max_age}{self.security_flags}",
                    )
                elif action is Cookie.DELETE:
                    headers.append(
                        "Set-Cookie",
                        f"{self.session_cookie}=null; path={self.path}; "
                        f"expires=Thu, 01 Jan 1970 00:00:00 GMT; {self.security_flags}",
                    )
            await send(message)

        await self.app(scope, receive, send_wrapper)


__all__ = ["ASGISession", "SessionMiddleware"]
