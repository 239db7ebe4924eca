"""The methods the Flask and ASGI session objects add to their framework's own dict.

`flask.session` is Flask's SecureCookieSession and Starlette's `request.session` is
Starlette's Session; both mix this in, so `regenerate()`, `clear()`, `increment()`, `sid`,
`record_id` and the signed-in sessions' methods (cloudsessions.signed_in) are written once,
over the request's SessionState (cloudsessions.session).
"""

from __future__ import annotations

from typing import Any

from . import session_ids
from .session import SessionState
from .signed_in import SignedInMethods


class ServerSession(SignedInMethods):
    """The methods the Flask and ASGI session objects add to their framework's dict.

    Mixed into a dict subclass (Flask's SecureCookieSession, Starlette's Session); the
    subclass sets `_state` (None for a session object made outside a request).
    """

    _state: SessionState | None = None

    def _require_state(self) -> SessionState:
        if self._state is None:
            raise RuntimeError("this session object is not attached to a request")
        return self._state

    def _loaded_state(self) -> SessionState:
        return self._require_state()  # loaded when the request opened it

    @property
    def sid(self) -> str | None:
        """The session id (the cookie value); None for a session not written yet."""
        return self._state.session_id if self._state is not None else None

    @property
    def record_id(self) -> str | None:
        """The id the record is stored under (a hash of the session id): safe to show or log."""
        key = self.sid
        return (
            session_ids.record_id(key)
            if key is not None and session_ids.is_valid_session_id(key)
            else None
        )

    def regenerate(self) -> None:
        """A new session id for the same data, e.g. at login (defeats session fixation).

        The data is created under the new id and the old id retired when the response is
        sent (or at the next increment): one create and one conditional write. A change of
        the user id key does this by itself (see Policy.rotate_on_user_change).
        """
        self._require_state().regenerate()

    cycle_key = regenerate  # Django's name for it

    def clear(self) -> None:
        """End the session: its record and cookie are deleted when the response is sent.

        Anything set afterwards in the same request starts a new session with a new id,
        so clear() at login or logout also rotates the id.
        """
        super().clear()  # type: ignore[misc]
        if self._state is not None:
            self._state.end()

    def increment(self, name: str, delta: int = 1) -> int:
        """Add `delta` to the integer `name` atomically in the store; returns the new value.

        Unlike ``session[name] += 1``, concurrent requests never lose a count. It writes at
        once (one conditional write that also refreshes the expiry); a new or regenerated
        session is created first. Raises SessionGone if the session was ended elsewhere.
        """
        state = self._require_state()
        return state.run(state.increment(self._data(), name, delta))

    async def aincrement(self, name: str, delta: int = 1) -> int:
        """increment() through the store's async API.

        One at a time per request: a session's state is not shared between concurrent tasks
        (two increments gathered on a new session would create it twice).
        """
        state = self._require_state()
        return await state.arun(state.increment(self._data(), name, delta))

    def _data(self) -> dict[str, Any]:
        assert isinstance(self, dict)
        return self
