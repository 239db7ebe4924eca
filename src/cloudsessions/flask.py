"""Flask sessions on any cloudsessions store: ``CloudSessions(app)`` or ``init_app(app)``.

A `flask.sessions.SessionInterface` whose sessions are `CallbackDict` + `SessionMixin`, as
Flask's own. Cookie and id handling live here, the write decisions in
`cloudsessions.session` (shared with the ASGI middleware), the storage in the store.

Configuration (``app.config``, read by init_app; see docs/frameworks.md):

    CLOUDSESSIONS_STORE          a store URL or a Store object (default: sqlite file)
    CLOUDSESSIONS_OPTIONS        store options, merged over the URL's query options
    CLOUDSESSIONS_USER_ID_KEY    the session key recorded as the user id ("_user_id",
                                 Flask-Login's); None records none
    CLOUDSESSIONS_REFRESH_AFTER  fraction of the lifetime after which a request that
                                 changed nothing refreshes the expiry (0.1)

Flask's own settings keep their meaning: SESSION_COOKIE_NAME, _DOMAIN, _PATH, _SECURE,
_HTTPONLY, _SAMESITE, _PARTITIONED, PERMANENT_SESSION_LIFETIME (the lifetime of every
record, permanent or not) and SESSION_REFRESH_EACH_REQUEST (False: never refresh).

The session id is not signed, and SECRET_KEY is not needed for sessions: ids carry 165
random bits from `secrets`, a value of the wrong shape never reaches the store, and records
are kept under the SHA-256 of the id. Signing would add nothing against guessing, and key
rotation would log everyone out (Flask-Session 0.8 dropped signing by default too).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from .errors import ConfigurationError
from .session import Cookie, Policy, ServerSession, SessionState, check_refresh_after
from .store import Store
from .urls import DEFAULT_STORE_URL, shared_store

if TYPE_CHECKING:
    from flask.wrappers import Request, Response

PREFIX = "CLOUDSESSIONS_"
DEFAULTS: dict[str, Any] = {
    "CLOUDSESSIONS_STORE": DEFAULT_STORE_URL,
    "CLOUDSESSIONS_OPTIONS": {},
    "CLOUDSESSIONS_USER_ID_KEY": "_user_id",  # flask_login's session key
    "CLOUDSESSIONS_REFRESH_AFTER": 0.1,
}


class FlaskSession(ServerSession, CallbackDict[str, Any], SessionMixin):
    """``flask.session``: a dict, plus `permanent`, `regenerate()`, `increment()`, `sid`.

    Changes are found by comparing each value's JSON with what was loaded, so mutating a
    nested value is saved without setting `modified` (which is kept for Flask's sake only).
    """

    def __init__(self, initial: Mapping[str, Any], state: SessionState) -> None:
        def on_update(self: FlaskSession) -> None:
            self.modified = True

        CallbackDict.__init__(self, initial, on_update)
        self._state = state
        self.new = state.new
        self.modified = False


class CloudSessionInterface(SessionInterface):
    """The session interface CloudSessions installs; one per app."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = sorted(k for k in config if k.startswith(PREFIX) and k not in DEFAULTS)
        if unknown:
            raise ConfigurationError(
                f"unknown Flask setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}"
            )
        settings = {name: config.get(name, default) for name, default in DEFAULTS.items()}
        store = settings["CLOUDSESSIONS_STORE"]
        if not isinstance(store, str | Store):
            raise ConfigurationError(
                f"CLOUDSESSIONS_STORE must be a store URL or a Store, got {store!r}"
            )
        options = settings["CLOUDSESSIONS_OPTIONS"]
        if not isinstance(options, Mapping):
            raise ConfigurationError("CLOUDSESSIONS_OPTIONS must be a dict")
        user_id_key = settings["CLOUDSESSIONS_USER_ID_KEY"]
        if user_id_key is not None and not isinstance(user_id_key, str):
            raise ConfigurationError("CLOUDSESSIONS_USER_ID_KEY must be a string or None")
        self._store_setting: str | Store = store
        self._options = dict(options)
        self.user_id_key: str | None = user_id_key
        self.refresh_after = check_refresh_after(
            settings["CLOUDSESSIONS_REFRESH_AFTER"], "CLOUDSESSIONS_REFRESH_AFTER"
        )

    @functools.cached_property
    def store(self) -> Store:
        """The store, created on first use and shared by every request of this process."""
        if isinstance(self._store_setting, Store):
            return self._store_setting
        return shared_store(self._store_setting, self._options)

    def policy(self, app: Flask) -> Policy:
        # Read per request, as Flask does, so a test that changes the config is honoured.
        refresh = app.config["SESSION_REFRESH_EACH_REQUEST"]
        return Policy(
            lifetime=app.permanent_session_lifetime.total_seconds(),
            refresh_after=self.refresh_after if refresh else None,
            user_id_key=self.user_id_key,
        )

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        # A store error propagates (500): turning it into an empty session would silently
        # log the user out.
        cookie = request.cookies.get(self.get_cookie_name(app))
        data, state = SessionState.load(self.store, self.policy(app), cookie)
        return FlaskSession(data, state)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return  # open_session failed (the error is being handled): nothing to save
        if session.accessed:
            response.vary.add("Cookie")
        action = session._state.commit(session)
        name, domain, path = (
            self.get_cookie_name(app),
            self.get_cookie_domain(app),
            self.get_cookie_path(app),
        )
        secure, samesite, httponly = (
            self.get_cookie_secure(app),
            self.get_cookie_samesite(app),
            self.get_cookie_httponly(app),
        )
        partitioned = self.get_cookie_partitioned(app)
        if action is Cookie.DELETE:
            response.delete_cookie(
                name,
                domain=domain,
                path=path,
                secure=secure,
                samesite=samesite,
                httponly=httponly,
                partitioned=partitioned,
            )
            response.vary.add("Cookie")
        elif action is Cookie.SET:
            key, expires_at = session._state.key, session._state.expires_at
            assert key is not None and expires_at is not None
            # A non-permanent session gets a browser-session cookie; its record still
            # expires PERMANENT_SESSION_LIFETIME after its last write.
            expires = datetime.fromtimestamp(expires_at, UTC) if session.permanent else None
            response.set_cookie(
                name,
                key,
                expires=expires,
                domain=domain,
                path=path,
                secure=secure,
                samesite=samesite,
                httponly=httponly,
                partitioned=partitioned,
            )
            response.vary.add("Cookie")


class CloudSessions:
    """The Flask extension: ``CloudSessions(app)``, or ``ext = CloudSessions()`` and later
    ``ext.init_app(app)`` in an app factory. Settings are read from app.config there."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        # No store is created here: the first request that needs one creates it.
        interface = CloudSessionInterface(app.config)
        app.session_interface = interface
        app.extensions["cloudsessions"] = interface

    @staticmethod
    def get_store(app: Flask | None = None) -> Store:
        """The store of `app` (default: the current app), e.g. for for_user()."""
        interface = (app or current_app).extensions["cloudsessions"]
        assert isinstance(interface, CloudSessionInterface)
        return interface.store


__all__ = ["CloudSessionInterface", "CloudSessions", "FlaskSession"]
