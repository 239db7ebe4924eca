""" "Where you're signed in" for Flask: a blueprint with the page and its two actions.

    from cloudsessions.pages.flask import signed_in_blueprint

    app.register_blueprint(signed_in_blueprint(login_url="/login"), url_prefix="/account/sessions")

GET /account/sessions/ lists the sessions of the signed-in user (CLOUDSESSIONS_USER_ID_KEY,
Flask-Login's "_user_id" by default); POST .../revoke signs one out, POST .../revoke-others
all but this one. The template is cloudsessions/signed_in.html from this package; one of
the same name in the app's templates folder takes precedence. See cloudsessions.pages.

Behind a proxy that terminates TLS, let Flask see the browser's scheme and host (werkzeug's
ProxyFix): the forms' same-origin check compares them with the browser's Origin header.
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from ..flask import FlaskSession
from . import (
    CSRF_FAILED_BODY,
    CSRF_FIELD,
    DONE,
    FORBIDDEN_BODY,
    HANDLE_FIELD,
    HEADERS,
    TEMPLATE,
    TEMPLATES_DIR,
    Page,
    csrf_input,
    done_url,
    login_redirect,
    message,
    request_ok,
    rows,
)


def signed_in_blueprint(
    *,
    login_url: str | None = None,
    back_url: str | None = None,
    name: str = "cloudsessions_signed_in",
) -> Blueprint:
    """The page as a blueprint; register it under the URL prefix of your choice.

    login_url: where an anonymous visitor is sent (with ?next= this page); None answers
    403. back_url: a "Back" link to your app on the page. name: the blueprint's name (its
    endpoints are NAME.page, NAME.revoke, NAME.revoke_others).
    """
    blueprint = Blueprint(name, __name__, template_folder=str(TEMPLATES_DIR))

    @blueprint.get("/")
    def page() -> ResponseReturnValue:
        current = _session()
        sessions = current.signed_in_sessions()
        if not sessions or current.sid is None:
            return _anonymous(login_url)
        shown = Page(
            rows(sessions),
            csrf_input(current.sid),
            url_for(".revoke"),
            url_for(".revoke_others"),
            message(request.args.get(DONE)),
            back_url or "",
        )
        return render_template(TEMPLATE, page=shown), 200, HEADERS

    @blueprint.post("/revoke")
    def revoke() -> ResponseReturnValue:
        current = _session()
        refused = _refused(current, login_url)
        if refused is not None:
            return refused
        revoked = current.revoke(request.form.get(HANDLE_FIELD, ""))
        return redirect(done_url(url_for(".page"), "revoked" if revoked else "gone"), 303)

    @blueprint.post("/revoke-others")
    def revoke_others() -> ResponseReturnValue:
        current = _session()
        refused = _refused(current, login_url)
        if refused is not None:
            return refused
        current.revoke_others()
        return redirect(done_url(url_for(".page"), "others"), 303)

    return blueprint


def _session() -> FlaskSession:
    current = cast(object, session._get_current_object())  # type: ignore[attr-defined]
    if not isinstance(current, FlaskSession):
        raise RuntimeError(
            "the signed-in page needs cloudsessions' Flask sessions: CloudSessions(app)"
        )
    return current


def _anonymous(login_url: str | None) -> ResponseReturnValue:
    if login_url is None:
        return Response(FORBIDDEN_BODY, 403, mimetype="text/plain")
    query = request.query_string.decode("latin-1")
    return redirect(login_redirect(login_url, request.path + (f"?{query}" if query else "")))


def _refused(current: FlaskSession, login_url: str | None) -> ResponseReturnValue | None:
    """The answer to a POST that must change nothing (anonymous, or a failed check)."""
    if current.sid is None:
        return _anonymous(login_url)
    headers = request.headers
    own = request.host_url.rstrip("/")
    sent = request.form.get(CSRF_FIELD)
    if not request_ok(current.sid, sent, headers.get("Origin"), headers.get("Referer"), own):
        return Response(CSRF_FAILED_BODY, 403, mimetype="text/plain")
    return None
