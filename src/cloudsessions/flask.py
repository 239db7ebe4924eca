"""Flask sessions on any cloudsessions store: ``CloudSessions(app)`` or ``init_app(app)``.

A drop-in for Flask's own cookie session: ``flask.session`` is Flask's `SecureCookieSession`
(so `modified`, `accessed`, `permanent` and `new` behave as Flask's), its values go through
Flask's own tagged JSON (tuples, bytes, Markup, UUID, datetime and flashed messages
round-trip as with Flask's cookie), and the cookie follows Flask's rules: it is set when the
session was modified, re-sent on every request for a permanent session while
SESSION_REFRESH_EACH_REQUEST is on, deleted when the session is emptied, with `Vary: Cookie`
whenever the session was accessed. The store's own expiry refresh is separate and avoids
writes (see Policy). Flask's own session tests pass with this installed.

Configuration (``app.config``, read by init_app; see docs/frameworks.md):

    CLOUDSESSIONS_STORE            a store URL or a Store object (default: $CLOUDSESSIONS_STORE,
                                   else an SQLite file)
    CLOUDSESSIONS_OPTIONS          store options, merged over the URL's query options
    CLOUDSESSIONS_CACHE            cache tiers in front of the store (see cloudsessions.cache)
    CLOUDSESSIONS_USER_ID_KEY      the session key recorded as the user id ("_user_id",
                                   Flask-Login's); None records none
    CLOUDSESSIONS_ROTATE_ON_LOGIN  a change of that key moves the session to a new id (True)
    CLOUDSESSIONS_REFRESH_AFTER    fraction of the lifetime after which a request that changed
                                   nothing refreshes the record's expiry (0.1)
    CLOUDSESSIONS_METADATA         what a signed-in session records: True (created, last seen,
                                   address truncated to its network, user agent), False, or a
                                   dict of those (see cloudsessions.metadata)
    CLOUDSESSIONS_MIGRATE_FROM     the session backend you are leaving: "flask" (Flask's own
                                   signed cookie, read with this app's SECRET_KEY) or a
                                   cloudsessions.migration.Source (see docs/migrating.md)
    CLOUDSESSIONS_OUTAGE_RESPONSE  answer 503 + Retry-After when the store is unavailable (True)
    CLOUDSESSIONS_RETRY_AFTER      the Retry-After seconds of that answer (5)

Flask-Session's own settings (SESSION_TYPE, SESSION_REDIS, SESSION_PERMANENT...) are not
read: any left in app.config is named once, at init_app, in a FlaskSessionSettingWarning
with what to use instead.

The session id is not signed, and SECRET_KEY is not needed for sessions: ids carry 165
random bits from `secrets`, a value of the wrong shape never reaches the store, and records
are kept under the SHA-256 of the id. Signing would add nothing against guessing, and key
rotation would log everyone out (Flask-Session 0.8 dropped signing by default too).
"""

from __future__ import annotations

import functools
import inspect
import json
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app
from flask import json as flask_json
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSession, SessionInterface, SessionMixin
from werkzeug.exceptions import InternalServerError

from . import outage
from .errors import ConfigurationError, StoreUnavailable
from .metadata import Client, MetadataSettings
from .migration import Migration, Source
from .policy import Cookie, Policy, Values, check_refresh_after
from .registry import checked_cache, configured_store
from .server_session import ServerSession
from .session import SessionState
from .store import Store

if TYPE_CHECKING:
    from flask.wrappers import Request
    from flask.wrappers import Response as FlaskResponse

PREFIX = "CLOUDSESSIONS_"
DEFAULTS: dict[str, Any] = {
    "CLOUDSESSIONS_STORE": None,
    "CLOUDSESSIONS_OPTIONS": {},
    "CLOUDSESSIONS_CACHE": None,
    "CLOUDSESSIONS_USER_ID_KEY": "_user_id",  # flask_login's session key
    "CLOUDSESSIONS_ROTATE_ON_LOGIN": True,
    "CLOUDSESSIONS_METADATA": True,
    "CLOUDSESSIONS_MIGRATE_FROM": None,
    "CLOUDSESSIONS_REFRESH_AFTER": 0.1,
    "CLOUDSESSIONS_OUTAGE_RESPONSE": True,
    "CLOUDSESSIONS_RETRY_AFTER": outage.DEFAULT_RETRY_AFTER,
}


# Flask-Session 0.8's own settings (flask_session.defaults.Defaults): none is read here, so
# one left in app.config after a switch would be silently ignored. Each -> what to use
# instead. (Flask's SESSION_COOKIE_* and SESSION_REFRESH_EACH_REQUEST are Flask's: honoured.)
_ANY_STORE = "use CLOUDSESSIONS_STORE, a store URL (sqlite:///FILE, redis://, mongodb://, ...)"
_NOTHING = "remove it (it has no counterpart)"
FLASK_SESSION_SETTINGS = {
    "SESSION_TYPE": _ANY_STORE,
    "SESSION_REDIS": "use CLOUDSESSIONS_STORE = 'redis://HOST:6379/0', or your client in"
    " CLOUDSESSIONS_OPTIONS = {'client': ...}",
    "SESSION_MONGODB": "use CLOUDSESSIONS_STORE = 'mongodb://HOST/DB', or your client in"
    " CLOUDSESSIONS_OPTIONS = {'client': ...}",
    "SESSION_MONGODB_DB": "use the DB of CLOUDSESSIONS_STORE = 'mongodb://HOST/DB'",
    "SESSION_MONGODB_COLLECT": "use CLOUDSESSIONS_OPTIONS = {'collection': ...}",
    "SESSION_DYNAMODB": "use CLOUDSESSIONS_STORE = 'dynamodb://TABLE?region=REGION', or your client"
    " in CLOUDSESSIONS_OPTIONS = {'client': ...}",
    "SESSION_DYNAMODB_TABLE": "use the TABLE of CLOUDSESSIONS_STORE = 'dynamodb://TABLE?region=REGION'",
    "SESSION_MEMCACHED": _ANY_STORE,
    "SESSION_CACHELIB": _ANY_STORE,
    "SESSION_FILE_DIR": "use CLOUDSESSIONS_STORE = 'sqlite:///FILE' (one machine's file)",
    "SESSION_FILE_THRESHOLD": _NOTHING,
    "SESSION_FILE_MODE": _NOTHING,
    "SESSION_SQLALCHEMY": _ANY_STORE,
    "SESSION_SQLALCHEMY_TABLE": "use CLOUDSESSIONS_OPTIONS = {'table': ...} (sqlite:///)",
    "SESSION_SQLALCHEMY_SEQUENCE": _NOTHING,
    "SESSION_SQLALCHEMY_SCHEMA": _NOTHING,
    "SESSION_SQLALCHEMY_BIND_KEY": _NOTHING,
    "SESSION_KEY_PREFIX": "use the store's own name option: CLOUDSESSIONS_OPTIONS = {'prefix': ...}"
    " (redis), {'table': ...} or {'collection': ...}",
    "SESSION_USE_SIGNER": "remove it: ids carry 165 random bits and are not signed",
    "SESSION_PERMANENT": "use session.permanent = True where the session starts (Flask's own flag;"
    " PERMANENT_SESSION_LIFETIME is honoured)",
    "SESSION_ID_LENGTH": "remove it: ids carry 165 random bits",
    "SESSION_SERIALIZATION_FORMAT": "remove it: values are stored as Flask's tagged JSON",
    "SESSION_CLEANUP_N_REQUESTS": "use the store's TTL, or `cloudsessions purge` on a schedule",
}


class FlaskSessionSettingWarning(UserWarning):
    """Flask-Session settings left in app.config, which cloudsessions does not read."""


def _warn_of_flask_session_settings(config: Mapping[str, Any]) -> None:
    leftover = [name for name in FLASK_SESSION_SETTINGS if name in config]
    if leftover:
        lines = "".join(f"\n  {name}: {FLASK_SESSION_SETTINGS[name]}" for name in leftover)
        warnings.warn(
            f"app.config holds Flask-Session settings that have no effect with cloudsessions:"
            f"{lines}",
            FlaskSessionSettingWarning,
            stacklevel=_app_level(),
        )


def _app_level() -> int:
    """The stacklevel of the app's line (its CloudSessions(app) or init_app(app)): the first
    frame outside this module, seen from the function calling warnings.warn."""
    level, frame = 1, inspect.currentframe()
    frame = frame.f_back if frame else None  # the function calling warnings.warn
    while frame and frame.f_back and frame.f_globals.get("__name__") == __name__:
        level, frame = level + 1, frame.f_back
    return level


class TaggedValues(Values):
    """Flask's tagged JSON, value by value: what Flask's cookie session round-trips."""

    name = "Flask tagged JSON"

    def __init__(self, serializer: TaggedJSONSerializer) -> None:
        self.serializer = serializer

    def dump(self, value: Any) -> Any:
        tagged = self.serializer.tag(value)
        if tagged is None or isinstance(tagged, str | int | float):
            return tagged
        # Through the app's JSON provider, as Flask's cookie session does: what it turns into
        # JSON (a date, a Decimal, a dataclass) is stored the same way, and the same things
        # fail (a set).
        return json.loads(flask_json.dumps(tagged))

    def load(self, value: Any) -> Any:
        # Inside out, as json.loads(object_hook=serializer.untag) does for Flask's cookie.
        if isinstance(value, dict):
            return self.serializer.untag({k: self.load(v) for k, v in value.items()})
        if isinstance(value, list):
            return [self.load(v) for v in value]
        return value


class FlaskSession(ServerSession, SecureCookieSession):
    """``flask.session``: Flask's session, plus `regenerate()`, `increment()`, `sid`.

    Changes are found by comparing each value's JSON with what was loaded, so mutating a
    nested value is saved without setting `modified` (which keeps its meaning for the cookie).
    """

    def __init__(self, initial: Mapping[str, Any], state: SessionState) -> None:
        super().__init__(initial)
        self._state = state
        self.new = state.new
        # Flask calls save_session again from its error path: that call must not try the
        # store a second time, only apply what the first one decided (None: nothing).
        self._committed = False
        self._action: Cookie | None = None


class CloudSessionInterface(SessionInterface):
    """The session interface CloudSessions installs; one per app."""

    #: Flask's own serializer of session values, as SecureCookieSessionInterface has it.
    serializer = TaggedJSONSerializer()

    def __init__(self, config: Mapping[str, Any], app: Flask | None = None) -> None:
        unknown = sorted(k for k in config if k.startswith(PREFIX) and k not in DEFAULTS)
        if unknown:
            raise ConfigurationError(
                f"unknown Flask setting(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}"
            )
        # Once per app: init_app builds one interface per app, and requests never get here.
        _warn_of_flask_session_settings(config)
        settings = {name: config.get(name, default) for name, default in DEFAULTS.items()}
        store = settings["CLOUDSESSIONS_STORE"]
        if store is not None and not isinstance(store, str | Store):
            raise ConfigurationError(
                f"CLOUDSESSIONS_STORE must be a store URL or a Store, got {store!r}"
            )
        options = settings["CLOUDSESSIONS_OPTIONS"]
        if not isinstance(options, Mapping):
            raise ConfigurationError("CLOUDSESSIONS_OPTIONS must be a dict")
        user_id_key = settings["CLOUDSESSIONS_USER_ID_KEY"]
        if user_id_key is not None and not isinstance(user_id_key, str):
            raise ConfigurationError("CLOUDSESSIONS_USER_ID_KEY must be a string or None")
        for flag in ("CLOUDSESSIONS_ROTATE_ON_LOGIN", "CLOUDSESSIONS_OUTAGE_RESPONSE"):
            if not isinstance(settings[flag], bool):
                raise ConfigurationError(f"{flag} must be True or False")
        self._store_setting: str | Store | None = store
        self._options = dict(options)
        self._cache = checked_cache(settings["CLOUDSESSIONS_CACHE"], "CLOUDSESSIONS_CACHE")
        self.user_id_key: str | None = user_id_key
        self.rotate_on_login: bool = settings["CLOUDSESSIONS_ROTATE_ON_LOGIN"]
        self.refresh_after = check_refresh_after(
            settings["CLOUDSESSIONS_REFRESH_AFTER"], "CLOUDSESSIONS_REFRESH_AFTER"
        )
        self.outage_response: bool = settings["CLOUDSESSIONS_OUTAGE_RESPONSE"]
        self.metadata = MetadataSettings.parse(
            settings["CLOUDSESSIONS_METADATA"], "CLOUDSESSIONS_METADATA"
        )
        self.migration = _migration(settings["CLOUDSESSIONS_MIGRATE_FROM"], app)
        self.retry_after = outage.check_retry_after(
            settings["CLOUDSESSIONS_RETRY_AFTER"], "CLOUDSESSIONS_RETRY_AFTER"
        )

    @functools.cached_property
    def store(self) -> Store:
        """The store, created on first use and shared by every request of this process."""
        return configured_store(self._store_setting, self._options, self._cache)

    @functools.cached_property
    def values(self) -> TaggedValues:
        return TaggedValues(self.serializer)

    def policy(self, app: Flask) -> Policy:
        # Read per request, as Flask does, so a test that changes the config is honoured.
        refresh = app.config["SESSION_REFRESH_EACH_REQUEST"]
        return Policy(
            lifetime=app.permanent_session_lifetime.total_seconds(),
            refresh_after=self.refresh_after if refresh else None,
            user_id_key=self.user_id_key,
            rotate_on_user_change=self.rotate_on_login,
            values=self.values,
            metadata=self.metadata,
            migration=self.migration,
        )

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        # A store error propagates (503 by default, see init_app): an empty session instead
        # would silently log the user out.
        cookie = request.cookies.get(self.get_cookie_name(app))
        old_name = self.migration.source.cookie_name if self.migration else None
        if cookie is None and old_name:
            cookie = request.cookies.get(old_name)  # the previous backend's own cookie
        client = Client(request.remote_addr, request.headers.get("User-Agent"))
        data, state = SessionState.open(self.store, self.policy(app), cookie, client)
        return FlaskSession(data, state)

    def save_session(self, app: Flask, session: SessionMixin, response: FlaskResponse) -> None:
        if not isinstance(session, FlaskSession):
            return  # open_session failed (the error is being handled): nothing to save
        if session.accessed:
            response.vary.add("Cookie")
        state = session._state
        assert state is not None
        # As Django's middleware: a failed request saves nothing. It is also how a store
        # error during the view (answered by the 503 handler) is not followed by a second
        # attempt at the same write.
        if not session._committed and response.status_code < 500:
            session._committed = True  # one store attempt per request, even if this raises
            accessed = session.accessed
            try:
                session._action = state.run(state.commit(session))
            except StoreUnavailable:
                raise
            except Exception:
                state.run(state.discard_created())  # its id will never reach the browser
                raise
            session.accessed = accessed  # the commit's reads are not the app's
        session._committed = True
        action = session._action
        if action is None:
            if state.moved_to is None:
                return
            # The view moved the session to a new id and retired the old one (regenerate(),
            # then an increment): whatever the response, the browser goes with it.
            action = Cookie.SET
        if action is Cookie.KEEP and state.stored and self.should_set_cookie(app, session):
            action = Cookie.SET  # Flask's rule: modified, or permanent and refreshed each request
        name = self.get_cookie_name(app)
        cookie_flags: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
            "partitioned": self.get_cookie_partitioned(app),
        }
        if action is Cookie.DELETE:
            response.delete_cookie(name, **cookie_flags)
            response.vary.add("Cookie")
        elif action is Cookie.SET:
            assert state.session_id is not None and state.expires_at is not None
            # A permanent session's cookie expires with its record, never later; any other
            # gets a browser-session cookie (its record still expires after
            # PERMANENT_SESSION_LIFETIME).
            expires = datetime.fromtimestamp(state.expires_at, UTC) if session.permanent else None
            response.set_cookie(name, state.session_id, expires=expires, **cookie_flags)
            response.vary.add("Cookie")
        old = state.old_cookie_to_delete
        if old and old != name:
            response.delete_cookie(old, domain=cookie_flags["domain"], path=cookie_flags["path"])

    def unavailable(self, error: InternalServerError) -> Response | InternalServerError:
        """Flask's 500 handler, turned into a 503 when the session store did not answer."""
        if isinstance(error.original_exception, StoreUnavailable):
            return Response(outage.BODY, outage.STATUS, outage.headers(self.retry_after))
        return error


def _migration(value: object, app: Flask | None) -> Migration | None:
    if value is None:
        return None
    if isinstance(value, Source):
        return Migration(value)
    if value == "flask":
        if app is None:
            raise ConfigurationError(
                'CLOUDSESSIONS_MIGRATE_FROM = "flask" needs the app: use CloudSessions(app)'
            )
        from .migration.cookies import FlaskCookieSource

        return Migration(FlaskCookieSource(app))
    raise ConfigurationError(
        'CLOUDSESSIONS_MIGRATE_FROM must be "flask" (Flask\'s signed cookie) or a'
        f" cloudsessions.migration.Source, got {value!r}"
    )


class CloudSessions:
    """The Flask extension: ``CloudSessions(app)``, or ``ext = CloudSessions()`` and later
    ``ext.init_app(app)`` in an app factory. Settings are read from app.config there."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        # No store is created here: the first request that needs one creates it.
        interface = CloudSessionInterface(app.config, app)
        app.session_interface = interface
        app.extensions["cloudsessions"] = interface
        if interface.outage_response:
            # A store error in open_session or save_session reaches Flask's 500 handling
            # (it happens outside the view); an app's own 500 handler replaces this one and
            # finds the StoreUnavailable as `error.original_exception`.
            app.register_error_handler(InternalServerError, interface.unavailable)

    @staticmethod
    def get_store(app: Flask | None = None) -> Store:
        """The store of `app` (default: the current app), e.g. for for_user()."""
        interface = (app or current_app).extensions["cloudsessions"]
        assert isinstance(interface, CloudSessionInterface)
        return interface.store


__all__ = [
    "CloudSessionInterface",
    "CloudSessions",
    "FlaskSession",
    "FlaskSessionSettingWarning",
    "TaggedValues",
]
