"""The sites tests/test_migration_browser.py switches to cloudsessions: one small site per
framework with a sign-in form, a sign-out button and a visit counter kept in the session,
served by a real server first on its OLD session backend, then on cloudsessions with the
read-through from that backend.

What a process serves is read from $CLOUDSESSIONS_TEST_SITE (JSON, see `site_env`):
    phase     "old" (the previous backend) or "new" (cloudsessions with the read-through)
    old       the previous backend: Django "db" or "cache"; Flask "cookie" or
              "flask-session"; Starlette "cookie"
    store     the cloudsessions store URL (phase "new")
    database  Django: the SQLite file holding the users (and the db engine's sessions)
    redis     redis://HOST:PORT of the test Redis: Django's cache, Flask-Session's Redis
    prefix    the key prefix on that Redis (Django's KEY_PREFIX, SESSION_KEY_PREFIX)

Django's settings are tests/migration_site_settings.py; its URLs are `urlpatterns` here.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from typing import Any

SITE_VARIABLE = "CLOUDSESSIONS_TEST_SITE"
SECRET_KEY = "cloudsessions-migration-site-not-secret"
# The users of every site: name -> password. Django's are rows of its user table, made in
# this order (primary keys 1, 2, ...); Flask's and Starlette's record the name as the id.
USERS = {name: f"{name}-password" for name in ("ada", "bob", "carol", "dave", "eve")}


def site_env(**site: Any) -> dict[str, str]:
    """The environment that serves the site described by `site` (see the module docstring)."""
    return {SITE_VARIABLE: json.dumps(site)}


def site() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(os.environ.get(SITE_VARIABLE) or "{}")
    return raw


def page(user: str | None, visits: int, csrf_token: str = "") -> str:
    """The home page: who is signed in (a sign-out button) or a sign-in form, and how many
    times this session has seen it."""
    token = (
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf_token)}">'
        if csrf_token
        else ""
    )
    if user is not None:
        body = (
            f'<p>Signed in as <b id="user">{html.escape(user)}</b></p>'
            f'<form method="post" action="/logout/">{token}'
            '<button id="logout">Sign out</button></form>'
        )
    else:
        body = (
            '<p id="anonymous">Not signed in</p>'
            f'<form method="post" action="/login/">{token}'
            '<input name="username" id="username"><input name="password" id="password"'
            ' type="password"><button id="login">Sign in</button></form>'
        )
    return (
        "<!doctype html><html><head><title>Site</title></head><body>"
        f'{body}<p>Visits: <b id="visits">{visits}</b></p></body></html>'
    )


# ------------------------------------------------------------------ Django


def django_app() -> Any:
    """The Django site (DJANGO_SETTINGS_MODULE=tests.migration_site_settings)."""
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def make_django_database() -> None:
    """Django's tables and USERS in the configured SQLite file (run once, in a process of
    its own: the test process runs Django with other settings)."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    for name, password in USERS.items():
        User.objects.create_user(name, password=password)


def _django_home(request: Any) -> Any:
    from django.http import HttpResponse
    from django.middleware.csrf import get_token

    visits = int(request.session.get("visits", 0)) + 1
    request.session["visits"] = visits
    user = request.user.get_username() if request.user.is_authenticated else None
    return HttpResponse(page(user, visits, get_token(request)))


def _django_login(request: Any) -> Any:
    from django.contrib.auth import authenticate, login
    from django.http import HttpResponseForbidden, HttpResponseNotAllowed
    from django.shortcuts import redirect

    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponseForbidden("wrong name or password")
    login(request, user)
    return redirect("/")


def _django_logout(request: Any) -> Any:
    from django.contrib.auth import logout
    from django.http import HttpResponseNotAllowed
    from django.shortcuts import redirect

    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    logout(request)
    return redirect("/")


def _urlpatterns() -> list[Any]:
    try:
        from django.urls import path
    except ImportError:  # imported without Django: only Flask's or Starlette's site is served
        return []
    return [
        path("", _django_home),
        path("login/", _django_login),
        path("logout/", _django_logout),
    ]


urlpatterns = _urlpatterns()


# ------------------------------------------------------------------ Flask


def flask_app() -> Any:
    """The Flask site: on Flask's signed cookie or Flask-Session's Redis ("old"), or on
    cloudsessions with CLOUDSESSIONS_MIGRATE_FROM naming that backend ("new")."""
    import flask

    described = site()
    app = flask.Flask(__name__)
    app.secret_key = SECRET_KEY
    old = described["old"]
    if described["phase"] == "old":
        if old == "flask-session":
            import flask_session
            import redis

            app.config.update(
                SESSION_TYPE="redis",
                SESSION_REDIS=redis.Redis.from_url(described["redis"] + "/0"),
                SESSION_KEY_PREFIX=described["prefix"],
            )
            flask_session.Session(app)
    else:
        from cloudsessions.flask import CloudSessions
        from cloudsessions.migration.registry import source_from_url

        app.config.update(
            CLOUDSESSIONS_STORE=described["store"],
            CLOUDSESSIONS_MIGRATE_FROM="flask"
            if old == "cookie"
            else source_from_url(flask_session_url(described["redis"], described["prefix"])),
        )
        CloudSessions(app)

    @app.get("/")
    def home() -> str:
        visits = int(flask.session.get("visits", 0)) + 1
        flask.session["visits"] = visits
        return page(flask.session.get("_user_id"), visits)

    @app.post("/login/")
    def login() -> Any:
        name = flask.request.form.get("username", "")
        if USERS.get(name) != flask.request.form.get("password"):
            flask.abort(403)
        flask.session["_user_id"] = name  # Flask-Login's key
        return flask.redirect("/", 303)

    @app.post("/logout/")
    def logout() -> Any:
        flask.session.clear()
        return flask.redirect("/", 303)

    return app


def flask_session_url(redis: str, prefix: str) -> str:
    """Flask-Session's Redis backend as `cloudsessions migrate --from` names it: its server
    and key prefix, the old records kept (by the read-through and by the bulk copy)."""
    query = urllib.parse.urlencode({"prefix": prefix, "keep_old": "1"})
    return f"flask-session+{redis}/0?{query}"


# ------------------------------------------------------------------ Starlette


def starlette_app() -> Any:
    """The Starlette site: on Starlette's signed cookie ("old"), or on cloudsessions with
    migrate_from="starlette" and the same secret ("new")."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    described = site()
    if described["phase"] == "old":
        from starlette.middleware.sessions import SessionMiddleware as StarletteSessions

        middleware = Middleware(StarletteSessions, secret_key=SECRET_KEY)
    else:
        from cloudsessions.asgi import SessionMiddleware

        middleware = Middleware(
            SessionMiddleware,
            secret_key=SECRET_KEY,
            store=described["store"],
            migrate_from="starlette",
        )

    async def home(request: Request) -> Response:
        visits = int(request.session.get("visits", 0)) + 1
        request.session["visits"] = visits
        return HTMLResponse(page(request.session.get("_user_id"), visits))

    async def login(request: Request) -> Response:
        # The form by hand: Starlette's request.form() needs python-multipart.
        form = urllib.parse.parse_qs((await request.body()).decode())
        name = form.get("username", [""])[0]
        if USERS.get(name) != form.get("password", [""])[0]:
            return PlainTextResponse("wrong name or password", 403)
        request.session["_user_id"] = name
        return RedirectResponse("/", 303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", 303)

    routes = [
        Route("/", home),
        Route("/login/", login, methods=["POST"]),
        Route("/logout/", logout, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[middleware])
