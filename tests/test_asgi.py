"""What only the ASGI front door does: Starlette's cookie and parameters, WebSockets and
FastAPI, on every store.

What every front door does (through uvicorn too) is in tests/test_front_doors.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from cloudsessions import ConfigurationError, record_id
from cloudsessions.asgi import SessionMiddleware
from tests.front_doors import LIFETIME, asgi_app, stored
from tests.stores import Instrumented


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_websockets_read_the_session_and_write_nothing(
    on_store: Instrumented, backend: str
) -> None:
    with TestClient(asgi_app(on_store.store), backend=backend) as client:
        client.get("/write", params={"a": "1"})
        key = client.cookies["session"]
        on_store.trips.reset()
        with client.websocket_connect("/ws") as websocket:  # sets "b" in its session
            answer = websocket.receive_json()
    assert answer == {
        "a": 1,
        "b": 2,
        "refused": "this session is read-only: a WebSocket cannot set a cookie",
    }
    assert on_store.trips.counts == (1, 0), "a WebSocket cannot set a cookie: nothing saved"
    assert stored(on_store.store, key) == {"a": 1}


def test_cookies_match_starlettes_and_every_record_expires(on_store: Instrumented) -> None:
    app = asgi_app(
        on_store.store,
        session_cookie="sid",
        path="/app",
        same_site="strict",
        https_only=True,
        domain="example.test",
    )
    with TestClient(app, base_url="https://example.test") as client:
        response = client.get("/write", params={"a": "1"})
    (header,) = response.headers.get_list("set-cookie")
    key = header.split(";")[0].split("=")[1]
    assert header == (
        f"sid={key}; path=/app; Max-Age={LIFETIME}; httponly; samesite=strict; secure;"
        " domain=example.test"
    )
    record = on_store.store.load(key)
    assert record is not None
    assert record.expires_at == pytest.approx(time.time() + LIFETIME, abs=5)

    with TestClient(asgi_app(on_store.store)) as client:  # the defaults, as Starlette's
        client.get("/write", params={"a": "1"})
        response = client.get("/logout")
    assert response.headers.get_list("set-cookie") == [
        "session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=lax"
    ]

    # max_age None: a browser-session cookie, for a record that still expires
    with TestClient(asgi_app(on_store.store, max_age=None, lifetime=120)) as client:
        (header,) = client.get("/write", params={"a": "1"}).headers.get_list("set-cookie")
        record = on_store.store.load(client.cookies["session"])
    assert "Max-Age" not in header
    assert record is not None and record.expires_at == pytest.approx(time.time() + 120, abs=5)


def test_bad_parameters_are_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigurationError, match="refresh_after"):
        SessionMiddleware(Starlette(), store=url, refresh_after=1.5)
    with pytest.raises(ConfigurationError, match="retry_after"):
        SessionMiddleware(Starlette(), store=url, retry_after=-1)
    with pytest.raises(ConfigurationError, match="store"):
        SessionMiddleware(Starlette(), store=42)  # type: ignore[arg-type]


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
        before = client.cookies.get("session")
        client.post("/login")
        after = client.cookies.get("session")
        assert after not in (None, before)
        assert client.get("/").json() == {"views": 4}
    assert on_store.store.for_user("42")[0].record_id == record_id(after)  # type: ignore[arg-type]
