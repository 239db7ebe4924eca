"""The ASGI middleware, through Starlette's TestClient on every store and through a real
ASGI server (uvicorn, several worker processes) with a real cookie jar.

Round trips are counted by the store's SDK-level instrumentation (tests/backends).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from cloudsessions import (
    ConfigurationError,
    SessionRecord,
    Store,
    StoreUnavailable,
    new_key,
    open_store,
    record_id,
)
from cloudsessions.asgi import SessionMiddleware
from tests import stores
from tests.services._process import free_port, run_server
from tests.stores import Instrumented
from tests.test_flask import Browser

LIFETIME = 3600


async def read(request: Request) -> JSONResponse:
    return JSONResponse({"data": dict(request.session), "sid": request.session.sid})


async def write(request: Request) -> JSONResponse:
    for key, value in request.query_params.items():
        request.session[key] = json.loads(value)
    return JSONResponse({"ok": True})


async def append(request: Request) -> JSONResponse:
    request.session["items"].append(request.query_params["item"])
    return JSONResponse({"ok": True})


async def remove(request: Request) -> JSONResponse:
    for key in request.query_params:
        request.session.pop(key, None)
    return JSONResponse({"ok": True})


async def login(request: Request) -> JSONResponse:
    request.session.regenerate()
    request.session["_user_id"] = request.query_params["user"]
    return JSONResponse({"ok": True})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"ok": True})


async def count(request: Request) -> JSONResponse:
    return JSONResponse({"views": await request.session.aincrement("views")})


async def race(request: Request) -> JSONResponse:
    request.session["a"] = 2
    await request.app.state.store.adelete(request.session.sid)  # logged out concurrently
    return JSONResponse({"ok": True})


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(dict(websocket.session))
    await websocket.close()


def make_app(store: str | Store, **options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/read", read),
            Route("/write", write),
            Route("/append", append),
            Route("/remove", remove),
            Route("/login", login),
            Route("/logout", logout),
            Route("/count", count),
            Route("/race", race),
            WebSocketRoute("/ws", socket),
        ],
        middleware=[Middleware(SessionMiddleware, store=store, **{"max_age": LIFETIME, **options})],
    )
    app.state.store = store
    return app


def server_app() -> Starlette:
    """What uvicorn serves (--factory): the test app on the store the environment names."""
    return make_app(os.environ["CLOUDSESSIONS_TEST_URL"])


@pytest.fixture
def on_store(instrumented: Instrumented) -> Instrumented:
    instrumented.store.provision()
    return instrumented


@pytest.fixture
def client(on_store: Instrumented) -> Iterator[TestClient]:
    with TestClient(make_app(on_store.store)) as test_client:
        yield test_client


def sid(client: TestClient) -> str | None:
    return client.cookies.get("session")


def set_cookies(response: Any) -> list[str]:
    return list(response.headers.get_list("set-cookie"))


# ------------------------------------------------------------------ round trips


def test_request_round_trips_match_the_budget(client: TestClient, on_store: Instrumented) -> None:
    store, trips = on_store.store, on_store.trips

    trips.reset()
    response = client.get("/read")
    assert response.json() == {"data": {}, "sid": None}
    assert trips.counts == (0, 0), "no cookie: nothing to load, nothing to write"
    assert set_cookies(response) == []

    trips.reset()
    response = client.get("/write", params={"a": "1"})
    assert trips.counts == (0, 1), "first write: one create, no existence check"
    key = sid(client)
    assert key is not None and len(set_cookies(response)) == 1

    trips.reset()
    response = client.get("/read")
    assert response.json() == {"data": {"a": 1}, "sid": key}
    assert trips.counts == (1, 0), "a read-only request writes nothing"
    assert set_cookies(response) == [] and response.headers["vary"] == "Cookie"

    trips.reset()
    client.get("/write", params={"a": "1"})
    assert trips.counts == (1, 0), "assigning the same value is not a change"

    trips.reset()
    client.get("/write", params={"b": '"x"'})
    assert trips.counts == (1, 1), "load + one conditional save"
    record = store.load(key)
    assert record is not None and record.data == {"a": 1, "b": "x"}


def test_a_nested_change_is_saved(client: TestClient, on_store: Instrumented) -> None:
    client.get("/write", params={"items": "[]"})
    key = sid(client)
    assert key is not None
    on_store.trips.reset()
    client.get("/append", params={"item": "apple"})
    assert on_store.trips.counts == (1, 1)
    record = on_store.store.load(key)
    assert record is not None and record.data == {"items": ["apple"]}


def test_login_rotates_the_id_deletes_the_old_record_and_records_the_user(
    client: TestClient, on_store: Instrumented
) -> None:
    store, trips = on_store.store, on_store.trips
    client.get("/write", params={"cart": '"3 apples"'})
    before = sid(client)
    assert before is not None
    trips.reset()
    client.get("/login", params={"user": "42"})
    after = sid(client)
    assert after is not None and after != before
    assert trips.counts == (1, 2), "load, delete the old record, create the new one"
    assert store.load(before) is None
    record = store.load(after)
    assert record is not None and record.data == {"cart": "3 apples", "_user_id": "42"}
    assert [s.record_id for s in store.for_user("42")] == [record_id(after)]


def test_clearing_the_session_deletes_the_record_and_the_cookie(
    client: TestClient, on_store: Instrumented
) -> None:
    client.get("/login", params={"user": "7"})
    key = sid(client)
    assert key is not None
    on_store.trips.reset()
    response = client.get("/logout")
    assert on_store.trips.counts == (1, 1), "load + one delete"
    assert on_store.store.load(key) is None and on_store.store.for_user("7") == []
    assert sid(client) is None
    assert set_cookies(response) == [
        "session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=lax"
    ]


def test_removing_the_last_key_ends_the_session(client: TestClient, on_store: Instrumented) -> None:
    client.get("/write", params={"a": "1"})
    key = sid(client)
    assert key is not None
    client.get("/remove", params={"a": ""})
    assert on_store.store.load(key) is None and sid(client) is None


@pytest.mark.parametrize("kind", ["unknown", "malformed", "expired"])
def test_a_cookie_naming_no_live_session_gets_a_fresh_one_and_writes_nothing(
    client: TestClient, on_store: Instrumented, kind: str
) -> None:
    store, trips = on_store.store, on_store.trips
    value = {"unknown": new_key(), "malformed": "x" * 10, "expired": new_key()}[kind]
    if kind == "expired":
        store.create(value, SessionRecord({"old": 1}, time.time() - 1))
    client.cookies.set("session", value, domain="testserver.local")
    trips.reset()
    response = client.get("/read")
    assert response.json() == {"data": {}, "sid": None}
    assert trips.counts == ((0, 0) if kind == "malformed" else (1, 0))
    assert set_cookies(response) == []
    client.get("/write", params={"a": "1"})
    assert sid(client) not in (None, value)
    assert store.load(value) is None


def test_a_session_deleted_during_the_request_is_not_resurrected(
    client: TestClient, on_store: Instrumented
) -> None:
    client.get("/write", params={"a": "1"})
    key = sid(client)
    assert key is not None
    response = client.get("/race")
    assert response.status_code == 200 and set_cookies(response) == []
    assert on_store.store.load(key) is None


def test_websockets_read_the_session(client: TestClient) -> None:
    client.get("/write", params={"a": "1"})
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"a": 1}


def test_an_unreachable_store_fails_the_request(tmp_path: Path) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with TestClient(make_app(broken)) as client:
        client.cookies.set("session", new_key(), domain="testserver.local")
        with pytest.raises(StoreUnavailable):
            client.get("/read")
    with TestClient(make_app(broken), raise_server_exceptions=False) as client:
        client.cookies.set("session", new_key(), domain="testserver.local")
        assert client.get("/read").status_code == 500


# ------------------------------------------------------------------ expiry and cookies


def test_cookie_parameters_match_starlettes(on_store: Instrumented) -> None:
    app = make_app(
        on_store.store,
        session_cookie="sid",
        path="/app",
        same_site="strict",
        https_only=True,
        domain="example.test",
    )
    with TestClient(app, base_url="https://example.test") as client:
        response = client.get("/write", params={"a": "1"})
    (header,) = set_cookies(response)
    key = header.split(";")[0].split("=")[1]
    assert header == (
        f"sid={key}; path=/app; Max-Age={LIFETIME}; httponly; samesite=strict; secure;"
        " domain=example.test"
    )
    record = on_store.store.load(key)
    assert record is not None
    assert record.expires_at == pytest.approx(time.time() + LIFETIME, abs=5)


def test_a_browser_session_cookie_still_has_a_record_lifetime(on_store: Instrumented) -> None:
    with TestClient(make_app(on_store.store, max_age=None, lifetime=120)) as client:
        response = client.get("/write", params={"a": "1"})
    (header,) = set_cookies(response)
    assert "Max-Age" not in header
    key = sid(client)
    assert key is not None
    record = on_store.store.load(key)
    assert record is not None and record.expires_at == pytest.approx(time.time() + 120, abs=5)


@pytest.mark.parametrize(
    ("refresh_after", "remaining", "refreshed"),
    [
        (0.1, LIFETIME * 0.95, False),
        (0.1, LIFETIME * 0.5, True),
        (0.6, LIFETIME * 0.5, False),
        (None, LIFETIME * 0.01, False),
        (0, LIFETIME - 1, True),
    ],
)
def test_a_read_only_request_refreshes_the_expiry_only_when_due(
    on_store: Instrumented, refresh_after: float | None, remaining: float, refreshed: bool
) -> None:
    store, trips = on_store.store, on_store.trips
    with TestClient(make_app(store, refresh_after=refresh_after)) as client:
        client.get("/write", params={"a": "1"})
        key = sid(client)
        assert key is not None
        record = store.load(key)
        assert record is not None
        record.expires_at = time.time() + remaining  # as if written a while ago
        store.save(key, record, [])
        trips.reset()
        response = client.get("/read")
    assert trips.counts == ((1, 1) if refreshed else (1, 0))
    assert len(set_cookies(response)) == (1 if refreshed else 0)
    record = store.load(key)
    assert record is not None
    expected = time.time() + (LIFETIME if refreshed else remaining)
    assert record.expires_at == pytest.approx(expected, abs=5)


def test_bad_parameters_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="refresh_after"):
        SessionMiddleware(read, store=f"sqlite:///{tmp_path / 'x.db'}", refresh_after=1.5)
    with pytest.raises(ConfigurationError, match="store"):
        SessionMiddleware(read, store=42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ increment


def test_increment_creates_then_counts_in_place(client: TestClient, on_store: Instrumented) -> None:
    trips = on_store.trips
    trips.reset()
    assert client.get("/count").json() == {"views": 1}
    assert trips.counts == (0, 2), "a new session: create, then one increment"
    trips.reset()
    assert client.get("/count").json() == {"views": 2}
    assert trips.counts == (1, 1)
    client.get("/write", params={"views": "10"})
    assert client.get("/count").json() == {"views": 11}


async def test_concurrent_increments_of_one_session_lose_no_count(
    on_store: Instrumented,
) -> None:
    import asyncio

    try:  # Starlette 1.x pairs with httpx2; older ones with httpx
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]

    app = make_app(on_store.store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as first:
        assert (await first.get("/count")).json() == {"views": 1}
        cookies = {"session": first.cookies["session"]}
        requests = 20

        async def visit() -> int:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", cookies=cookies
            ) as tab:
                response = await tab.get("/count")
                return int(response.json()["views"])

        seen = await asyncio.gather(*(visit() for _ in range(requests)))
        assert sorted(seen) == list(range(2, requests + 2)), "each request saw its own count"
        assert (await first.get("/read")).json()["data"]["views"] == requests + 1


# ------------------------------------------------------------------ a real ASGI server


@pytest.fixture
def uvicorn(store_name: str, tmp_path: Path) -> Iterator[tuple[str, Store]]:
    url = stores.store_url(store_name, tmp_path)
    store = open_store(url)
    store.provision()
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "tests.test_asgi:server_app",
    ]
    env = {**os.environ, "CLOUDSESSIONS_TEST_URL": url}
    root = Path(__file__).resolve().parents[1]
    with run_server("uvicorn", argv, port, cwd=root, env=env, timeout=60):
        yield f"http://127.0.0.1:{port}", store
    store.close()


def test_sessions_through_uvicorn_with_a_cookie_jar(uvicorn: tuple[str, Store]) -> None:
    base, store = uvicorn
    alice, bob = Browser(base), Browser(base)
    assert alice.get("/read") == {"data": {}, "sid": None}
    alice.get("/write?cart=%22apples%22")
    first = alice.cookie()
    assert first is not None
    for _ in range(6):
        assert alice.get("/read") == {"data": {"cart": "apples"}, "sid": first}
    assert bob.get("/read")["data"] == {}
    alice.get("/login?user=ada")
    second = alice.cookie()
    assert second not in (None, first) and store.load(first) is None
    assert alice.get("/read")["data"] == {"cart": "apples", "_user_id": "ada"}
    alice.get("/logout")
    assert alice.cookie() is None and second is not None and store.load(second) is None


def test_concurrent_increments_through_uvicorn_lose_no_count(uvicorn: tuple[str, Store]) -> None:
    base, _ = uvicorn
    browser = Browser(base)
    assert browser.get("/count") == {"views": 1}
    requests = 20
    barrier = threading.Barrier(requests)
    errors: list[BaseException] = []

    def visit() -> None:
        try:
            barrier.wait(timeout=30)
            browser.get("/count")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=visit) for _ in range(requests)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert browser.get("/read")["data"]["views"] == 1 + requests


# ------------------------------------------------------------------ FastAPI


def test_the_fastapi_quick_start(on_store: Instrumented) -> None:
    import fastapi

    api = fastapi.FastAPI()
    api.add_middleware(SessionMiddleware, store=on_store.store)

    @api.get("/")
    async def home(request: Request) -> dict[str, int]:
        return {"views": await request.session.aincrement("views")}

    @api.post("/login")
    async def api_login(request: Request) -> dict[str, bool]:
        request.session.regenerate()
        request.session["_user_id"] = "42"
        return {"ok": True}

    with TestClient(api) as client:
        assert [client.get("/").json()["views"] for _ in range(3)] == [1, 2, 3]
        before = sid(client)
        client.post("/login")
        after = sid(client)
        assert after not in (None, before)
        assert client.get("/").json() == {"views": 4}
    assert on_store.store.for_user("42")[0].record_id == record_id(after)  # type: ignore[arg-type]
