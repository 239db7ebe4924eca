""" "Where you're signed in" for Django: the page and its two actions (see urls.py).

The user is the session's (settings.CLOUDSESSIONS["USER_ID_KEY"], django.contrib.auth's by
default); with django.contrib.auth's middleware an anonymous `request.user` is also
refused. An anonymous visitor is sent to settings.LOGIN_URL (or the `login_url` option)
with ?next=, as login_required does. The forms use Django's CSRF protection.

The template, cloudsessions/signed_in.html, is looked up through the project's TEMPLATES
first (a file of that name in a template directory overrides it); the one this package
ships (cloudsessions/pages/templates) is used otherwise, with or without TEMPLATES.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.template import Context, Engine, TemplateDoesNotExist, loader
from django.template.backends.utils import csrf_input
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST, require_safe

from ..pages import (
    DONE,
    HANDLE_FIELD,
    HEADERS,
    TEMPLATE,
    TEMPLATES_DIR,
    Page,
    Safe,
    done_url,
    login_redirect,
    message,
    rows,
)
from ..signed_in import SignedInMethods


class SeeOther(HttpResponseRedirect):
    status_code = 303  # after a POST: the browser GETs the page (PRG)


@never_cache
@xframe_options_deny
@csrf_protect
@require_safe
def signed_in(
    request: HttpRequest, login_url: str | None = None, back_url: str | None = None
) -> HttpResponse:
    """The list of this user's sessions, each with a "Sign out" button."""
    session = _session(request)
    sessions = session.signed_in_sessions() if _authenticated(request) else []
    if not sessions:
        return _to_login(request, login_url)
    page = Page(
        rows(sessions),
        Safe(csrf_input(request)),  # marked safe for any engine: the template inserts it
        _url(request, "revoke"),
        _url(request, "revoke_others"),
        message(request.GET.get(DONE)),
        back_url or "",
    )
    response = HttpResponse(_render(request, page))
    response["Content-Security-Policy"] = HEADERS["Content-Security-Policy"]
    return response


@csrf_protect
@require_POST
def revoke(request: HttpRequest, login_url: str | None = None, **options: Any) -> HttpResponse:
    """Sign out the session the posted handle names, if it is one of this user's."""
    session = _session(request)
    if not _authenticated(request):
        return _to_login(request, login_url)
    revoked = session.revoke(request.POST.get(HANDLE_FIELD, ""))
    return SeeOther(done_url(_url(request, "signed_in"), "revoked" if revoked else "gone"))


@csrf_protect
@require_POST
def revoke_others(
    request: HttpRequest, login_url: str | None = None, **options: Any
) -> HttpResponse:
    """Sign this user out everywhere but here."""
    session = _session(request)
    if not _authenticated(request):
        return _to_login(request, login_url)
    session.revoke_others()
    return SeeOther(done_url(_url(request, "signed_in"), "others"))


def _session(request: HttpRequest) -> SignedInMethods:
    session = getattr(request, "session", None)
    if not isinstance(session, SignedInMethods):
        raise ImproperlyConfigured(
            "The signed-in page needs cloudsessions' sessions:"
            ' SESSION_ENGINE = "cloudsessions.django" and a SessionMiddleware.'
        )
    return session


def _authenticated(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)  # without django.contrib.auth: the session decides
    return user is None or bool(user.is_authenticated)


def _to_login(request: HttpRequest, login_url: str | None) -> HttpResponse:
    target = resolve_url(login_url or settings.LOGIN_URL)
    return HttpResponseRedirect(login_redirect(target, request.get_full_path()))


def _url(request: HttpRequest, name: str) -> str:
    # The namespace the project included the URLs under (app_name's by default).
    match = request.resolver_match
    namespace = match.namespace if match is not None else ""
    return reverse(f"{namespace}:{name}" if namespace else name)


def _render(request: HttpRequest, page: Page) -> str:
    context = {"page": page}
    try:
        template = loader.get_template(TEMPLATE)  # the project's own, if it has one
    except TemplateDoesNotExist:
        return _shipped().get_template(TEMPLATE).render(Context(context))
    return template.render(context, request)


@functools.cache
def _shipped() -> Engine:
    """An engine over this package's template folder only (autoescaping, as Django's does)."""
    return Engine(dirs=[str(TEMPLATES_DIR)])
