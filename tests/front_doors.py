"""The front doors (Django, Flask, ASGI on asyncio and on trio) as one surface to test.

Every door serves the same views (`Views`) at the same paths with the same JSON answers,
through its own framework's session API, and a `Door` is one browser on such an app, driven
through the framework's in-process test client; tests/test_front_doors.py then states each
promise once, for every door on every store. Where the doors differ, it is Django's own
SessionMiddleware deciding (the Door attributes say where); what the store sees is decided
by the one lifecycle under all of them, cloudsessions.session.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import anyio
import anyio.to_thread
import flask
import httpx2
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path as django_path
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from cloudsessions import SessionInfo, Store
from cloudsessions.asgi import SessionMiddleware
from cloudsessions.django.engine import SessionStore
from cloudsessions.flask import CloudSessions

LIFETIME = 3600  # seconds: the record lifetime of the Flask and ASGI apps
DOORS = ["django", "flask", "asgi", "asgi-trio"]
PATHS = ["read", "write", "append", "remove", "login", "signin", "signout", "logout"]
PATHS += ["count", "login-count", "write-set", "race", "race-signin"]
PATHS += ["signed-in", "revoke", "revoke-others"]
OK = {"ok": True}
DEFAULT: Any = object()  # an option left at the framework's default

# Concurrent requests meet here after loading their session and before incrementing (see
# Door.concurrently): every one of them has read the same count before any adds to it.
_meeting: threading.Barrier | None = None


@contextlib.contextmanager
def _meeting_of(n: int) -> Iterator[None]:
    global _meeting
    _meeting = threading.Barrier(n, timeout=30)
    try:
        yield
    finally:
        _meeting = None


class Views:
    """The views every door serves, over Django's session API; the subclasses map Flask's
    and Starlette's onto it. Each takes the query arguments and returns the JSON answer."""

    user_key = "_auth_user_id"  # django.contrib.auth's
    # The names of the session's id, of its rotation and of ending it.
    sid_attribute, rotate_method, end_method = "session_key", "cycle_key", "flush"

    def __init__(self, session: Any, store: Any) -> None:
        self.session, self.store = session, store

    @property
    def sid(self) -> str | None:
        return getattr(self.session, self.sid_attribute)  # type: ignore[no-any-return]

    def rotate(self) -> None:
        getattr(self.session, self.rotate_method)()

    def end(self) -> None:
        getattr(self.session, self.end_method)()

    def read(self, args: Mapping[str, str]) -> Any:
        return {"data": dict(self.session.items()), "sid": self.sid}

    def write(self, args: Mapping[str, str]) -> Any:  # ?key=<json>
        self.session.update({key: json.loads(value) for key, value in args.items()})
        return OK

    def append(self, args: Mapping[str, str]) -> Any:  # a nested change: nothing marked
        self.session["items"].append(args["item"])
        return OK

    def remove(self, args: Mapping[str, str]) -> Any:
        for key in args:
            self.session.pop(key, None)
        return OK

    def login(self, args: Mapping[str, str]) -> Any:  # the explicit rotation, then the user
        self.rotate()
        self.session[self.user_key] = args["user"]
        return {"sid": self.sid}  # the id the view sees after the rotation

    def signin(self, args: Mapping[str, str]) -> Any:  # as Flask-Login's login_user(): no more
        self.session[self.user_key] = args["user"]
        return OK

    def signout(self, args: Mapping[str, str]) -> Any:  # the user id goes, nothing else
        self.session.pop(self.user_key, None)
        return OK

    def logout(self, args: Mapping[str, str]) -> Any:
        self.end()
        return OK

    def write_set(self, args: Mapping[str, str]) -> Any:  # no front door can store a set
        self.session.update({"a": 2, "tags": {1, 2}})
        return OK

    def race(self, args: Mapping[str, str]) -> Any:  # logged out by a concurrent request
        self.session["a"] = 2
        self.store.delete(self.sid)
        return OK

    def race_signin(self, args: Mapping[str, str]) -> Any:  # revoked, then signed in
        self.session.get("cart")  # read the session now: Django reads it when first used
        self.store.delete(self.sid)
        self.session[self.user_key] = args["user"]
        return OK

    def count(self, args: Mapping[str, str]) -> Any:
        self.session.get("views")  # read the session now: Django reads it when first used
        if _meeting is not None:
            _meeting.wait()
        return {"views": self.session.increment("views")}

    def login_count(self, args: Mapping[str, str]) -> Any:  # the increment writes at once
        self.rotate()
        views = self.session.increment("views")
        self.session[self.user_key] = args["user"]
        return {"sid": self.sid, "views": views}

    def signed_in(self, args: Mapping[str, str]) -> Any:
        return listing(self.session.signed_in_sessions())

    def revoke(self, args: Mapping[str, str]) -> Any:
        return {"revoked": self.session.revoke(args["handle"])}

    def revoke_others(self, args: Mapping[str, str]) -> Any:
        return {"revoked": self.session.revoke_others()}


def listing(sessions: list[SessionInfo]) -> list[dict[str, Any]]:
    """What a "where you're signed in" page shows of each session."""
    return [
        {
            "handle": s.handle,
            "current": s.current,
            "device": s.device,
            "ip": s.ip,
            "created_at": s.created_at,
            "last_seen": s.last_seen,
        }
        for s in sessions
    ]


class FlaskViews(Views):
    user_key = "_user_id"  # Flask-Login's
    sid_attribute, rotate_method, end_method = "sid", "regenerate", "clear"


class StarletteViews(FlaskViews):
    """Flask's names, and the store's async API where a view does I/O of its own."""

    async def race(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        self.session["a"] = 2
        await self.store.adelete(self.sid)
        return OK

    async def race_signin(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        await self.store.adelete(self.sid)
        self.session[self.user_key] = args["user"]
        return OK

    async def count(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        if _meeting is not None:
            await anyio.to_thread.run_sync(_meeting.wait)  # the event loop runs on meanwhile
        return {"views": await self.session.aincrement("views")}

    async def login_count(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        self.rotate()
        views = await self.session.aincrement("views")
        self.session[self.user_key] = args["user"]
        return {"sid": self.sid, "views": views}

    async def signed_in(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        return listing(await self.session.asigned_in_sessions())

    async def revoke(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        return {"revoked": await self.session.arevoke(args["handle"])}

    async def revoke_others(self, args: Mapping[str, str]) -> Any:  # type: ignore[override]
        return {"revoked": await self.session.arevoke_others()}


def _django_view(name: str) -> Callable[[HttpRequest], JsonResponse]:
    def view(request: HttpRequest) -> JsonResponse:
        views = Views(request.session, SessionStore.get_store())
        return JsonResponse(getattr(views, name)(request.GET), safe=False)

    return view


urlpatterns = [django_path(p, _django_view(p.replace("-", "_"))) for p in PATHS]  # ROOT_URLCONF


def flask_app(store: str | Store, **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(
        CLOUDSESSIONS_STORE=store, PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME)
    )
    app.config.update(config)
    CloudSessions(app)

    def view(name: str) -> Callable[[], Any]:
        def run() -> Any:
            views = FlaskViews(flask.session, CloudSessions.get_store())
            return getattr(views, name)(flask.request.args)

        return run

    for p in PATHS:
        app.add_url_rule("/" + p, p, view(p.replace("-", "_")))
    return app


def _asgi_view(name: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> JSONResponse:
        views = StarletteViews(request.session, request.app.state.store)
        answer = getattr(views, name)(request.query_params)
        return JSONResponse(await answer if inspect.isawaitable(answer) else answer)

    return endpoint


async def asgi_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    websocket.session["b"] = 2  # the session is read-only here: never written
    try:
        await websocket.session.aincrement("views")  # nor by an increment
    except RuntimeError as refused:
        websocket.session["refused"] = str(refused)
    await websocket.send_json(dict(websocket.session))
    await websocket.close()


def asgi_app(store: str | Store, **options: Any) -> Starlette:
    routes = [Route("/" + p, _asgi_view(p.replace("-", "_"))) for p in PATHS]
    app = Starlette(
        routes=[*routes, WebSocketRoute("/ws", asgi_socket)],
        middleware=[Middleware(SessionMiddleware, store=store, **{"max_age": LIFETIME, **options})],
    )
    app.state.store = store
    return app


# ------------------------------------------------------------------ one browser per door


@dataclass
class Answer:
    status: int
    json: Any  # None if the body is not JSON
    cookies: list[str]  # the Set-Cookie headers
    headers: dict[str, str]  # lower-case names


class Door:
    """One browser on one app behind one front door."""

    name: str
    user_key = "_user_id"  # the session key recorded as the user id (Flask-Login's)
    cookie_name = "session"
    deleted_value = "session=;"  # how the framework empties the cookie it expires
    # Where Django's own SessionMiddleware decides otherwise:
    loads_lazily = False  # Django reads the session when the view first uses it
    keeps_stale_cookie = True  # Django expires the cookie of a session that turned out empty
    saves_unchanged = False  # Django saves a session marked modified (a write of its expiry)
    interrupted_status = 200  # Django answers a session ended mid-request with 400
    # The writes of a login that rotates the id: the new record and the old id's retirement
    # (Django's cycle_key() makes both before the view sets the user, then the save writes it).
    login_writes = 2
    # Where the test client says the request comes from, as the session metadata records it.
    client_ip: str | None = "127.0.0.1"

    store: Store
    # The User-Agent header this browser sends (None: the test client's own, if any).
    user_agent: str | None = None

    def headers(self) -> dict[str, str]:
        return {"User-Agent": self.user_agent} if self.user_agent else {}

    # Each door's own: its test client's request, cookie jar, and a second browser.
    def get(self, path: str, **params: str) -> Answer: ...
    @property
    def sid(self) -> str | None: ...
    def plant(self, value: str, name: str | None = None) -> None: ...
    def another(self) -> Door: ...

    def write(self, **values: Any) -> Answer:
        return self.get("/write", **{k: json.dumps(v) for k, v in values.items()})

    def begin(self, **values: Any) -> str:
        """Write values and return the id of the session they are in."""
        self.write(**values)
        assert self.sid is not None
        return self.sid

    def reopen(self, **options: Any) -> contextlib.AbstractContextManager[Door]:
        """A browser on a new app of this door on the same store, with other options."""
        return open_door(self.name, self.store, **options)

    def deletes_cookie(self, header: str) -> bool:
        """The header expires the session cookie, in the framework's own words."""
        expired = "expires=thu, 01 jan 1970" in header.lower()
        return header.startswith(self.deleted_value) and expired

    def concurrently(self, path: str, n: int) -> list[Answer]:
        """n requests at once with this browser's cookie, each from a thread of its own."""
        tabs = [self.another() for _ in range(n)]
        for tab in tabs:
            tab.plant(self.sid or "")
        answers: list[Answer] = []
        workers = [threading.Thread(target=lambda t=t: answers.append(t.get(path))) for t in tabs]
        with _meeting_of(n):
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        return answers


class DjangoDoor(Door):
    name = "django"
    user_key = "_auth_user_id"  # django.contrib.auth's
    cookie_name = "sessionid"
    deleted_value = 'sessionid="";'
    loads_lazily = True
    keeps_stale_cookie = False
    saves_unchanged = True
    interrupted_status = 400  # SessionInterrupted
    login_writes = 3

    def __init__(self, store: Store) -> None:
        self.store, self.client = store, Client()

    def get(self, path: str, **params: str) -> Answer:
        response = self.client.get(path, params, headers=self.headers())
        is_json = response.headers.get("Content-Type") == "application/json"
        return Answer(
            response.status_code,
            response.json() if is_json else None,
            [morsel.OutputString() for morsel in response.cookies.values()],
            {k.lower(): v for k, v in response.headers.items()},
        )

    @property
    def sid(self) -> str | None:
        morsel = self.client.cookies.get(self.cookie_name)
        return (morsel.value or None) if morsel is not None else None

    def plant(self, value: str, name: str | None = None) -> None:
        self.client.cookies[name or self.cookie_name] = value

    def another(self) -> Door:
        return DjangoDoor(self.store)


class FlaskDoor(Door):
    name = "flask"

    def __init__(self, store: Store, app: flask.Flask) -> None:
        self.store, self.app, self.client = store, app, app.test_client()

    def get(self, path: str, **params: str) -> Answer:
        response = self.client.get(path, query_string=params, headers=self.headers())
        return Answer(
            response.status_code,
            response.get_json(silent=True),
            response.headers.getlist("Set-Cookie"),
            {k.lower(): v for k, v in response.headers.items() if k != "Set-Cookie"},
        )

    @property
    def sid(self) -> str | None:
        cookie = self.client.get_cookie(self.cookie_name)
        return None if cookie is None else cookie.value

    def plant(self, value: str, name: str | None = None) -> None:
        self.client.set_cookie(name or self.cookie_name, value)

    def another(self) -> Door:
        return FlaskDoor(self.store, self.app)


class AsgiDoor(Door):
    deleted_value = "session=null;"  # Starlette's
    client_ip = None  # Starlette's TestClient names its peer "testclient": not an address

    def __init__(self, store: Store, app: Starlette, backend: str, stack: contextlib.ExitStack):
        self.name = "asgi" if backend == "asyncio" else f"asgi-{backend}"
        self.store, self.app, self.backend, self.stack = store, app, backend, stack
        # One event loop for all of this browser's requests, as a server has.
        self.client = stack.enter_context(TestClient(app, backend=backend))

    def get(self, path: str, **params: str) -> Answer:
        response = self.client.get(path, params=params, headers=self.headers())
        is_json = response.headers.get("content-type") == "application/json"
        return Answer(
            response.status_code,
            response.json() if is_json else None,
            response.headers.get_list("set-cookie"),
            {k: v for k, v in response.headers.items() if k != "set-cookie"},
        )

    @property
    def sid(self) -> str | None:
        return self.client.cookies.get(self.cookie_name)

    def plant(self, value: str, name: str | None = None) -> None:
        self.client.cookies.set(name or self.cookie_name, value, domain="testserver.local")

    def another(self) -> Door:
        return AsgiDoor(self.store, self.app, self.backend, self.stack)

    def concurrently(self, path: str, n: int) -> list[Answer]:
        """n requests at once with this browser's cookie, as tasks of one event loop."""
        transport = httpx2.ASGITransport(app=self.app)
        cookies = {self.cookie_name: self.sid or ""}
        answers: list[Answer] = []

        async def visit() -> None:
            async with httpx2.AsyncClient(
                transport=transport, base_url="http://test", cookies=cookies
            ) as tab:
                response = await tab.get(path)
            answers.append(Answer(response.status_code, response.json(), [], {}))

        async def main() -> None:
            async with anyio.create_task_group() as tasks:
                for _ in range(n):
                    tasks.start_soon(visit)

        with _meeting_of(n):
            anyio.run(main, backend=self.backend)
        return answers


@contextlib.contextmanager
def open_door(
    name: str,
    store: Store,
    *,
    rotate_on_login: bool = True,
    outages: Literal["raise", "503"] | None = None,
    refresh_after: float | None = DEFAULT,
    metadata: Any = DEFAULT,
    migrate_from: Any = DEFAULT,
    **framework: Any,
) -> Iterator[Door]:
    """A browser on a fresh app of the door `name` on `store`.

    The same options on every door: rotate_on_login (off: a change of the user id does not
    move the session to a new id); outages "raise" (the StoreUnavailable reaches the test)
    or "503" (what users get), None for the door's default; refresh_after (Flask and ASGI;
    None = never, which Flask spells SESSION_REFRESH_EACH_REQUEST = False); metadata (each
    door's METADATA setting); migrate_from (each door's MIGRATE_FROM). `framework`: the
    framework's own settings (Django settings, Flask config, ASGI parameters).
    """
    with contextlib.ExitStack() as stack:
        if name == "django":
            assert refresh_after is DEFAULT, "Django has no refresh policy"
            # cloudsessions' middleware is Django's plus the client (for session metadata)
            # and the 503 on outages; "raise" lets the StoreUnavailable reach the test.
            ours = outages != "raise"
            middleware = "cloudsessions.django" if ours else "django.contrib.sessions"
            settings = {"STORE": store, "ROTATE_ON_LOGIN": rotate_on_login}
            if metadata is not DEFAULT:
                settings["METADATA"] = metadata
            if migrate_from is not DEFAULT:
                settings["MIGRATE_FROM"] = migrate_from
            framework = {"MIDDLEWARE": [f"{middleware}.middleware.SessionMiddleware"], **framework}
            stack.enter_context(override_settings(CLOUDSESSIONS=settings, **framework))
            yield DjangoDoor(store)
        elif name == "flask":
            config = {"TESTING": outages != "503", "CLOUDSESSIONS_ROTATE_ON_LOGIN": rotate_on_login}
            if metadata is not DEFAULT:
                config["CLOUDSESSIONS_METADATA"] = metadata
            if migrate_from is not DEFAULT:
                config["CLOUDSESSIONS_MIGRATE_FROM"] = migrate_from
            if refresh_after is None:
                config["SESSION_REFRESH_EACH_REQUEST"] = False
            elif refresh_after is not DEFAULT:
                config["CLOUDSESSIONS_REFRESH_AFTER"] = refresh_after
            yield FlaskDoor(store, flask_app(store, **config, **framework))
        else:
            options = {"rotate_on_login": rotate_on_login, "outage_response": outages != "raise"}
            if refresh_after is not DEFAULT:
                options["refresh_after"] = refresh_after
            if metadata is not DEFAULT:
                options["metadata"] = metadata
            if migrate_from is not DEFAULT:
                options["migrate_from"] = migrate_from
            app = asgi_app(store, **options, **framework)
            yield AsgiDoor(store, app, name.partition("-")[2] or "asyncio", stack)


def stored(store: Store, key: str | None) -> dict[str, Any] | None:
    """The data of the live record of `key`, or None."""
    record = store.load(key or "")
    return None if record is None else record.data


def sessions_of(store: Store, user: str) -> list[str]:
    """The record ids of a user's live sessions."""
    return [info.record_id for info in store.for_user(user)]


def age(store: Store, key: str, remaining: float) -> None:
    """Make a record look written LIFETIME - remaining seconds ago (no sleeping)."""
    record = store.load(key)
    assert record is not None
    record.expires_at = time.time() + remaining
    store.save(key, record, [])
