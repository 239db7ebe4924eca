"""The demo as a Flask app, served by werkzeug's threaded WSGI server."""

from __future__ import annotations

import hmac
import secrets
from typing import cast

from flask import Flask, abort, redirect, request, session
from werkzeug.wrappers import Response

from ..flask import CloudSessions, FlaskSession
from ..pages.flask import signed_in_blueprint
from . import page

CSRF_KEY = "csrf"


def create_app(store_url: str, described: str) -> Flask:
    """The demo on `store_url`, whose description (`Store.describe()`) the page shows."""
    app = Flask("cloudsessions.demo")
    app.config.update(CLOUDSESSIONS_STORE=store_url, CLOUDSESSIONS_USER_ID_KEY=page.USER_KEY)
    CloudSessions(app)
    # "Where you're signed in": the blueprint cloudsessions ships, with a link back here.
    pages = signed_in_blueprint(login_url=page.LOGIN_URL, back_url="/")
    app.register_blueprint(pages, url_prefix=page.SIGNED_IN_PAGE.rstrip("/"))

    @app.get("/")
    def home() -> str:
        if "greeting" not in session:
            session["greeting"] = page.new_greeting()
        if CSRF_KEY not in session:
            session[CSRF_KEY] = secrets.token_urlsafe(16)
        # One atomic write in the store: concurrent page views never lose a count.
        views = _session().increment("views")
        fingerprint = (_session().record_id or "-")[:12]
        visit = page.Visit(
            views, session["greeting"], session.get(page.USER_KEY), fingerprint, session[CSRF_KEY]
        )
        return page.render("flask", described, visit)

    @app.post("/login")
    def login() -> Response:
        _check_csrf()
        # Setting the user id is the whole sign-in, as with Flask-Login: cloudsessions moves
        # the session to a new id when its user changes (the old record is deleted), which
        # defeats session fixation whatever the view calls.
        session[page.USER_KEY] = request.form.get("name", "")[:40] or "anonymous"
        session[CSRF_KEY] = secrets.token_urlsafe(16)
        return redirect("/")

    @app.post("/logout")
    def logout() -> Response:
        _check_csrf()
        session.clear()  # deletes the record and the cookie
        return redirect("/")

    return app


def _session() -> FlaskSession:
    # Flask types its `session` proxy as SessionMixin; under CloudSessions it is this.
    return cast(FlaskSession, session)


def _check_csrf() -> None:
    # The token lives in the session: a cross-site form cannot know it.
    sent = request.form.get("csrfmiddlewaretoken", "")
    if not hmac.compare_digest(sent, str(session.get(CSRF_KEY, ""))) or not sent:
        abort(403)


def serve(store_url: str, described: str, host: str, port: int) -> int:
    from werkzeug.serving import run_simple

    run_simple(host, port, create_app(store_url, described), threaded=True)
    return 0
