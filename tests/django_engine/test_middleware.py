"""cloudsessions.django.middleware.SessionMiddleware: Django's, on sync and async requests.

1. Django's own SessionMiddlewareTests (from the sdist of the installed Django), with their
   SessionMiddleware replaced by ours, on Django's database engine (their own setting) and
   on the cloudsessions engine on every store; each once through the sync path and once
   through the async one.
2. The same request through Django's own middleware (sync: the reference), ours sync and
   ours async, for every change a view makes to its session and every cookie a browser
   sends: the same status, cookie, Vary header, error and stored session.
3. On an async request no session call leaves the event loop's thread (the store's commands
   are seen where its client sends them); under Django's own middleware the save does.
4. The 503 of a frozen store on async requests: one attempt, no cookie, recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sessions_tests.tests as upstream
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.test import AsyncClient, AsyncRequestFactory, RequestFactory, override_settings
from django.test.utils import setup_databases, teardown_databases
from django.urls import path
from pymongo import monitoring

from cloudsessions import Store, new_session_id, open_store
from cloudsessions.django.engine import SessionStore
from cloudsessions.django.middleware import SessionMiddleware
from cloudsessions.registry import close_shared_stores
from cloudsessions.stores.mongodb.store import NATIVE_ASYNC_SAFE
from tests import stores
from tests.backends import redis as redis_backend
from tests.services._process import free_port
from tests.services.secantus import dedicated_secantus
from tests.test_outages import ONE_ATTEMPT, frozen, outage_store

OURS = "cloudsessions.django.middleware.SessionMiddleware"
DJANGOS = "django.contrib.sessions.middleware.SessionMiddleware"
NAME = "sessionid"  # settings.SESSION_COOKIE_NAME, Django's default


@pytest.fixture(scope="module", autouse=True)
def database() -> Iterator[None]:
    """Django's test database: SessionMiddlewareTests is a TestCase, two of its tests use
    Django's database engine, and the first class of part 1 runs on it."""
    old = setup_databases(verbosity=0, interactive=False)
    yield
    teardown_databases(old, verbosity=0)
    close_shared_stores()


# ---------------------------------------------------- 1. Django's SessionMiddlewareTests


class ThroughAsync:
    """Our middleware in async mode, driven by Django's synchronous tests.

    Django's tests build ``SessionMiddleware(view)`` and call it, or its process_response;
    this runs each call through the async path: the view (sync in Django's tests) through
    sync_to_async, as Django adapts a sync view on an async request, and the rest on an
    event loop. The view and every thread-sensitive call run in the test's thread, so
    Django's database engine keeps the test's transaction.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.middleware = SessionMiddleware(sync_to_async(get_response))
        assert self.middleware.async_mode

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        async def request_through_middleware() -> HttpResponseBase:
            response = self.middleware(request)
            assert isinstance(response, Awaitable), "an async request runs async"
            return await response

        return async_to_sync(request_through_middleware)()

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponseBase:
        return async_to_sync(self.middleware.aprocess_response)(request, response)


class _Upstream(upstream.SessionMiddlewareTests):
    """Django's tests with our middleware in place of Django's; subclasses choose the engine
    (store_name "" = Django's database engine) and the path (sync or async)."""

    store_name = ""
    middleware: Callable[..., Any] = SessionMiddleware

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        if cls.store_name:
            folder = Path(cls.enterClassContext(tempfile.TemporaryDirectory()))
            store = {"STORE": stores.store_url(cls.store_name, folder)}
            cls.enterClassContext(
                override_settings(SESSION_ENGINE="cloudsessions.django", CLOUDSESSIONS=store)
            )
        else:
            engine = "django.contrib.sessions.backends.db"
            cls.enterClassContext(override_settings(SESSION_ENGINE=engine))

    def setUp(self) -> None:
        super().setUp()
        # Django's test module names the middleware it tests once, at the top.
        self.enterContext(mock.patch.object(upstream, "SessionMiddleware", self.middleware))

    def test_empty_session_saved(self) -> None:
        if self.store_name:
            self.skipTest(
                "reads the session from Django's database table; the emptied session is"
                " checked in the store by test_the_same_answer_as_djangos_middleware"
            )
        super().test_empty_session_saved()


for _store in ["", *stores.STORE_NAMES]:
    for _mode, _middleware in [("Sync", SessionMiddleware), ("Async", ThroughAsync)]:
        _engine = _store.title().replace("_", "") if _store else "DjangosDatabaseEngine"
        _name = f"TestDjangoMiddlewareTests{_mode}On{_engine}"
        _cls = type(_name, (_Upstream,), {"store_name": _store, "middleware": _middleware})
        globals()[_name] = _cls
del _Upstream, _cls, _engine


# ----------------------------------------------- 2. the same answers as Django's middleware

Act = Callable[[SessionBase], None]
AsyncAct = Callable[[SessionBase], Awaitable[None]]


@dataclass(frozen=True)
class Change:
    """What a view does to its session: `act` in a sync view, `aact` in an async one (the
    session's async API); answered with `status`, under `settings`."""

    act: Act
    aact: AsyncAct
    status: int = 200
    settings: Mapping[str, Any] = field(default_factory=dict)
    # What Django's own middleware answers a browser with a live session (its cookie)
    # with: "kept" (no cookie), "same id", "new id", "deleted" or the error raised.
    live: str = "kept"


async def _nothing(s: SessionBase) -> None:
    pass


def _write(s: SessionBase) -> None:
    s["b"] = 2


async def _awrite(s: SessionBase) -> None:
    await s.aset("b", 2)


def _expiry(seconds: int) -> tuple[Act, AsyncAct]:
    def act(s: SessionBase) -> None:
        s.set_expiry(seconds)
        _write(s)

    async def aact(s: SessionBase) -> None:
        await s.aset_expiry(seconds)
        await _awrite(s)

    return act, aact


def _cycle(s: SessionBase) -> None:
    s.cycle_key()
    _write(s)


async def _acycle(s: SessionBase) -> None:
    await s.acycle_key()
    await _awrite(s)


def _mark(s: SessionBase) -> None:
    s.modified = True  # without loading it: the middleware's expiry lookup loads it


async def _amark(s: SessionBase) -> None:
    s.modified = True


def _ended_elsewhere(s: SessionBase) -> None:
    # Loaded, then deleted by another request (a logout), then changed: the save must not
    # bring it back.
    s.get("a")
    if s.session_key:
        SessionStore(s.session_key).delete()
    _write(s)


async def _aended_elsewhere(s: SessionBase) -> None:
    await s.aget("a")
    if s.session_key:
        await SessionStore(s.session_key).adelete()
    await _awrite(s)


async def _aread(s: SessionBase) -> None:
    await s.aget("a")


async def _apop(s: SessionBase) -> None:
    await s.apop("a", None)


async def _aflush(s: SessionBase) -> None:
    await s.aflush()


EVERY_REQUEST = {"SESSION_SAVE_EVERY_REQUEST": True}
CHANGES = {
    "untouched": Change(lambda s: None, _nothing),
    "read": Change(lambda s: s.get("a") and None, _aread),
    "write": Change(_write, _awrite, live="same id"),
    "emptied": Change(lambda s: s.pop("a", None) and None, _apop, live="same id"),
    "flushed": Change(lambda s: s.flush(), _aflush, live="deleted"),
    "cycled": Change(_cycle, _acycle, live="new id"),
    "marked modified": Change(_mark, _amark, live="same id"),
    "expiry at browser close": Change(*_expiry(0), live="same id"),
    "expiry in 300 s": Change(*_expiry(300), live="same id"),
    "write on a 500": Change(_write, _awrite, status=500),
    "write on a 503": Change(_write, _awrite, status=503),
    "save every request": Change(lambda s: None, _nothing, settings=EVERY_REQUEST, live="same id"),
    "read, save every request": Change(
        lambda s: s.get("a") and None, _aread, settings=EVERY_REQUEST, live="same id"
    ),
    "ended elsewhere": Change(_ended_elsewhere, _aended_elsewhere, live="SessionInterrupted"),
}
COOKIES = ["none", "live", "unknown", "malformed"]


Cookie = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Answer:
    """What a browser and the store see of one request, without ids and clock times."""

    error: str | None = None
    status: int | None = None
    vary: str | None = None
    cookie: Cookie | None = None
    stored_under_sent_id: dict[str, Any] | None = None
    stored_under_new_id: dict[str, Any] | None = None

    @property
    def summary(self) -> str:
        if self.error:
            return self.error.partition(":")[0]
        return "kept" if self.cookie is None else self.cookie[0]


def _cookie(response: HttpResponseBase, sent: str | None) -> Cookie | None:
    """Which id the cookie sets (or that it deletes it) and its attributes."""
    morsel = response.cookies.get(NAME)
    if morsel is None:
        return None
    which = {"": "deleted", sent: "same id"}.get(morsel.value, "new id")
    attributes = {k: v for k, v in morsel.items() if v not in ("", None)}
    if which != "deleted" and "expires" in attributes:
        # max-age from now: a clock time that differs by the second between runs.
        expires = email.utils.parsedate_to_datetime(attributes.pop("expires")).timestamp()
        assert abs(expires - (time.time() + int(attributes["max-age"]))) < 10
        attributes["expires"] = "now + max-age"
    return which, tuple(sorted((k, str(v)) for k, v in attributes.items()))


async def _stored(key: str | None) -> dict[str, Any] | None:
    """The stored session of `key`, None if there is none (an emptied session is {})."""
    if not key or not await SessionStore().aexists(key):
        return None
    return await SessionStore(key).aload()


async def _answer(send: Send, change: Change, sent: str | None) -> Answer:
    request = AsyncRequestFactory().get("/") if send is _ours_async else RequestFactory().get("/")
    if sent is not None:
        request.COOKIES[NAME] = sent
    try:
        response = await send(request, change)
    except SessionInterrupted as exc:
        answer = Answer(error=f"SessionInterrupted: {exc}")
    else:
        vary = response.headers.get("Vary")
        answer = Answer(status=response.status_code, vary=vary, cookie=_cookie(response, sent))
    new_id = answer.cookie is not None and answer.cookie[0] == "new id"
    return dataclasses.replace(
        answer,
        stored_under_sent_id=await _stored(sent),
        stored_under_new_id=await _stored(request.session.session_key) if new_id else None,
    )


Send = Callable[[HttpRequest, Change], Awaitable[HttpResponseBase]]


async def _djangos_sync(request: HttpRequest, change: Change) -> HttpResponseBase:
    def view(request: HttpRequest) -> HttpResponse:
        change.act(request.session)
        return HttpResponse(status=change.status)

    return await sync_to_async(DjangoSessionMiddleware(view))(request)  # type: ignore[no-any-return]


async def _ours_sync(request: HttpRequest, change: Change) -> HttpResponseBase:
    def view(request: HttpRequest) -> HttpResponse:
        change.act(request.session)
        return HttpResponse(status=change.status)

    middleware = SessionMiddleware(view)
    assert not middleware.async_mode
    return await sync_to_async(middleware)(request)  # type: ignore[no-any-return]


async def _ours_async(request: HttpRequest, change: Change) -> HttpResponseBase:
    async def view(request: HttpRequest) -> HttpResponse:
        await change.aact(request.session)
        return HttpResponse(status=change.status)

    middleware = SessionMiddleware(view)
    assert middleware.async_mode
    response = middleware(request)
    assert isinstance(response, Awaitable)
    return await response


async def _sent_cookie(kind: str) -> str | None:
    if kind == "none":
        return None
    if kind == "live":
        session = SessionStore()
        await session.aset("a", 1)
        await session.asave()
        return session.session_key
    if kind == "unknown":
        return new_session_id()  # well formed, never stored
    return "not-a-session-id"


@pytest.fixture(scope="module", params=stores.STORE_NAMES)
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return stores.store_url(str(request.param), tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("change", list(CHANGES))
async def test_the_same_answer_as_djangos_middleware(store_url: str, change: str) -> None:
    done = CHANGES[change]
    differences = []
    with override_settings(CLOUDSESSIONS={"STORE": store_url}, **done.settings):
        for cookie in COOKIES:
            answers = {}
            for send in (_djangos_sync, _ours_sync, _ours_async):
                answers[send.__name__] = await _answer(send, done, await _sent_cookie(cookie))
            reference = answers.pop("_djangos_sync")
            if cookie == "live":
                assert reference.summary == done.live, reference
            differences += [
                (cookie, path, answer, reference)
                for path, answer in answers.items()
                if answer != reference
            ]
    assert not differences, differences


# ------------------------------------------------------------- 3. no thread for the session


async def write_view(request: HttpRequest) -> HttpResponse:
    for name, value in request.GET.items():
        await request.session.aset(name, value)
    return JsonResponse({"ok": True})


async def read_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"a": await request.session.aget("a")})


async def login_view(request: HttpRequest) -> HttpResponse:
    await request.session.acycle_key()
    await request.session.aset("_auth_user_id", "7")
    return JsonResponse({"ok": True})


async def logout_view(request: HttpRequest) -> HttpResponse:
    await request.session.aflush()
    return JsonResponse({"ok": True})


async def count_view(request: HttpRequest) -> HttpResponse:
    views = await request.session.aincrement("views")  # type: ignore[attr-defined]
    return JsonResponse({"views": views})


async def interrupted_view(request: HttpRequest) -> HttpResponse:
    await _aended_elsewhere(request.session)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("write", write_view),
    path("read", read_view),
    path("login", login_view),
    path("logout", logout_view),
    path("count", count_view),
    path("interrupted", interrupted_view),
]


Seen = list[tuple[str, int]]  # (kind of store command, the thread that sent it)


class MongoThreads(monitoring.CommandListener):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "insert", "update", "delete", "findAndModify"):
            kind = "read" if event.command_name == "find" else "write"
            self.seen.append((kind, threading.get_ident()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def threads_store(name: str, folder: Path, seen: Seen) -> Store:
    """A store of `name` whose client records the thread of each session command it sends:
    the hooks run where the client sends it (a coroutine's thread for the async clients)."""
    url = stores.store_url(name, folder)
    if name == "redis":

        def on_command(args: tuple[Any, ...]) -> None:
            found = redis_backend.classify(args)
            if found is not None:
                seen.append((found[0], threading.get_ident()))

        return open_store(url, on_command=on_command)
    return open_store(url, event_listeners=[MongoThreads(seen)])


@contextlib.contextmanager
def django_app(store: Store | str, middleware: str) -> Iterator[None]:
    with override_settings(
        CLOUDSESSIONS={"STORE": store}, MIDDLEWARE=[middleware], ROOT_URLCONF=__name__
    ):
        yield


async def _visit(client: AsyncClient) -> None:
    """A visitor's life: a new session, a read, a change, a login, a count, a logout."""
    for url in ("/write?a=1", "/read", "/write?a=2", "/login", "/count", "/logout"):
        response = await client.get(url)
        assert response.status_code == 200, (url, response)
    assert (await client.get("/read")).json() == {"a": None}, "logged out"


# The stores with a native asyncio client whose commands the tests can see being sent
# (MongoDB's on Python 3.12+ only: see MongoDBStore.native_async).
NATIVE = ("redis", "mongodb") if NATIVE_ASYNC_SAFE else ("redis",)


@pytest.mark.parametrize("store_name", [n for n in NATIVE if n in stores.STORE_NAMES])
async def test_an_async_request_never_leaves_the_event_loop_for_its_session(
    store_name: str, tmp_path: Path
) -> None:
    seen: Seen = []
    store = threads_store(store_name, tmp_path, seen)
    loop_thread = threading.get_ident()
    try:
        with django_app(store, OURS):
            await _visit(AsyncClient())
        reads, writes = ([t for k, t in seen if k == kind] for kind in ("read", "write"))
        assert reads and writes, seen
        assert set(reads + writes) == {loop_thread}, "a session command sent from a thread"

        # The control: Django's own middleware saves in asgiref's thread, so the observable
        # above does tell the two apart.
        seen.clear()
        with django_app(store, DJANGOS):
            await _visit(AsyncClient())
        writes = [t for k, t in seen if k == "write"]
        assert any(thread != loop_thread for thread in writes), seen
    finally:
        await store.aclose()
        store.close()


async def test_a_session_ended_elsewhere_is_a_400_as_on_a_sync_request(store_url: str) -> None:
    # SessionInterrupted is a BadRequest: Django's handler answers 400 (the error itself is
    # compared with Django's in test_the_same_answer_as_djangos_middleware).
    for middleware in (OURS, DJANGOS):
        with django_app(store_url, middleware):
            client = AsyncClient(raise_request_exception=False)
            assert (await client.get("/write?a=1")).status_code == 200
            response = await client.get("/interrupted")
            assert response.status_code == 400, middleware
            assert "set-cookie" not in response.headers


# ------------------------------------------------------------ 4. an outage, async requests


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    port = free_port()
    with dedicated_secantus(port) as proc:
        yield port, proc


@dataclass
class Commands(monitoring.CommandListener):
    """The writes the store sent, by name (the outage tests count attempts)."""

    writes: list[str] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update", "delete", "findAndModify"):
            self.writes.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def visitor(server: Any) -> AsyncIterator[tuple[AsyncClient, Commands]]:
    """A visitor without a cookie on a warmed-up async app (the loop's client connected)."""
    commands = Commands()
    store = outage_store(server[0], "async_outage", event_listeners=[commands])
    store.provision()
    with django_app(store, OURS):
        client = AsyncClient()
        assert (await client.get("/write?warm=1")).status_code == 200
        client.cookies.clear()
        commands.writes.clear()
        yield client, commands
    await store.aclose()
    store.close()


async def _while_frozen(client: AsyncClient, proc: Any, url: str) -> HttpResponseBase:
    with frozen(proc):
        started = time.monotonic()
        response = await client.get(url)
        elapsed = time.monotonic() - started
    assert elapsed < ONE_ATTEMPT, f"{elapsed:.1f} s: longer than one store timeout"
    return response


async def _until_answered(client: AsyncClient, url: str) -> HttpResponseBase:
    deadline = time.monotonic() + 15
    while (response := await client.get(url)).status_code != 200:
        assert time.monotonic() < deadline, f"no recovery: {response}"
        await asyncio.sleep(0.2)
    return response


async def test_a_save_the_frozen_store_cannot_take_is_one_attempt_then_503(
    visitor: tuple[AsyncClient, Commands], server: Any
) -> None:
    client, commands = visitor
    response = await _while_frozen(client, server[1], "/write?a=1")
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "5")
    assert not response.cookies, "no cookie for a record that was never stored"
    assert commands.writes == ["insert"], "one store attempt"
    response = await _until_answered(client, "/write?a=2")
    assert NAME in response.cookies, "the session is created once the store answers"


async def test_a_store_error_in_an_async_view_is_a_503(
    visitor: tuple[AsyncClient, Commands], server: Any
) -> None:
    response = await _while_frozen(visitor[0], server[1], "/count")
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "5")
    assert not response.cookies


async def test_an_async_logout_the_store_cannot_take_keeps_the_cookie(
    visitor: tuple[AsyncClient, Commands], server: Any
) -> None:
    client = visitor[0]
    assert (await client.get("/write?a=1")).status_code == 200
    response = await _while_frozen(client, server[1], "/logout")
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "5")
    assert not response.cookies, "the cookie is left for the retry"
    response = await _until_answered(client, "/logout")
    assert response.cookies[NAME].value == "", "the retried logout ends the session"


async def test_a_read_the_frozen_store_cannot_answer_is_a_503(
    visitor: tuple[AsyncClient, Commands], server: Any
) -> None:
    client = visitor[0]
    assert (await client.get("/write?a=1")).status_code == 200
    response = await _while_frozen(client, server[1], "/read")
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "5")
    assert not response.cookies
    assert (await _until_answered(client, "/read")).json() == {"a": "1"}
