"""The demo as a Starlette app (what FastAPI builds on), served by uvicorn."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from ..asgi import SessionMiddleware
from ..pages.asgi import signed_in_app
from . import page

CSRF_KEY = "csrf"


async def home(request: Request) -> Response:
    session = request.session
    if "greeting" not in session:
        session["greeting"] = page.new_greeting()
    if CSRF_KEY not in session:
        session[CSRF_KEY] = secrets.token_urlsafe(16)
    # One atomic write in the store: concurrent page views never lose a count.
    views = await session.aincrement("views")  # type: ignore[attr-defined]
    fingerprint = (session.record_id or "-")[:12]  # type: ignore[attr-defined]
    visit = page.Visit(
        views, session["greeting"], session.get(page.USER_KEY), fingerprint, session[CSRF_KEY]
    )
    return HTMLResponse(page.render("asgi", request.app.state.store, visit))


async def login(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return PlainTextResponse("CSRF check failed", status_code=403)
    # Setting the user id is the whole sign-in: cloudsessions moves the session to a new id
    # when its user changes (the old record is deleted), which defeats session fixation.
    request.session[page.USER_KEY] = form.get("name", "")[:40] or "anonymous"
    request.session[CSRF_KEY] = secrets.token_urlsafe(16)
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    if await _form(request) is None:
        return PlainTextResponse("CSRF check failed", status_code=403)
    request.session.clear()  # deletes the record and the cookie
    return RedirectResponse("/", status_code=303)


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form if its CSRF token matches the session's, else None.

    Parsed here rather than with request.form(), which needs python-multipart.
    """
    fields = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    sent, expected = fields.get("csrfmiddlewaretoken", ""), str(request.session.get(CSRF_KEY, ""))
    return fields if sent and hmac.compare_digest(sent, expected) else None


def create_app(store_url: str, described: str) -> Starlette:
    """The demo on `store_url`, whose description (`Store.describe()`) the page shows."""
    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            # "Where you're signed in": the router cloudsessions ships, with a link back here.
            Mount(
                page.SIGNED_IN_PAGE.rstrip("/"),
                app=signed_in_app(login_url=page.LOGIN_URL, back_url="/"),
            ),
        ],
        middleware=[Middleware(SessionMiddleware, store=store_url, user_id_key=page.USER_KEY)],
    )
    app.state.store = described
    return app


def serve(store_url: str, described: str, host: str, port: int) -> int:
    import uvicorn

    uvicorn.run(create_app(store_url, described), host=host, port=port)
    return 0
