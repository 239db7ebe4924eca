"""A store that stops answering, seen through each front door: one attempt, then 503.

The fault is real and on the wire: a SecantusDB of this module's own is frozen with SIGSTOP
(the kernel still accepts connections; nothing answers), so every store call runs into the
store's own timeout. Each front door must then try the store once per operation (Flask calls
save_session a second time from its error path; that call must not try again), answer 503
with Retry-After within about one store timeout, set no cookie, and serve normally once the
store answers again. The commands tried are counted by a PyMongo command listener.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path
from flask import Flask, jsonify, request, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from cloudsessions import Store, StoreUnavailable, open_store
from cloudsessions.asgi import SessionMiddleware
from cloudsessions.flask import CloudSessions
from tests.backends.mongodb import CommandCounter
from tests.faults_support import timed
from tests.services._process import HOST, free_port
from tests.services.secantus import dedicated_secantus
from tests.stores import RoundTrips, unique_name

BOUND_MS = 1000  # the store's bound on each operation here
# One store attempt takes about BOUND_MS; two would take twice that. The slack is for a
# loaded machine, and stays under a second attempt.
ONE_ATTEMPT = BOUND_MS / 1000 * 1.6


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    port = free_port()
    with dedicated_secantus(port) as proc:
        yield port, proc


def freeze(proc: Any) -> None:
    """SIGSTOP the server and wait until it is stopped: the signal is not instant."""
    os.kill(proc.pid, signal.SIGSTOP)
    stat = Path(f"/proc/{proc.pid}/stat")
    deadline = time.monotonic() + 10
    # /proc/PID/stat: "pid (comm) state ..."; T = stopped by a signal.
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.01)


@contextlib.contextmanager
def frozen(proc: Any) -> Iterator[None]:
    freeze(proc)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


Answer = tuple[int, dict[str, str]]

# Run by the /count-through-outage views when their increment failed: the test resumes the
# store there, so the rest of the same request meets a store that answers again.
on_failed_increment: list[Callable[[], None]] = []
# The commands each test's store sent, as the server would see them (reset per test).
trips = RoundTrips()


def _recovered() -> None:
    for resume in on_failed_increment:
        resume()


# Run by the /read-then-fail views after their session was loaded: the test freezes the
# store there, so only the commit at the end of the request meets the outage.
on_read: list[Callable[[], None]] = []


def _read() -> None:
    for hook in on_read:
        hook()


class Visitor:
    """One browser on one front door: get(path) -> (status, lower-case headers)."""

    def __init__(self, get: Callable[[str], Answer], forget: Callable[[], None]) -> None:
        self.get, self.forget = get, forget


@contextlib.contextmanager
def flask_visitor(store: Store) -> Iterator[Visitor]:
    app = Flask(__name__)
    app.config["CLOUDSESSIONS_STORE"] = store  # TESTING off: what users get, not a traceback
    CloudSessions(app)

    @app.get("/write")
    def write() -> Any:
        session.update(request.args)
        return jsonify(ok=True)

    @app.get("/read-then-fail")
    def read_then_fail() -> Any:
        _read()
        return jsonify(dict(session))

    @app.get("/count")
    def count_or_fail() -> Any:
        return jsonify(views=session.increment("views"))  # type: ignore[attr-defined]

    @app.get("/count-through-outage")
    def count() -> Any:
        try:
            session.increment("views")  # type: ignore[attr-defined]
        except StoreUnavailable:
            _recovered()
        session["after"] = "outage"
        return jsonify(ok=True)

    client = app.test_client()

    def get(path: str) -> Answer:
        response = client.get(path)
        return response.status_code, {k.lower(): v for k, v in response.headers.items()}

    yield Visitor(get, lambda: client.delete_cookie("session"))


@contextlib.contextmanager
def asgi_visitor(store: Store) -> Iterator[Visitor]:
    async def write(request: Request) -> JSONResponse:
        request.session.update(request.query_params)
        return JSONResponse({"ok": True})

    async def read_then_fail(request: Request) -> JSONResponse:
        _read()
        return JSONResponse(dict(request.session))

    async def count_or_fail(request: Request) -> JSONResponse:
        return JSONResponse({"views": await request.session.aincrement("views")})

    async def count(request: Request) -> JSONResponse:
        try:
            await request.session.aincrement("views")
        except StoreUnavailable:
            _recovered()
        request.session["after"] = "outage"
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/write", write),
            Route("/count", count_or_fail),
            Route("/read-then-fail", read_then_fail),
            Route("/count-through-outage", count),
        ],
        middleware=[Middleware(SessionMiddleware, store=store)],
    )
    # One event loop for all requests, as a server has: its async client stays connected.
    with TestClient(app) as client:

        def get(path: str) -> Answer:
            response = client.get(path)
            return response.status_code, dict(response.headers)

        yield Visitor(get, client.cookies.clear)


def django_write(request: HttpRequest) -> HttpResponse:
    request.session.update(request.GET.dict())
    return JsonResponse({"ok": True})


def django_logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return JsonResponse({"ok": True})


def django_count_or_fail(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"views": request.session.increment("views")})  # type: ignore[attr-defined]


def django_count(request: HttpRequest) -> HttpResponse:
    try:
        request.session.increment("views")  # type: ignore[attr-defined]
    except StoreUnavailable:
        _recovered()
    request.session["after"] = "outage"
    return JsonResponse({"ok": True})


urlpatterns = [
    path("write", django_write),
    path("count", django_count_or_fail),
    path("logout", django_logout),
    path("count-through-outage", django_count),
]


@contextlib.contextmanager
def django_visitor(store: Store) -> Iterator[Visitor]:
    client = Client()

    def get(path: str) -> Answer:
        response = client.get(path)
        headers = {k.lower(): v for k, v in response.headers.items()}
        if response.cookies:  # Django keeps Set-Cookie apart from the other headers
            headers["set-cookie"] = response.cookies.output(header="").strip()
        return response.status_code, headers

    with override_settings(
        CLOUDSESSIONS={"STORE": store},
        MIDDLEWARE=["cloudsessions.django.middleware.SessionMiddleware"],
        ROOT_URLCONF=__name__,
    ):
        yield Visitor(get, client.cookies.clear)


VISITORS = {"django": django_visitor, "flask": flask_visitor, "asgi": asgi_visitor}


def outage_store(port: int, name: str, **options: Any) -> Store:
    """A fresh collection on the module's server, each operation bounded by BOUND_MS."""
    url = f"mongodb://{HOST}:{port}/{unique_name(name)}?collection=sessions"
    return open_store(url, timeoutMS=BOUND_MS, **options)


@pytest.fixture(params=sorted(VISITORS))
def new_visitor(request: pytest.FixtureRequest, server: Any) -> Iterator[tuple[Visitor, Store]]:
    """A visitor without a cookie on a warmed-up door (its pooled connections are open),
    over a store on the module's server whose commands are counted in `trips`."""
    port, _ = server
    store = outage_store(port, "outage", event_listeners=[CommandCounter(trips)])
    store.provision()
    with VISITORS[request.param](store) as visitor:
        assert visitor.get("/write?warm=1")[0] == 200
        visitor.forget()  # a new visitor from here: no cookie, so a write is a create
        trips.reset()
        yield visitor, store
    store.close()


def answer_while_frozen(visitor: Visitor, proc: Any, path: str) -> Answer:
    """The answer to `path` with the store frozen, which must come within one attempt."""
    with frozen(proc):
        answer, elapsed = timed(lambda: visitor.get(path))
    assert elapsed < ONE_ATTEMPT, f"{elapsed:.1f} s: longer than one store timeout"
    return answer


def test_a_new_visitors_write_during_a_freeze_costs_one_attempt_then_503(
    new_visitor: tuple[Visitor, Store], server: Any
) -> None:
    visitor, _ = new_visitor
    status, headers = answer_while_frozen(visitor, server[1], "/write?a=1")
    assert (status, headers.get("retry-after")) == (503, "5")
    assert "set-cookie" not in headers, "no cookie for a record that was never stored"
    assert trips.writes == ["insert"], "one store attempt, not a second from an error path"

    # The store answers again: the same visitor's next request creates its session.
    deadline = time.monotonic() + 15
    while (answer := visitor.get("/write?a=2"))[0] != 200:
        assert time.monotonic() < deadline, f"no recovery: {answer}"
        time.sleep(0.2)
    assert "set-cookie" in answer[1]


def test_a_store_error_in_the_view_is_one_attempt_then_503(
    new_visitor: tuple[Visitor, Store], server: Any
) -> None:
    # The view's increment must create the record first; that create fails and the error
    # leaves the view. Flask then saves the session from its error path: it must not try
    # the same create again; ASGI must answer 503 too, not a bare 500.
    status, headers = answer_while_frozen(new_visitor[0], server[1], "/count")
    assert (status, headers.get("retry-after")) == (503, "5")
    assert "set-cookie" not in headers


def test_a_create_that_failed_mid_request_leaves_nothing_believed_stored(
    new_visitor: tuple[Visitor, Store], server: Any
) -> None:
    # A new visitor's increment must create the record first; the store is frozen, so that
    # create fails and the view goes on. The store then answers again: the commit at the end
    # of the same request must create the record (not save one it wrongly believes exists,
    # which would drop the data and send no cookie).
    (visitor, store), proc = new_visitor, server[1]
    freeze(proc)
    on_failed_increment.append(lambda: os.kill(proc.pid, signal.SIGCONT))
    try:
        status, headers = visitor.get("/count-through-outage")
    finally:
        on_failed_increment.clear()
        os.kill(proc.pid, signal.SIGCONT)
    assert status == 200
    assert "set-cookie" in headers, "the session was stored, so the browser gets its id"
    assert trips.writes[0] == "insert", "the failed create"
    assert trips.writes[-1] == "insert", "the commit creates; it does not update"
    assert "update" not in trips.writes
    sid = re.search(r"\bsession(?:id)?=([a-z0-9]{32,})", headers["set-cookie"])
    assert sid is not None, headers["set-cookie"]
    record = store.load(sid.group(1))
    assert record is not None and record.data == {"after": "outage"}


@pytest.mark.parametrize("door", ["flask", "asgi"])  # Django's engine has no refresh policy
def test_an_expiry_refresh_the_store_cannot_take_does_not_fail_a_read(
    door: str, server: Any
) -> None:
    port, proc = server
    store = outage_store(port, "refresh")
    with VISITORS[door](store) as visitor:
        answer = visitor.get("/write?a=1")
        sid = re.search(r"\bsession=([a-z0-9]{32,})", answer[1]["set-cookie"])
        assert sid is not None
        record = store.load(sid.group(1))
        assert record is not None
        record.expires_at = time.time() + 60  # most of the lifetime has passed: refresh due
        store.save(sid.group(1), record, [])
        on_read.append(lambda: freeze(proc))
        try:
            status, headers = visitor.get("/read-then-fail")
        finally:
            on_read.clear()
            os.kill(proc.pid, signal.SIGCONT)
        assert status == 200, "the refresh is optional: the read still succeeds"
        assert "set-cookie" not in headers
        # (The refresh may still land: the frozen server took the request and answers it
        # once it runs again; the client had stopped waiting.)
        assert store.load(sid.group(1)) is not None, "the session is intact"
    store.close()


def test_a_django_logout_the_store_cannot_take_keeps_the_cookie(server: Any) -> None:
    # flush() could not delete the record, which stays live: the 503 must not delete the
    # browser's cookie too, or the user could not retry a logout that did not happen.
    port, proc = server
    store = outage_store(port, "logout")
    with django_visitor(store) as visitor:
        assert visitor.get("/write?a=1")[0] == 200
        with frozen(proc):
            status, headers = visitor.get("/logout")
        assert (status, headers.get("retry-after")) == (503, "5")
        assert "set-cookie" not in headers, "the cookie is left for the retry"
        deadline = time.monotonic() + 15
        while (answer := visitor.get("/logout"))[0] != 200:
            assert time.monotonic() < deadline, f"no recovery: {answer}"
            time.sleep(0.2)
        assert 'sessionid=""' in answer[1]["set-cookie"], "the retried logout ends it"
    store.close()
