"""The demo as a one-file Django site: settings, views and URLs, served by runserver."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import include, path
from django.views.decorators.http import require_GET, require_POST

from ..django.engine import SessionStore
from ..session_ids import is_valid_session_id, record_id
from . import page


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    session = request.session
    assert isinstance(session, SessionStore)
    if "greeting" not in session:
        session["greeting"] = page.new_greeting()
    # An atomic increment in the store: concurrent requests of one visitor all count,
    # as the tutorial's transaction guaranteed, without a transaction per request.
    views = session.increment("views")
    fingerprint = _fingerprint(session.session_key)
    visit = page.Visit(
        views, session["greeting"], session.get(page.USER_KEY), fingerprint, get_token(request)
    )
    return HttpResponse(page.render("django", settings.DEMO_STORE_DESCRIPTION, visit))


@require_POST
def login(request: HttpRequest) -> HttpResponse:
    # Setting the user id is the whole sign-in here (django.contrib.auth's login() also
    # calls cycle_key()): cloudsessions moves the session to a new id when its user
    # changes (the old record is deleted), which defeats session fixation.
    request.session[page.USER_KEY] = request.POST.get("name", "")[:40] or "anonymous"
    return HttpResponseRedirect("/")


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponseRedirect("/")


def _fingerprint(key: str | None) -> str:
    return record_id(key)[:12] if key and is_valid_session_id(key) else "-"


urlpatterns = [
    path("", home),
    path("login", login),
    path("logout", logout),
    # "Where you're signed in": the page cloudsessions ships, with a link back here.
    path(page.SIGNED_IN_PAGE.lstrip("/"), include("cloudsessions.django.urls"), {"back_url": "/"}),
]


def configure(store_url: str, described: str, host: str) -> None:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=[host, "localhost", "127.0.0.1", "[::1]"],
        SECRET_KEY="cloudsessions-demo-only",  # noqa: S106 - a local demo
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["cloudsessions.django"],
        MIDDLEWARE=[
            "cloudsessions.django.middleware.SessionMiddleware",  # 503 on a store outage
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        SESSION_ENGINE="cloudsessions.django",
        CLOUDSESSIONS={"STORE": store_url, "USER_ID_KEY": page.USER_KEY},
        DATABASES={},
        USE_TZ=True,
        LOGIN_URL=page.LOGIN_URL,  # where the signed-in page sends an anonymous visitor
        DEMO_STORE_DESCRIPTION=described,  # the page shows it: Store.describe(), no secret
    )


def serve(store_url: str, described: str, host: str, port: int) -> int:
    import django
    from django.core.management import call_command

    configure(store_url, described, host)
    django.setup()
    call_command("runserver", f"{host}:{port}", use_reloader=False)
    return 0
