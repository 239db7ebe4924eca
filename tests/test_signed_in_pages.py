""" "Where you're signed in": the ready pages on every front door, and the Django admin view.

Each door serves the same small app: a sign-in that only records the user (Django's
auth.login, Flask-Login's and Starlette's "_user_id" key), a /me/ that says who is signed in,
and the page at /account/sessions/ (cloudsessions.django.urls, the Flask blueprint, the
ASGI router). Each browser is the framework's test client with a User-Agent of its own; a
form is posted with the token of the page it came from, as a browser does. On Django, the
CSRF check is Django's own (the test client enforces it here).

The promises: two browsers of one user are listed with their devices and the current one
marked; revoking the other through the page signs it out on its very next request and
leaves this one signed in; "sign out everywhere else" does; a form without the page's token
(or from another origin) is a 403 that changes nothing; a handle of another user's session
revokes nothing; an anonymous visitor is sent to sign in; showing the page writes nothing.
The Django admin view lists and revokes a user's sessions for staff allowed to change users,
and refuses everybody else.
"""

from __future__ import annotations

import contextlib
import html
import re
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.test.utils import setup_databases, teardown_databases
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates
from starlette.testclient import TestClient

from cloudsessions import record_id
from cloudsessions.asgi import SessionMiddleware
from cloudsessions.flask import CloudSessions
from cloudsessions.pages import CSRF_FAILED_BODY, FORBIDDEN_BODY, MESSAGES
from cloudsessions.pages.asgi import signed_in_app
from cloudsessions.pages.flask import signed_in_blueprint
from cloudsessions.registry import close_shared_stores
from tests import stores

# The stores the pages are tested on: the page logic is the same on every store, whose own
# metadata and revocation the contract suite proves. They pass on all of them too:
# stores.STORE_NAMES here runs the whole matrix (about 90 s more).
PAGE_STORES = [name for name in ["sqlite"] if name in stores.STORE_NAMES]
DOORS = ["django", "flask", "asgi", "asgi-trio"]

PAGE = "/account/sessions/"
LOGIN = "/login/"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
LAPTOP, PHONE, DESKTOP = (
    "Firefox 133 on Linux",
    "Mobile Safari 17 on iPhone",
    "Chrome 131 on Windows 10",
)
EVIL = "https://evil.example"


# ------------------------------------------------------------------ reading the page

ROW = re.compile(r'<li class="session( current)?"[^>]*>(.*?)</li>', re.DOTALL)
LABEL = re.compile(r'<span class="label"[^>]*>([^<]*)</span>')
HANDLE = re.compile(r'name="handle" value="([^"]*)"')
TOKEN = re.compile(r'<input type="hidden" name="(csrfmiddlewaretoken|csrf_token)" value="([^"]+)">')


@dataclass(frozen=True)
class Listed:
    device: str
    current: bool
    handle: str | None  # the revoke button's; the current session has none


def listed(page: str) -> list[Listed]:
    """The sessions a page lists, in its order."""
    found = []
    for current, body in ROW.findall(page):
        label = LABEL.search(body)
        handle = HANDLE.search(body)
        assert label is not None, body
        found.append(
            Listed(html.unescape(label.group(1)), bool(current), handle and handle.group(1))
        )
    return found


def handle_of(page: str, device: str) -> str:
    handle = next(row.handle for row in listed(page) if row.device == device)
    assert handle is not None
    return handle


def shown_message(page: str) -> str | None:
    found = re.search(r'<p class="message" role="status">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None


# ------------------------------------------------------------------ one browser, each door


@dataclass
class Reply:
    status: int
    text: str
    location: str | None
    headers: dict[str, str]  # lower-case names


class Visitor:
    """One browser on the door's app: its own cookie jar and User-Agent."""

    page_text = ""  # the last page shown: its forms' token is what a post sends

    def get(self, path: str) -> Reply: ...
    def post(self, path: str, fields: dict[str, str], headers: dict[str, str]) -> Reply: ...
    @property
    def sid(self) -> str | None: ...

    def sign_in(self, user: str) -> None:
        assert self.post(LOGIN, {"name": user}, {}).status == 200

    def user(self) -> str | None:
        """Who the app says is signed in, on a request of its own."""
        reply = self.get("/me/")
        assert reply.status == 200
        return re.fullmatch(r'\{"user": ?(null|"([^"]*)")\}', reply.text).group(2)  # type: ignore[union-attr]

    def page(self) -> str:
        reply = self.get(PAGE)
        assert reply.status == 200, reply
        self.page_text = reply.text
        return reply.text

    def act(
        self, action: str, token: str | None = "", origin: str | None = None, **fields: str
    ) -> Reply:
        """Post the page's form `action` ("revoke", "revoke-others"), with the token of the
        page last shown unless `token` says otherwise (None: none at all)."""
        found = TOKEN.search(self.page_text)
        assert found is not None, "show the page first"
        name, value = found.groups()
        form = dict(fields)
        if token is not None:
            form[name] = token or value
        headers = {"Origin": origin} if origin else {}
        return self.post(PAGE + action, form, headers)


class DjangoVisitor(Visitor):
    def __init__(self, user_agent: str) -> None:
        self.client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=user_agent)

    def get(self, path: str) -> Reply:
        return self._reply(self.client.get(path))

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str]) -> Reply:
        return self._reply(self.client.post(path, fields, headers=headers))

    @staticmethod
    def _reply(response: Any) -> Reply:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(
            response.status_code, response.content.decode(), headers.get("location"), headers
        )

    @property
    def sid(self) -> str | None:
        morsel = self.client.cookies.get("sessionid")
        return morsel.value if morsel is not None else None


class FlaskVisitor(Visitor):
    def __init__(self, app: flask.Flask, user_agent: str) -> None:
        self.client = app.test_client()
        self.client.environ_base["HTTP_USER_AGENT"] = user_agent

    def get(self, path: str) -> Reply:
        return self._reply(self.client.get(path))

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str]) -> Reply:
        return self._reply(self.client.post(path, data=fields, headers=headers))

    @staticmethod
    def _reply(response: Any) -> Reply:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(
            response.status_code, response.get_data(as_text=True), response.location, headers
        )

    @property
    def sid(self) -> str | None:
        cookie = self.client.get_cookie("session")
        return cookie.value if cookie is not None else None


class AsgiVisitor(Visitor):
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def get(self, path: str) -> Reply:
        return self._reply(self.client.get(path))

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str]) -> Reply:
        return self._reply(self.client.post(path, data=fields, headers=headers))

    @staticmethod
    def _reply(response: Any) -> Reply:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status_code, response.text, headers.get("location"), headers)

    @property
    def sid(self) -> str | None:
        return self.client.cookies.get("session")  # type: ignore[no-any-return]


@dataclass
class Site:
    """The door's app on one store; `visitor(user_agent)` opens a browser on it."""

    door: str
    store: stores.Instrumented
    visitor: Callable[[str], Visitor]

    def signed_in(self, user: str, user_agent: str) -> Visitor:
        browser = self.visitor(user_agent)
        browser.sign_in(user)
        return browser


# ------------------------------------------------------------------ the apps


def flask_site_app(store: Any, login_url: str | None, templates: Path | None) -> flask.Flask:
    app = flask.Flask(__name__, template_folder=str(templates) if templates else None)
    app.config.update(CLOUDSESSIONS_STORE=store)
    CloudSessions(app)

    @app.post(LOGIN)
    def login() -> str:
        flask.session["_user_id"] = flask.request.form["name"]  # as Flask-Login's login_user()
        return "signed in"

    @app.get("/me/")
    def me() -> Any:
        return flask.json.dumps({"user": flask.session.get("_user_id")})

    blueprint = signed_in_blueprint(login_url=login_url)
    app.register_blueprint(blueprint, url_prefix=PAGE.rstrip("/"))
    return app


def asgi_site_app(store: Any, login_url: str | None, templates: Path | None) -> Starlette:
    async def login(request: Request) -> PlainTextResponse:
        form = (await request.body()).decode()
        request.session["_user_id"] = form.partition("name=")[2]
        return PlainTextResponse("signed in")

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.session.get("_user_id")})

    own = Jinja2Templates(directory=templates) if templates else None
    pages = signed_in_app(login_url=login_url, templates=own)
    return Starlette(
        routes=[
            Route(LOGIN, login, methods=["POST"]),
            Route("/me/", me),
            Mount(PAGE.rstrip("/"), app=pages),
        ],
        middleware=[Middleware(SessionMiddleware, store=store)],
    )


# Django: django.contrib.auth's users (in Django's test database), its login(), and the
# admin, on the settings below; the URLs are a module made once the admin is installed.
ADMIN_APPS = ["django.contrib.admin", "django.contrib.messages"]


def django_settings(store: Any, urls: types.ModuleType, templates: Path | None) -> dict[str, Any]:
    return {
        "ROOT_URLCONF": urls,
        "MIDDLEWARE": [
            "cloudsessions.django.middleware.SessionMiddleware",  # records the User-Agent
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(templates)] if templates else [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "CLOUDSESSIONS": {"STORE": store},
        "LOGIN_URL": LOGIN,
    }


@csrf_exempt
def django_login(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth import get_user_model, login

    user = get_user_model().objects.get(username=request.POST["name"])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponse("signed in")


def django_me(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


def django_urls() -> types.ModuleType:
    """The URLconf: the page, the sign-in, /me/, and an admin site with the mixin."""
    from django.contrib import admin
    from django.contrib.auth.admin import UserAdmin
    from django.contrib.auth.models import User

    from cloudsessions.django.admin import UserSessionsAdminMixin

    class SessionsUserAdmin(UserSessionsAdminMixin, UserAdmin):  # type: ignore[type-arg]
        pass

    site = admin.AdminSite(name="pages_admin")
    site.register(User, SessionsUserAdmin)
    urls = types.ModuleType("signed_in_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        path(LOGIN.strip("/") + "/", django_login),
        path("me/", django_me),
        path(PAGE.strip("/") + "/", include("cloudsessions.django.urls")),
        path("admin/", site.urls),
    ]
    return urls


@pytest.fixture(scope="module")
def django_database() -> Iterator[types.ModuleType]:
    """Django's test database with auth and the admin installed; yields the URLconf."""
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, *ADMIN_APPS]):
        old = setup_databases(verbosity=0, interactive=False)
        try:
            yield django_urls()
        finally:
            teardown_databases(old, verbosity=0)
            close_shared_stores()


@contextlib.contextmanager
def django_users(*names: str) -> Iterator[None]:
    from django.contrib.auth.models import User

    for name in names:
        User.objects.create_user(name, password=None)
    try:
        yield
    finally:
        from django.contrib.admin.models import LogEntry

        # The admin's log of their changes first: the cascade from User finds LogEntry only
        # if User's related objects were listed while the admin was installed, and another
        # test module may have listed them without it.
        LogEntry.objects.all().delete()
        User.objects.all().delete()


USERS = ("ada", "bob", "carol")


@pytest.fixture(params=PAGE_STORES)
def page_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[stores.Instrumented]:
    with stores.fresh(request.param, tmp_path) as instrumented:
        instrumented.store.provision()
        yield instrumented


@contextlib.contextmanager
def open_site(
    request: pytest.FixtureRequest,
    door: str,
    store: stores.Instrumented,
    *,
    login_url: str | None = LOGIN,
    templates: Path | None = None,
) -> Iterator[Site]:
    with contextlib.ExitStack() as stack:
        if door == "django":
            assert login_url == LOGIN, "Django's page sends anonymous visitors to LOGIN_URL"
            urls = request.getfixturevalue("django_database")
            stack.enter_context(override_settings(**django_settings(store.store, urls, templates)))
            stack.enter_context(django_users(*USERS))
            yield Site(door, store, DjangoVisitor)
        elif door == "flask":
            app = flask_site_app(store.store, login_url, templates)
            yield Site(door, store, lambda agent: FlaskVisitor(app, agent))
        else:
            backend = door.partition("-")[2] or "asyncio"
            asgi = asgi_site_app(store.store, login_url, templates)

            def visitor(agent: str) -> Visitor:
                client = TestClient(
                    asgi, backend=backend, headers={"user-agent": agent}, follow_redirects=False
                )
                return AsgiVisitor(stack.enter_context(client))

            yield Site(door, store, visitor)


@pytest.fixture(params=DOORS)
def site(request: pytest.FixtureRequest, page_store: stores.Instrumented) -> Iterator[Site]:
    with open_site(request, request.param, page_store) as opened:
        yield opened


# ------------------------------------------------------------------ the page


def test_two_browsers_of_one_user_are_listed_with_their_devices(site: Site) -> None:
    laptop = site.signed_in("ada", FIREFOX)
    phone = site.signed_in("ada", IPHONE)
    site.signed_in("bob", WINDOWS)  # another user's session is never listed

    page = laptop.page()
    assert [(row.device, row.current) for row in listed(page)] == [
        (LAPTOP, True),  # this browser first, marked, and without a button
        (PHONE, False),
    ]
    assert listed(page)[0].handle is None and listed(page)[1].handle
    assert '<span class="detail">iOS 17</span>' in page  # what "on iPhone" leaves out
    assert re.search(
        r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" [^>]*>just now</time>', page
    )
    assert "Sign out everywhere else" in page

    assert [(row.device, row.current) for row in listed(phone.page())] == [
        (PHONE, True),
        (LAPTOP, False),
    ]


def test_revoking_the_other_browser_signs_it_out_on_its_next_request(site: Site) -> None:
    laptop = site.signed_in("ada", FIREFOX)
    phone = site.signed_in("ada", IPHONE)
    assert phone.user() == "ada"

    done = laptop.act("revoke", handle=handle_of(laptop.page(), PHONE))
    assert (done.status, done.location) == (303, PAGE + "?done=revoked")

    assert phone.user() is None, "the revoked browser is anonymous on its very next request"
    assert phone.get(PAGE).status == 302
    assert laptop.user() == "ada"
    page = laptop.get(done.location).text
    assert [(row.device, row.current) for row in listed(page)] == [(LAPTOP, True)]
    assert shown_message(page) == MESSAGES["revoked"]
    assert "Sign out everywhere else" not in page
    assert "the only browser signed in" in page


def test_sign_out_everywhere_else(site: Site) -> None:
    laptop = site.signed_in("ada", FIREFOX)
    others = [site.signed_in("ada", IPHONE), site.signed_in("ada", WINDOWS)]
    bob = site.signed_in("bob", FIREFOX)
    assert [row.device for row in listed(laptop.page())] == [LAPTOP, DESKTOP, PHONE]

    done = laptop.act("revoke-others")
    assert (done.status, done.location) == (303, PAGE + "?done=others")

    assert [browser.user() for browser in others] == [None, None]
    assert laptop.user() == "ada"
    assert bob.user() == "bob", "another user's sessions are not touched"
    page = laptop.get(done.location).text
    assert [row.device for row in listed(page)] == [LAPTOP]
    assert shown_message(page) == MESSAGES["others"]


def test_a_form_without_the_pages_token_or_from_another_origin_changes_nothing(
    site: Site,
) -> None:
    laptop = site.signed_in("ada", FIREFOX)
    phone = site.signed_in("ada", IPHONE)
    target = handle_of(laptop.page(), PHONE)
    phone.page()  # the phone's own token: valid for the phone's session only
    stolen = TOKEN.search(phone.page_text).group(2)  # type: ignore[union-attr]

    for action, fields in (("revoke", {"handle": target}), ("revoke-others", {})):
        assert laptop.act(action, token=None, **fields).status == 403, "no token"
        assert laptop.act(action, token="f" * 96, **fields).status == 403, "a made-up one"
        assert laptop.act(action, token=stolen, **fields).status == 403, "another session's"
        assert laptop.act(action, origin=EVIL, **fields).status == 403, "another site's page"

    assert phone.user() == "ada"
    assert len(listed(laptop.page())) == 2
    if site.door != "django":  # Django's own 403 page says so in its words
        assert laptop.act("revoke", token=None, handle=target).text == CSRF_FAILED_BODY
    # The same form from the page itself, with its origin, goes through.
    own = "http://localhost" if site.door == "flask" else "http://testserver"
    assert laptop.act("revoke", origin=own, handle=target).status == 303
    assert phone.user() is None


def test_a_handle_of_another_users_session_revokes_nothing(site: Site) -> None:
    ada = site.signed_in("ada", FIREFOX)
    site.signed_in("ada", WINDOWS)  # so that ada's page has a form (and its token)
    bob = site.signed_in("bob", IPHONE)
    assert bob.sid is not None
    ada.page()
    for forged in (record_id(bob.sid), "not-a-handle", ""):
        done = ada.act("revoke", handle=forged)
        assert (done.status, done.location) == (303, PAGE + "?done=gone")
    assert bob.user() == "bob"
    page = ada.get(PAGE + "?done=gone").text
    assert shown_message(page) == MESSAGES["gone"]
    assert len(listed(page)) == 2


def test_an_anonymous_visitor_is_sent_to_sign_in(site: Site) -> None:
    stranger = site.visitor(FIREFOX)
    answer = stranger.get(PAGE)
    assert (answer.status, answer.location) == (302, LOGIN + "?next=%2Faccount%2Fsessions%2F")
    # A post from a browser without a session is sent to sign in too (Django's CSRF check,
    # which comes first there, refuses it), and ends nothing.
    ada = site.signed_in("ada", FIREFOX)
    refused = site.visitor(IPHONE).post(PAGE + "revoke-others", {}, {})
    assert refused.status == (403 if site.door == "django" else 302)
    assert ada.user() == "ada"


@pytest.mark.parametrize("door", ["flask", "asgi"])
def test_without_a_login_url_an_anonymous_visitor_is_refused(
    request: pytest.FixtureRequest, door: str, page_store: stores.Instrumented
) -> None:
    with open_site(request, door, page_store, login_url=None) as opened:
        answer = opened.visitor(FIREFOX).get(PAGE)
    assert (answer.status, answer.text) == (403, FORBIDDEN_BODY)


def test_showing_the_page_writes_nothing(site: Site) -> None:
    laptop = site.signed_in("ada", FIREFOX)
    site.signed_in("ada", IPHONE)
    site.store.trips.reset()
    assert len(listed(laptop.page())) == 2
    # The session's read and the user's index query (and, where the index lives apart from
    # the sessions, a check of each session it names); no write, no "last seen" either.
    listing = site.store.listing_reads + (2 if site.store.index_apart else 0)
    assert site.store.trips.counts == (1 + listing, 0)


def test_the_page_is_private_and_never_framed(site: Site) -> None:
    headers = site.signed_in("ada", FIREFOX).get(PAGE).headers
    assert "no-store" in headers["cache-control"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == "frame-ancestors 'none'"


@pytest.mark.parametrize("door", DOORS)
def test_a_projects_own_template_takes_precedence(
    request: pytest.FixtureRequest, door: str, page_store: stores.Instrumented, tmp_path: Path
) -> None:
    own = tmp_path / "templates" / "cloudsessions" / "signed_in.html"
    own.parent.mkdir(parents=True)
    own.write_text(
        "<p>Ours: {% for row in page.rows %}[{{ row.device }}]{% endfor %}</p>{{ page.csrf_input }}"
    )
    with open_site(request, door, page_store, templates=own.parents[1]) as opened:
        page = opened.signed_in("ada", FIREFOX).page()
    assert page.startswith(f'<p>Ours: [{LAPTOP}]</p><input type="hidden"')


def test_the_page_escapes_what_a_browser_sent(site: Site) -> None:
    agent = 'Mozilla/5.0 <script>alert("x")</script>'
    laptop = site.signed_in("ada", agent)
    page = laptop.page()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


# ------------------------------------------------------------------ the Django admin


@pytest.fixture
def admin_site(request: pytest.FixtureRequest, page_store: stores.Instrumented) -> Iterator[Site]:
    with open_site(request, "django", page_store) as opened:
        yield opened


def _staff(name: str, *, superuser: bool = False, permissions: tuple[str, ...] = ()) -> Client:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(name, is_staff=True, is_superuser=superuser)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(HTTP_USER_AGENT=WINDOWS)
    client.force_login(user)
    return client


def _sessions_url(name: str) -> str:
    from django.contrib.auth.models import User

    return f"/admin/auth/user/{User.objects.get(username=name).pk}/sessions/"


def test_the_admin_lists_and_revokes_a_users_sessions(admin_site: Site) -> None:
    laptop = admin_site.signed_in("ada", FIREFOX)
    phone = admin_site.signed_in("ada", IPHONE)
    admin = _staff("admin", superuser=True)
    url = _sessions_url("ada")

    change = admin.get(url.replace("/sessions/", "/change/")).content.decode()
    assert f'<a href="{url}" class="sessionslink">Sessions</a>' in change
    page = admin.get(url).content.decode()
    assert re.findall(r'<label for="session-\d+"[^>]*>([^<]+)</label>', page) == [PHONE, LAPTOP]
    handles = re.findall(r'name="handle" value="([0-9a-f]{64})"', page)
    assert len(handles) == 2

    done = admin.post(url, {"action": "revoke", "handle": handles[0]})
    assert (done.status_code, done["Location"]) == (302, url)
    assert (phone.user(), laptop.user()) == (None, "ada")
    after = admin.get(url).content.decode()
    assert "Revoked 1 session of ada." in after
    assert re.findall(r'<label for="session-\d+"[^>]*>([^<]+)</label>', after) == [LAPTOP]

    admin.post(url, {"action": "revoke_all"})
    assert laptop.user() is None
    assert "ada is not signed in anywhere." in admin.get(url).content.decode()

    from django.contrib.admin.models import LogEntry

    logged = LogEntry.objects.filter(object_repr="ada").values_list("change_message", flat=True)
    assert sorted(logged) == ["Revoked 1 session.", "Revoked 1 session."]


def test_the_admin_view_refuses_all_but_staff_allowed_to_change_users(admin_site: Site) -> None:
    from django.contrib.auth.models import User

    laptop = admin_site.signed_in("ada", FIREFOX)
    url = _sessions_url("ada")

    member = Client()
    member.force_login(User.objects.get(username="bob"))  # signed in, not staff
    viewer = _staff("viewer", permissions=("view_user",))  # staff, may not change users
    for client, status in ((Client(), 302), (member, 302), (viewer, 403)):
        assert client.get(url).status_code == status
        answer = client.post(url, {"action": "revoke_all"})
        assert answer.status_code == status
        if status == 302:
            assert answer["Location"].startswith("/admin/login/")
    assert laptop.user() == "ada"


# ------------------------------------------------------------------ the shared pieces


def test_times_read_as_a_person_says_them() -> None:
    from cloudsessions.pages import Stamp, relative

    now = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
    said = {
        30: "just now",
        60: "1 minute ago",
        5 * 60 + 59: "5 minutes ago",
        3600: "1 hour ago",
        26 * 3600: "1 day ago",
        13 * 86400: "13 days ago",
        -13 * 86400 - 5: "in 13 days",  # an expiry
        60 * 86400: "23 Jul 2026",  # long ago: the date
    }
    assert {ago: relative(now - ago, now) for ago in said} == said
    assert Stamp.of(now - 300, now) == Stamp(
        "5 minutes ago", "2026-09-21T14:08:20Z", "2026-09-21 14:08 UTC"
    )
    assert Stamp.of(None, now) is None


def test_a_form_token_is_bound_to_its_session_and_new_on_every_page() -> None:
    from cloudsessions import new_session_id
    from cloudsessions.pages import csrf_ok, csrf_token

    mine, theirs = new_session_id(), new_session_id()
    first, second = csrf_token(mine), csrf_token(mine)
    assert first != second, "a fresh salt on every page (BREACH)"
    assert csrf_ok(mine, first) and csrf_ok(mine, second)
    assert not csrf_ok(theirs, first)
    assert not csrf_ok(mine, first[:-1] + ("0" if first[-1] != "0" else "1"))
    assert not csrf_ok(mine, first[:32] + csrf_token(theirs)[32:])
    assert not any(csrf_ok(mine, forged) for forged in ("", None, "0" * 96, first + "0"))
    assert not csrf_ok(None, first)


def test_same_origin_by_the_origin_header_else_the_referer() -> None:
    from cloudsessions.pages import same_origin

    own = "https://app.example"
    assert same_origin("https://APP.example:443", None, own)
    assert not same_origin("http://app.example", None, own), "another scheme"
    assert not same_origin("https://app.example:8443", None, own), "another port"
    assert not same_origin("https://app.example.evil.example", None, own)
    assert not same_origin("null", None, own), "an opaque origin is nobody's"
    assert not same_origin(EVIL, "https://app.example/account/sessions/", own), "Origin decides"
    assert same_origin(None, "https://app.example/account/sessions/?done=gone", own)
    assert not same_origin(None, "https://evil.example/app.example/", own)
    assert not same_origin(None, "not a url", own)
    assert same_origin(None, None, own), "neither header: the token alone decides"
