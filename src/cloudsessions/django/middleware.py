"""Django's SessionMiddleware, answering 503 when the session store is unavailable.

Use it in place of ``django.contrib.sessions.middleware.SessionMiddleware``. Everything else
is Django's: the cookie, SESSION_SAVE_EVERY_REQUEST, SessionInterrupted on a session ended
elsewhere. A store that does not answer raises `cloudsessions.StoreUnavailable` from the
session load (in the view, or wherever the session is first read) or the save (after the
view); this middleware turns both into 503 Service Unavailable with Retry-After
(settings.CLOUDSESSIONS["RETRY_AFTER"], default 5 seconds) instead of a 500 that reads as a
bug. A load that fails in another middleware, before the view runs, is that middleware's
500: place this one above the middleware that read the session if that matters.
"""

from __future__ import annotations

from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse

from .. import outage
from ..errors import StoreUnavailable
from .conf import config


def unavailable() -> HttpResponse:
    """The 503 answer to a store outage."""
    response = HttpResponse(outage.BODY, status=outage.STATUS)
    for name, value in outage.headers(config().retry_after):
        response[name] = value
    response.cloudsessions_outage = True  # type: ignore[attr-defined]
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable() if isinstance(exception, StoreUnavailable) else None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if getattr(response, "cloudsessions_outage", False):
            # The session is in an unknown state (a load, save or logout failed): leave the
            # browser's cookie as it is, so that a retry finds the same session.
            return response
        try:
            return super().process_response(request, response)
        except StoreUnavailable:
            return unavailable()
