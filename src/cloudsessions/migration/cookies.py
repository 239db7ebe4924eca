"""Signed-cookie sessions as a previous backend: Flask's default session and Starlette's
SessionMiddleware. The data is in the cookie itself, checked with the app's own secret key
and serializer; there is no record to delete and nothing to scan (a bulk copy cannot reach
sessions that live in browsers: each is copied at its next request).

A session logged out before the switch had its cookie emptied by that logout, so the
browser brings nothing to copy. As before the switch, a copy of an older cookie stays valid
until its signature's max age: the old scheme could not revoke it, and the read-through
accepts what the old app accepted, no more.
"""

from __future__ import annotations

import json
import time
from base64 import b64decode
from typing import TYPE_CHECKING, Any

from .source import OldSession, Source

if TYPE_CHECKING:
    from flask import Flask

FLASK_USER_ID_KEY = "_user_id"  # Flask-Login's
STARLETTE_DEFAULT_MAX_AGE = 14 * 24 * 60 * 60


class FlaskCookieSource(Source):
    """Flask's own cookie session (SecureCookieSessionInterface) of `app`: its SECRET_KEY
    (and SECRET_KEY_FALLBACKS), salt, tagged JSON and PERMANENT_SESSION_LIFETIME."""

    name = "Flask's signed cookie session"

    def __init__(self, app: Flask, *, user_id_key: str | None = FLASK_USER_ID_KEY) -> None:
        super().__init__(keep_old=False)
        from flask.sessions import SecureCookieSessionInterface

        from ..flask import TaggedValues

        self.app = app
        self.user_id_key = user_id_key
        self._interface = SecureCookieSessionInterface()
        self._values = TaggedValues(self._interface.serializer)

    def fetch(self, key: str) -> OldSession | None:
        from itsdangerous import BadSignature

        serializer = self._interface.get_signing_serializer(self.app)
        if serializer is None:  # no SECRET_KEY: Flask could not have read it either
            return None
        lifetime = self.app.permanent_session_lifetime.total_seconds()
        try:
            data, signed_at = serializer.loads(key, max_age=int(lifetime), return_timestamp=True)
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not data:
            return None
        stored = {name: self._values.dump(value) for name, value in data.items()}
        return OldSession(stored, signed_at.timestamp() + lifetime, _user(data, self.user_id_key))


class StarletteCookieSource(Source):
    """Starlette's SessionMiddleware cookie: base64 JSON signed by itsdangerous's
    TimestampSigner with `secret_key`, valid for `max_age` seconds (None: no limit, and the
    copy then lives `lifetime` seconds)."""

    name = "Starlette's signed cookie session"

    def __init__(
        self,
        secret_key: str,
        *,
        max_age: int | None = STARLETTE_DEFAULT_MAX_AGE,
        lifetime: float = STARLETTE_DEFAULT_MAX_AGE,
        user_id_key: str | None = FLASK_USER_ID_KEY,
        cookie_name: str | None = None,
    ) -> None:
        super().__init__(keep_old=False, cookie_name=cookie_name)
        from itsdangerous import TimestampSigner

        self.signer = TimestampSigner(str(secret_key))
        self.max_age = max_age
        self.lifetime = lifetime
        self.user_id_key = user_id_key

    def fetch(self, key: str) -> OldSession | None:
        from itsdangerous import BadSignature

        try:
            payload, signed_at = self.signer.unsign(
                key.encode(), max_age=self.max_age, return_timestamp=True
            )
            data = json.loads(b64decode(payload))
        except (BadSignature, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not data:
            return None
        if self.max_age is None:
            expires_at = time.time() + self.lifetime
        else:
            expires_at = signed_at.timestamp() + self.max_age
        return OldSession(data, expires_at, _user(data, self.user_id_key))


def _user(data: dict[str, Any], key: str | None) -> str | None:
    value = data.get(key) if key else None
    return None if value is None else str(value)
