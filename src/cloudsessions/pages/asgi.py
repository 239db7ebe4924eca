""" "Where you're signed in" for Starlette and FastAPI: a router to mount.

    from starlette.routing import Mount
    from cloudsessions.pages.asgi import signed_in_app

    routes = [..., Mount("/account/sessions", app=signed_in_app(login_url="/login"))]
    # FastAPI: app.mount("/account/sessions", signed_in_app(login_url="/login"))

It needs cloudsessions.asgi.SessionMiddleware around it (the user is its `user_id_key`,
"_user_id" by default) and Jinja2. GET .../ lists the user's sessions, POST .../revoke signs
one out, POST .../revoke-others all but this one, through the session's async API. The
template is cloudsessions/signed_in.html from this package; pass your own
Jinja2Templates (`templates=`) to use yours. See cloudsessions.pages.

Behind a proxy that terminates TLS, run uvicorn with --proxy-headers (and
--forwarded-allow-ips): the forms' same-origin check compares the scheme and host the app
sees with the browser's Origin header.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from ..asgi import Session
from . import (
    CSRF_FAILED_BODY,
    CSRF_FIELD,
    DONE,
    FORBIDDEN_BODY,
    HANDLE_FIELD,
    HEADERS,
    REVOKE,
    REVOKE_OTHERS,
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

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates

# The page's forms carry a token and a handle: a body beyond this is not one of them.
MAX_FORM_BYTES = 4096


def signed_in_app(
    *,
    login_url: str | None = None,
    back_url: str | None = None,
    templates: Jinja2Templates | None = None,
) -> Router:
    """The page and its actions as a Starlette Router, to Mount where you like.

    login_url: where an anonymous visitor is sent (with ?next= this page); None answers
    403. back_url: a "Back" link to your app on the page. templates: the Jinja2Templates
    to render TEMPLATE with (default: this package's template folder).
    """
    page = _SignedInPage(login_url, back_url, templates)
    return Router(
        routes=[
            Route("/", page.show, methods=["GET"]),
            Route(f"/{REVOKE}", page.revoke, methods=["POST"]),
            Route(f"/{REVOKE_OTHERS}", page.revoke_others, methods=["POST"]),
        ]
    )


class _SignedInPage:
    def __init__(
        self, login_url: str | None, back_url: str | None, templates: Jinja2Templates | None
    ) -> None:
        self.login_url, self.back_url = login_url, back_url
        if templates is not None:
            self.templates = templates

    @functools.cached_property
    def templates(self) -> Jinja2Templates:
        from starlette.templating import Jinja2Templates  # needs jinja2: only when rendering

        return Jinja2Templates(directory=TEMPLATES_DIR)

    async def show(self, request: Request) -> Response:
        session = _session(request)
        sessions = await session.asigned_in_sessions()
        if not sessions or session.sid is None:
            return self._anonymous(request)
        base = _base(request)
        shown = Page(
            rows(sessions),
            csrf_input(session.sid),
            f"{base}/{REVOKE}",
            f"{base}/{REVOKE_OTHERS}",
            message(request.query_params.get(DONE)),
            self.back_url or "",
        )
        return self.templates.TemplateResponse(request, TEMPLATE, {"page": shown}, headers=HEADERS)

    async def revoke(self, request: Request) -> Response:
        session = _session(request)
        form = await self._checked_form(request, session)
        if isinstance(form, Response):
            return form
        revoked = await session.arevoke(form.get(HANDLE_FIELD, ""))
        return _back(request, "revoked" if revoked else "gone")

    async def revoke_others(self, request: Request) -> Response:
        session = _session(request)
        form = await self._checked_form(request, session)
        if isinstance(form, Response):
            return form
        await session.arevoke_others()
        return _back(request, "others")

    async def _checked_form(self, request: Request, session: Session) -> dict[str, str] | Response:
        """The posted form, or the answer to a POST that must change nothing."""
        if session.sid is None:
            return self._anonymous(request)
        form = await _form(request)
        url, headers = request.url, request.headers
        own = f"{url.scheme}://{url.netloc}"
        origin, referer = headers.get("origin"), headers.get("referer")
        if form is None or not request_ok(session.sid, form.get(CSRF_FIELD), origin, referer, own):
            return PlainTextResponse(CSRF_FAILED_BODY, 403)
        return form

    def _anonymous(self, request: Request) -> Response:
        if self.login_url is None:
            return PlainTextResponse(FORBIDDEN_BODY, 403)
        query = request.url.query
        here = request.url.path + (f"?{query}" if query else "")
        return RedirectResponse(login_redirect(self.login_url, here), 302)


def _session(request: Request) -> Session:
    session = request.session
    if not isinstance(session, Session):
        raise RuntimeError(
            "the signed-in page needs cloudsessions.asgi.SessionMiddleware around it"
        )
    return session


def _base(request: Request) -> str:
    # Inside a Mount, root_path is the mount's path (with the server's own root path).
    return str(request.scope.get("root_path", "")).rstrip("/")


def _back(request: Request, done: str) -> Response:
    return RedirectResponse(done_url(f"{_base(request)}/", done), 303)


async def _form(request: Request) -> dict[str, str] | None:
    """The url-encoded form, or None if it is not one of the page's (too large, malformed).

    Parsed here: Starlette's request.form() needs python-multipart, for two short fields.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=8, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}
