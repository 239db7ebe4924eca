"""Switching to cloudsessions without logging anyone out (cloudsessions.migration): the
read-through from the previous backend, on every store, through each front door with the
previous backend's real storage."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import flask
import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoDbSession
from django.contrib.sessions.models import Session as DjangoSessionRow
from django.db import connection
from django.test import override_settings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from cloudsessions import ConfigurationError, record_id
from cloudsessions.asgi import SessionMiddleware
from cloudsessions.django.conf import config
from cloudsessions.migration import migrated_id
from tests.front_doors import AsgiDoor, DjangoDoor, FlaskDoor, asgi_app, flask_app
from tests.stores import Instrumented

DB_ENGINE = "django.contrib.sessions.backends.db"


@pytest.fixture(scope="module")
def django_session_table() -> Iterator[None]:
    """Django's own session table, in the test database (an in-memory SQLite)."""
    with connection.schema_editor() as editor:
        editor.create_model(DjangoSessionRow)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(DjangoSessionRow)


def old_django_session(**data: Any) -> str:
    """A session written by Django's db engine, as a site has it before the switch."""
    session = DjangoDbSession()
    session.update(data)
    session.create()
    assert session.session_key is not None
    return session.session_key


@contextlib.contextmanager
def switched(store: Any, **extra: Any) -> Iterator[None]:
    settings = {"STORE": store, "MIGRATE_FROM": DB_ENGINE, **extra}
    with override_settings(CLOUDSESSIONS=settings):
        yield


def test_a_signed_in_django_session_survives_the_switch(
    django_session_table: None, on_store: Instrumented
) -> None:
    store, trips = on_store.store, on_store.trips
    old_key = old_django_session(_auth_user_id="7", cart="3 apples")
    browser = DjangoDoor(store)
    browser.plant(old_key)
    with switched(store):
        trips.reset()
        answer = browser.get("/read")
        new_id = migrated_id(old_key)
        assert answer.json["data"] == {"_auth_user_id": "7", "cart": "3 apples"}
        assert browser.sid == new_id, "the response replaced the cookie"
        checks = 1 if on_store.index_apart else 0
        assert trips.counts == (1, 1 + checks), "ours (a miss), then the copy made"
        assert not DjangoSessionRow.objects.filter(session_key=old_key).exists()
        assert [s.record_id for s in store.for_user("7")] == [record_id(new_id)]

        trips.reset()
        assert browser.get("/read").json["data"]["cart"] == "3 apples"
        assert trips.counts == (1, 0), "from then on: one read, no old backend"


def test_a_session_logged_out_before_the_switch_stays_logged_out(
    django_session_table: None, on_store: Instrumented
) -> None:
    old_key = old_django_session(_auth_user_id="8")
    DjangoDbSession(old_key).delete()  # the user logged out on the old site
    browser = DjangoDoor(on_store.store)
    browser.plant(old_key)
    with switched(on_store.store):
        assert browser.get("/read").json["data"] == {}
    assert on_store.store.load(migrated_id(old_key)) is None
    assert on_store.store.for_user("8") == []


def test_concurrent_first_requests_of_one_old_session_end_with_one_session(
    django_session_table: None, on_store: Instrumented
) -> None:
    store = on_store.store
    old_key = old_django_session(_auth_user_id="9", cart="1 fig")
    tabs = [DjangoDoor(store) for _ in range(8)]
    for tab in tabs:
        tab.plant(old_key)
    start = threading.Barrier(len(tabs), timeout=30)
    answers: list[Any] = []

    def visit(tab: DjangoDoor) -> None:
        start.wait()
        answers.append(tab.get("/read").json["data"])

    with switched(store):
        workers = [threading.Thread(target=visit, args=(tab,)) for tab in tabs]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert answers == [{"_auth_user_id": "9", "cart": "1 fig"}] * len(tabs)
    assert {tab.sid for tab in tabs} == {migrated_id(old_key)}
    assert [s.record_id for s in store.for_user("9")] == [record_id(migrated_id(old_key))]


def test_a_kept_old_session_is_left_in_place(
    django_session_table: None, on_store: Instrumented
) -> None:
    from cloudsessions.migration.django_engines import DjangoEngineSource

    old_key = old_django_session(_auth_user_id="10")
    browser = DjangoDoor(on_store.store)
    browser.plant(old_key)
    source = DjangoEngineSource(DB_ENGINE, keep_old=True)
    with override_settings(CLOUDSESSIONS={"STORE": on_store.store, "MIGRATE_FROM": source}):
        assert browser.get("/read").json["data"] == {"_auth_user_id": "10"}
    assert DjangoSessionRow.objects.filter(session_key=old_key).exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("cloudsessions.django", "names cloudsessions itself"),
        ("django.contrib.sessions.backends.nope", "is not a session engine"),
        (42, "must be a session engine path or a Source"),
    ],
)
def test_a_wrong_previous_backend_is_a_configuration_error(value: object, message: str) -> None:
    wrong = override_settings(CLOUDSESSIONS={"MIGRATE_FROM": value})
    with wrong, pytest.raises(ConfigurationError, match=message):
        config().store()


# ------------------------------------------------------------- signed cookies

FLASK_SECRET = "the flask app's secret"


def old_flask_cookie(**data: Any) -> str:
    """A Flask app on Flask's own cookie session: a login there, its cookie value."""
    app = flask.Flask(__name__)
    app.secret_key = FLASK_SECRET

    @app.get("/login")
    def login() -> str:
        flask.session.update(data)
        return "ok"

    client = app.test_client()
    client.get("/login")
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_a_flask_cookie_session_survives_the_switch(on_store: Instrumented) -> None:
    when = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    cookie = old_flask_cookie(_user_id="11", cart=("pear", 2), at=when)
    app = flask_app(on_store.store, SECRET_KEY=FLASK_SECRET, CLOUDSESSIONS_MIGRATE_FROM="flask")

    @app.get("/typed")
    def typed() -> dict[str, Any]:
        return {"cart": repr(flask.session["cart"]), "at": repr(flask.session["at"])}

    browser = FlaskDoor(on_store.store, app)
    browser.plant(cookie)
    assert browser.get("/typed").json == {"cart": repr(("pear", 2)), "at": repr(when)}
    new_id = migrated_id(cookie)
    assert browser.sid == new_id
    assert [s.record_id for s in on_store.store.for_user("11")] == [record_id(new_id)]
    assert browser.get("/read").json["data"]["_user_id"] == "11"

    forged = FlaskDoor(on_store.store, app)
    forged.plant(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert forged.get("/read").json["data"] == {}, "a bad signature copies nothing"
    other = flask_app(on_store.store, SECRET_KEY="another", CLOUDSESSIONS_MIGRATE_FROM="flask")
    stranger = FlaskDoor(on_store.store, other)
    stranger.plant(old_flask_cookie(_user_id="12"))
    assert stranger.get("/read").json["data"] == {}, "another app's cookie copies nothing"


def test_a_starlette_cookie_session_survives_the_switch(on_store: Instrumented) -> None:
    secret = "the starlette app's secret"

    async def login(request: Request) -> PlainTextResponse:
        request.session.update({"_user_id": "13", "cart": ["fig"]})
        return PlainTextResponse("ok")

    old_app = Starlette(
        routes=[Route("/login", login)],
        middleware=[Middleware(StarletteSessionMiddleware, secret_key=secret)],
    )
    with TestClient(old_app) as old_browser:
        old_browser.get("/login")
        cookie = old_browser.cookies["session"]

    app = asgi_app(on_store.store, secret_key=secret, migrate_from="starlette")
    with contextlib.ExitStack() as stack:
        browser = AsgiDoor(on_store.store, app, "asyncio", stack)
        browser.plant(cookie)
        assert browser.get("/read").json["data"] == {"_user_id": "13", "cart": ["fig"]}
        assert browser.sid == migrated_id(cookie)
        assert browser.get("/read").json["data"]["cart"] == ["fig"]
    with pytest.raises(ConfigurationError, match="secret_key"):
        SessionMiddleware(old_app, store=on_store.store, migrate_from="starlette")
