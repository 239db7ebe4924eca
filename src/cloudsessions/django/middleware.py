"""Django's SessionMiddleware, native on async requests and answering 503 when the store is down.

Use it in place of ``django.contrib.sessions.middleware.SessionMiddleware``; it is a subclass
of it (Django's admin and system checks find it). Everything else is Django's: the cookie,
``Vary: Cookie``, SESSION_SAVE_EVERY_REQUEST, no save on a 5xx, SessionInterrupted on a
session ended elsewhere.

Async requests: Django runs its own SessionMiddleware on an async request (ASGI, async
views) by sending ``process_request`` and ``process_response`` through asgiref's single
thread executor, so every request waits twice for that one thread and the save blocks it.
This one is sync and async capable like Django's, and on an async request does the same
work on the event loop: building the session reads nothing, and the end of the request uses
the session's async API (``aget_expire_at_browser_close``, ``aget_expiry_age``, ``asave``),
which runs on the store's native asyncio client where it has one (DynamoDB with aiobotocore,
Firestore, MongoDB, Redis). Views should use the async API too (``await
request.session.aget(...)``), as Django documents for async views. On a sync request
(WSGI, or sync middleware around it) it is Django's middleware, unchanged.

Outages: a store that does not answer raises `cloudsessions.StoreUnavailable` from the
session load (in the view, or wherever the session is first read) or the save (after the
view); this middleware turns both into 503 Service Unavailable with Retry-After
(settings.CLOUDSESSIONS["RETRY_AFTER"], default 5 seconds) instead of a 500 that reads as a
bug, on sync and async requests alike. A load that fails in another middleware, before the
view runs, is that middleware's 500: place this one above the middleware that read the
session if that matters.

A subclass that changes ``process_response`` changes ``aprocess_response`` too: async
requests never call the sync one.
"""

from __future__ import annotations

import time
from typing import TypeVar

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date

from .. import outage
from ..errors import StoreUnavailable
from ..metadata import Client
from .conf import config

# Django's words (django.contrib.sessions.middleware), so both paths raise the same error.
INTERRUPTED = (
    "The request's session was deleted before the request completed. "
    "The user may have logged out in a concurrent request, for example."
)


def unavailable(request: HttpRequest | None = None) -> HttpResponse:
    """The 503 answer to a store outage.

    The browser's cookie is left as it is, so that a retry finds the same session, unless
    the session moved to a new id in this request (cycle_key() created it and retired the
    old one): then the response carries the new id, under which the session lives on."""
    response = HttpResponse(outage.BODY, status=outage.STATUS)
    for name, value in outage.headers(config().retry_after):
        response[name] = value
    response.cloudsessions_outage = True  # type: ignore[attr-defined]
    session = getattr(request, "session", None)
    moved = getattr(session, "moved_to", None)
    if moved is not None:
        # The session is loaded (cycle_key() read it): these read no store.
        assert isinstance(session, SessionBase)
        if session.get_expire_at_browser_close():
            _set_cookie(response, moved, None)
        else:
            _set_cookie(response, moved, session.get_expiry_age())
        patch_vary_headers(response, ("Cookie",))
    return response


def _set_cookie(response: HttpResponseBase, session_key: str, max_age: int | None) -> None:
    # Django's SessionMiddleware's cookie, argument for argument (its stubs want str and bool
    # where Django passes None: no value leaves the cookie attribute out).
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session_key,
        max_age=max_age,
        expires=None if max_age is None else http_date(time.time() + max_age),
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE or None,  # type: ignore[arg-type]
        httponly=settings.SESSION_COOKIE_HTTPONLY or None,  # type: ignore[arg-type]
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


def _is_outage(response: HttpResponseBase) -> bool:
    # The session is in an unknown state (a load, save or logout failed): see unavailable().
    return getattr(response, "cloudsessions_outage", False)


class SessionMiddleware(DjangoSessionMiddleware):
    # sync_capable and async_capable come from Django's MiddlewareMixin, whose __init__ marks
    # the instance a coroutine function when get_response is one; __call__ then hands each
    # request to __acall__ below.

    def process_request(self, request: HttpRequest) -> None:
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        old_name = getattr(self.SessionStore, "old_cookie_name", None)
        if session_key is None and old_name is not None and (name := old_name()):
            session_key = request.COOKIES.get(name)  # the previous backend's own cookie
        request.session = self.SessionStore(session_key)
        # Who is asking, for a signed-in session's metadata (docs/signed-in.md). REMOTE_ADDR
        # is the peer: behind a proxy, set it from X-Forwarded-For in a middleware you trust.
        seen_from = getattr(request.session, "seen_from", None)
        if seen_from is not None:
            meta = request.META
            seen_from(Client(meta.get("REMOTE_ADDR"), meta.get("HTTP_USER_AGENT")))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable(request) if isinstance(exception, StoreUnavailable) else None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if _is_outage(response):
            return response
        try:
            return _delete_old_cookie(request, super().process_response(request, response))
        except StoreUnavailable:
            return unavailable(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Django's MiddlewareMixin would run both hooks in asgiref's thread executor.
        # process_request only builds the session object (no store call): run it here.
        self.process_request(request)
        response = await self.get_response(request)  # type: ignore[misc]  # a coroutine here
        return await self.aprocess_response(request, response)

    async def aprocess_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """process_response on the event loop, through the session's async API."""
        if _is_outage(response):
            return response
        try:
            return _delete_old_cookie(request, await _acommit(request, response))
        except StoreUnavailable:
            return unavailable(request)


R = TypeVar("R", bound=HttpResponseBase)


def _delete_old_cookie(request: HttpRequest, response: R) -> R:
    # A session moved from a previous backend whose cookie has a name of its own: that
    # cookie goes, so it is never looked up again (see SessionState.old_cookie_to_delete).
    old = getattr(getattr(request, "session", None), "old_cookie_to_delete", None)
    if old and old != settings.SESSION_COOKIE_NAME:
        response.delete_cookie(
            old, path=settings.SESSION_COOKIE_PATH, domain=settings.SESSION_COOKIE_DOMAIN
        )
    return response


async def _acommit(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Django's SessionMiddleware.process_response (5.2 and 6.1 alike), step for step, with
    each call that may reach the store replaced by its async twin."""
    try:
        accessed = request.session.accessed
        modified = request.session.modified
        empty = request.session.is_empty()  # reads attributes only, never the store
    except AttributeError:
        return response
    # First check if we need to delete this cookie.
    # The session should be deleted only if the session is entirely empty.
    if settings.SESSION_COOKIE_NAME in request.COOKIES and empty:
        response.delete_cookie(
            settings.SESSION_COOKIE_NAME,
            path=settings.SESSION_COOKIE_PATH,
            domain=settings.SESSION_COOKIE_DOMAIN,
            samesite=settings.SESSION_COOKIE_SAMESITE,
        )
        need_vary_cookie = True
    else:
        # If the session was accessed, it must be varied on, regardless of
        # whether it was modified or will be saved.
        need_vary_cookie = accessed
        if (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not empty:
            if await request.session.aget_expire_at_browser_close():
                max_age = None
            else:
                max_age = await request.session.aget_expiry_age()
            # Save the session data and refresh the client cookie.
            # Skip session save for 5xx responses.
            if response.status_code < 500:
                try:
                    await request.session.asave()
                except UpdateError as exc:
                    raise SessionInterrupted(INTERRUPTED) from exc
                _set_cookie(response, request.session.session_key, max_age)  # type: ignore[arg-type]
                # With a session cookie set, it must be varied on.
                need_vary_cookie = True
    if need_vary_cookie:
        patch_vary_headers(response, ("Cookie",))
    return response
