"""The views the benchmarks serve: the same session work on each framework and engine.

/new     a new visitor's first write (two keys)
/read    reads the session, writes nothing
/modify  changes one key
/login   a new id, then the user (as Django's login() / Flask-Login's login_user())
/logout  ends the session
/dump    the session as JSON (to check what an engine kept; not timed or counted)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

GREETING = "Hallo Welt"
USER = "42"


def flask_views(app: Any, regenerate: Callable[[Any], None] | None = None) -> None:
    """Route the views on a Flask `app`; `regenerate(session)` gives the session a new id at
    login, where the session interface has a way to (Flask-Session's regenerate())."""
    import flask

    session = flask.session

    @app.get("/new")
    def new() -> str:
        session["greeting"] = GREETING
        session["cart"] = [1, 2, 3]
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("greeting"))

    @app.get("/modify")
    def modify() -> str:
        session["views"] = session.get("views", 0) + 1
        return "ok"

    @app.get("/login")
    def login() -> str:
        if regenerate is not None:
            regenerate(session)
        session["_user_id"] = USER
        session["_fresh"] = True
        session["_id"] = "5" * 128
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        session.clear()
        return "ok"

    @app.get("/dump")
    def dump() -> str:
        return json.dumps(dict(session), default=str)


def django_urlpatterns() -> list[Any]:
    """The views over Django's session API (login leaves what django.contrib.auth's login()
    leaves: a new id, then the user's id, backend and hash)."""
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    def new(request: HttpRequest) -> HttpResponse:
        request.session["greeting"] = GREETING
        request.session["cart"] = [1, 2, 3]
        return HttpResponse("ok")

    def read(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(request.session.get("greeting")))

    def modify(request: HttpRequest) -> HttpResponse:
        request.session["views"] = request.session.get("views", 0) + 1
        return HttpResponse("ok")

    def login(request: HttpRequest) -> HttpResponse:
        request.session.cycle_key()
        request.session["_auth_user_id"] = USER
        request.session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        request.session["_auth_user_hash"] = "5" * 64
        return HttpResponse("ok")

    def logout(request: HttpRequest) -> HttpResponse:
        request.session.flush()
        return HttpResponse("ok")

    def dump(request: HttpRequest) -> HttpResponse:
        return HttpResponse(json.dumps(dict(request.session.items()), default=str))

    views = {"new": new, "read": read, "modify": modify, "login": login, "logout": logout}
    return [path(name, view) for name, view in {**views, "dump": dump}.items()]


class _URLs:
    urlpatterns: list[Any] = []


def configure_django(urlpatterns: Callable[[], list[Any]], **settings: Any) -> None:
    """Django configured once for a benchmark process: our app, `settings` over the base,
    and `urlpatterns()` (made after setup, as Django's URL helpers need it) as the URLconf."""
    import django
    from django.conf import settings as django_settings

    django_settings.configure(
        SECRET_KEY="benchmark-not-secret",
        INSTALLED_APPS=["cloudsessions.django"],
        ROOT_URLCONF=_URLs,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        **settings,
    )
    django.setup()
    _URLs.urlpatterns = urlpatterns()
