""" "Where you're signed in", on every front door's session object.

Django's ``request.session``, Flask's ``session`` and Starlette's ``request.session`` all
have these methods (sync and async), over the request's SessionState:

- ``signed_in_sessions()``: the live sessions of this session's user, the current one
  first and marked ``current``, each with its metadata (created at, last seen, address,
  device) and a ``handle``; [] for an anonymous session. One index query.
- ``revoke(handle)``: sign that session out; False if the handle names no live session of
  this user (a handle can never reach another user's session). Its next request is
  anonymous, on every server (a cache tier is told, see docs/cache.md).
- ``revoke_others()``: sign this user out everywhere else; returns how many sessions were
  revoked. One index query and one batch delete.

The session id never appears: a handle is the record id, a one-way hash of it.
"""

from __future__ import annotations

from .record import SessionInfo
from .session import SessionState


class SignedInMethods:
    """Mixed into each front door's session object; it says how to reach its loaded state."""

    def _loaded_state(self) -> SessionState:
        raise NotImplementedError

    async def _aloaded_state(self) -> SessionState:
        return self._loaded_state()

    def signed_in_sessions(self) -> list[SessionInfo]:
        state = self._loaded_state()
        return state.run(state.signed_in())

    async def asigned_in_sessions(self) -> list[SessionInfo]:
        state = await self._aloaded_state()
        return await state.arun(state.signed_in())

    def revoke(self, handle: str) -> bool:
        state = self._loaded_state()
        return state.run(state.revoke(handle))

    async def arevoke(self, handle: str) -> bool:
        state = await self._aloaded_state()
        return await state.arun(state.revoke(handle))

    def revoke_others(self) -> int:
        state = self._loaded_state()
        return state.run(state.revoke_others())

    async def arevoke_others(self) -> int:
        state = await self._aloaded_state()
        return await state.arun(state.revoke_others())
