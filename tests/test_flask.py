"""The Flask session interface, through Flask's test client on every store and through a real
WSGI server (gunicorn, several worker processes) with a real cookie jar.

Round trips are counted by the store's SDK-level instrumentation (tests/backends).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request, session

from cloudsessions import (
    ConfigurationError,
    SessionRecord,
    Store,
    StoreUnavailable,
    new_key,
    open_store,
    record_id,
)
from cloudsessions.flask import CloudSessions
from tests import stores
from tests.services._process import free_port, run_server
from tests.stores import Instrumented

LIFETIME = 3600


def make_app(store: str | Store, **config: Any) -> Flask:
    """The app every test drives: one view per session operation."""
    app = Flask(__name__)
    app.config.update(
        CLOUDSESSIONS_STORE=store,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME),
        **config,
    )
    CloudSessions(app)

    @app.get("/read")
    def read() -> Any:
        return jsonify(data=dict(session), sid=session.sid)

    @app.get("/write")
    def write() -> Any:
        for key, value in request.args.items():
            session[key] = json.loads(value)
        return jsonify(ok=True)

    @app.get("/append")
    def append() -> Any:
        session["items"].append(request.args["item"])  # a nested change, no `modified`
        return jsonify(ok=True)

    @app.get("/remove")
    def remove() -> Any:
        for key in request.args:
            session.pop(key, None)
        return jsonify(ok=True)

    @app.get("/permanent")
    def permanent() -> Any:
        session.permanent = request.args["on"] == "1"
        return jsonify(ok=True)

    @app.get("/login")
    def login() -> Any:
        session.regenerate()
        session["_user_id"] = request.args["user"]
        return jsonify(ok=True)

    @app.get("/logout")
    def logout() -> Any:
        session.clear()
        return jsonify(ok=True)

    @app.get("/count")
    def count() -> Any:
        return jsonify(views=session.increment("views"))

    return app


def server_app() -> Flask:
    """What gunicorn serves: the test app on the store named by the environment."""
    return make_app(os.environ["CLOUDSESSIONS_TEST_URL"])


@pytest.fixture
def on_store(instrumented: Instrumented) -> Instrumented:
    instrumented.store.provision()
    return instrumented


@pytest.fixture
def app(on_store: Instrumented) -> Flask:
    return make_app(on_store.store, TESTING=True)


def sid(client: Any) -> str | None:
    cookie = client.get_cookie("session")
    return None if cookie is None else str(cookie.value)


def set_cookies(response: Any) -> list[str]:
    return list(response.headers.getlist("Set-Cookie"))


# ------------------------------------------------------------------ round trips


def test_request_round_trips_match_the_budget(app: Flask, on_store: Instrumented) -> None:
    store, trips = on_store.store, on_store.trips
    client = app.test_client()

    trips.reset()
    response = client.get("/read")
    assert response.json == {"data": {}, "sid": None}
    assert trips.counts == (0, 0), "no cookie: nothing to load, nothing to write"
    assert set_cookies(response) == []

    trips.reset()
    response = client.get("/write", query_string={"a": "1"})
    assert trips.counts == (0, 1), "first write: one create, no existence check"
    key = sid(client)
    assert key is not None and len(set_cookies(response)) == 1

    trips.reset()
    response = client.get("/read")
    assert response.json == {"data": {"a": 1}, "sid": key}
    assert trips.counts == (1, 0), "a read-only request writes nothing"
    assert set_cookies(response) == [], "and sends no cookie"

    trips.reset()
    client.get("/write", query_string={"a": "1"})
    assert trips.counts == (1, 0), "assigning the same value is not a change"

    trips.reset()
    client.get("/write", query_string={"b": '"x"'})
    assert trips.counts == (1, 1), "load + one conditional save"
    record = store.load(key)
    assert record is not None and record.data == {"a": 1, "b": "x"}
    assert sid(client) == key


def test_a_nested_change_is_saved_without_setting_modified(
    app: Flask, on_store: Instrumented
) -> None:
    client = app.test_client()
    client.get("/write", query_string={"items": "[]", "other": "1"})
    key = sid(client)
    assert key is not None
    on_store.trips.reset()
    client.get("/append", query_string={"item": "apple"})
    assert on_store.trips.counts == (1, 1)
    record = on_store.store.load(key)
    assert record is not None and record.data == {"items": ["apple"], "other": 1}


def test_login_rotates_the_id_deletes_the_old_record_and_records_the_user(
    app: Flask, on_store: Instrumented
) -> None:
    store, trips = on_store.store, on_store.trips
    client = app.test_client()
    client.get("/write", query_string={"cart": '"3 apples"'})
    before = sid(client)
    assert before is not None

    trips.reset()
    client.get("/login", query_string={"user": "42"})
    after = sid(client)
    assert after is not None and after != before
    assert trips.counts == (1, 2), "load, delete the old record, create the new one"
    assert store.load(before) is None, "the pre-login id is dead"
    record = store.load(after)
    assert record is not None and record.data == {"cart": "3 apples", "_user_id": "42"}
    assert [s.record_id for s in store.for_user("42")] == [record_id(after)]


def test_clearing_the_session_deletes_the_record_and_the_cookie(
    app: Flask, on_store: Instrumented
) -> None:
    store, trips = on_store.store, on_store.trips
    client = app.test_client()
    client.get("/login", query_string={"user": "7"})
    key = sid(client)
    assert key is not None

    trips.reset()
    response = client.get("/logout")
    assert trips.counts == (1, 1), "load + one delete"
    assert store.load(key) is None and store.for_user("7") == []
    assert sid(client) is None, "the cookie was deleted"
    assert any("session=;" in c and "Expires=Thu, 01 Jan 1970" in c for c in set_cookies(response))


def test_removing_the_last_key_ends_the_session(app: Flask, on_store: Instrumented) -> None:
    client = app.test_client()
    client.get("/write", query_string={"a": "1"})
    key = sid(client)
    assert key is not None
    on_store.trips.reset()
    client.get("/remove", query_string={"a": ""})
    assert on_store.trips.counts == (1, 1)
    assert on_store.store.load(key) is None and sid(client) is None


@pytest.mark.parametrize("kind", ["unknown", "malformed", "expired"])
def test_a_cookie_naming_no_live_session_gets_a_fresh_one_and_writes_nothing(
    app: Flask, on_store: Instrumented, kind: str
) -> None:
    store, trips = on_store.store, on_store.trips
    value = {"unknown": new_key(), "malformed": "../../etc/passwd", "expired": new_key()}[kind]
    if kind == "expired":
        store.create(value, SessionRecord({"old": 1}, time.time() - 1))
    client = app.test_client()
    client.set_cookie("session", value)

    trips.reset()
    response = client.get("/read")
    assert response.json == {"data": {}, "sid": None}
    assert trips.counts == ((0, 0) if kind == "malformed" else (1, 0))
    # The stale cookie is left alone: a concurrent login may just have replaced it.
    assert set_cookies(response) == []

    client.get("/write", query_string={"a": "1"})
    fresh = sid(client)
    assert fresh is not None and fresh != value
    assert store.load(value) is None, "the old id was not revived"


def test_a_session_deleted_during_the_request_is_not_resurrected(
    on_store: Instrumented,
) -> None:
    store = on_store.store
    app = make_app(store, TESTING=True)

    @app.get("/race")
    def race() -> Any:
        session["a"] = 2
        store.delete(session.sid)  # logged out by a concurrent request
        return jsonify(ok=True)

    client = app.test_client()
    client.get("/write", query_string={"a": "1"})
    key = sid(client)
    assert key is not None
    response = client.get("/race")
    assert response.status_code == 200
    assert store.load(key) is None, "the save did not re-create the record"
    assert set_cookies(response) == [], "the cookie is left alone"


def test_an_unreachable_store_fails_the_request_instead_of_emptying_the_session(
    tmp_path: Path,
) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    app = make_app(broken, TESTING=True)
    client = app.test_client()
    client.set_cookie("session", new_key())
    with pytest.raises(StoreUnavailable):
        client.get("/read")
    app.testing = False  # what a user sees: a 500, not a logged-out page
    assert client.get("/read").status_code == 500


# ------------------------------------------------------------------ expiry and cookies


def test_permanent_sessions_get_an_expiring_cookie_others_a_browser_session_one(
    app: Flask, on_store: Instrumented
) -> None:
    client = app.test_client()
    response = client.get("/write", query_string={"a": "1"})
    (header,) = set_cookies(response)
    assert "Expires" not in header, "not permanent: a browser-session cookie"
    key = sid(client)
    assert key is not None
    record = on_store.store.load(key)
    assert record is not None
    assert record.expires_at == pytest.approx(time.time() + LIFETIME, abs=5), (
        "the record still expires after PERMANENT_SESSION_LIFETIME"
    )

    response = client.get("/permanent", query_string={"on": "1"})
    (header,) = set_cookies(response)
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is not None
    assert cookie.expires.timestamp() == pytest.approx(time.time() + LIFETIME, abs=5)


def _age(store: Store, key: str, remaining: float) -> None:
    """Make the record look written LIFETIME - remaining seconds ago (no sleeping)."""
    record = store.load(key)
    assert record is not None
    record.expires_at = time.time() + remaining
    store.save(key, record, [])


@pytest.mark.parametrize(
    ("config", "remaining", "refreshed"),
    [
        ({}, LIFETIME * 0.95, False),  # 5 % of the lifetime passed: not due
        ({}, LIFETIME * 0.5, True),  # half of it passed: due (default 0.1)
        ({"CLOUDSESSIONS_REFRESH_AFTER": 0.6}, LIFETIME * 0.5, False),
        ({"SESSION_REFRESH_EACH_REQUEST": False}, LIFETIME * 0.01, False),
        ({"CLOUDSESSIONS_REFRESH_AFTER": 0}, LIFETIME - 1, True),  # Flask's every request
    ],
)
def test_a_read_only_request_refreshes_the_expiry_only_when_due(
    on_store: Instrumented, config: dict[str, Any], remaining: float, refreshed: bool
) -> None:
    store, trips = on_store.store, on_store.trips
    client = make_app(store, TESTING=True, **config).test_client()
    client.get("/write", query_string={"_permanent": "true", "a": "1"})
    key = sid(client)
    assert key is not None
    _age(store, key, remaining)

    trips.reset()
    response = client.get("/read")
    assert trips.counts == ((1, 1) if refreshed else (1, 0))
    assert len(set_cookies(response)) == (1 if refreshed else 0)
    record = store.load(key)
    assert record is not None
    expected = time.time() + (LIFETIME if refreshed else remaining)
    assert record.expires_at == pytest.approx(expected, abs=5)


def test_flask_cookie_settings_are_honoured(on_store: Instrumented) -> None:
    app = make_app(
        on_store.store,
        TESTING=True,
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_DOMAIN="example.test",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    response = app.test_client().get("/write", query_string={"a": "1"})
    (header,) = set_cookies(response)
    assert header.startswith("sid=")
    parts = {p.strip().split("=")[0].lower(): p for p in header.split(";")}
    assert parts["domain"].strip() == "Domain=example.test"
    assert parts["path"].strip() == "Path=/app"
    assert "secure" in parts and "samesite" in parts and "httponly" not in parts
    assert parts["samesite"].strip() == "SameSite=Strict"
    assert response.headers["Vary"] == "Cookie"


# ------------------------------------------------------------------ increment


def test_increment_creates_then_counts_in_place(app: Flask, on_store: Instrumented) -> None:
    trips = on_store.trips
    client = app.test_client()
    trips.reset()
    assert client.get("/count").json == {"views": 1}
    assert trips.counts == (0, 2), "a new session: create, then one increment"
    trips.reset()
    assert client.get("/count").json == {"views": 2}
    assert trips.counts == (1, 1), "load + one increment; nothing else to save"
    client.get("/write", query_string={"views": "10"})  # a plain integer becomes the base
    assert client.get("/count").json == {"views": 11}
    assert client.get("/read").json["data"] == {"views": 11}


def test_concurrent_increments_of_one_session_lose_no_count(app: Flask) -> None:
    first = app.test_client()
    assert first.get("/count").json == {"views": 1}
    key = sid(first)
    assert key is not None
    per_thread, threads = 5, 8

    def visit() -> None:
        client = app.test_client()  # one browser, many tabs: the same cookie
        client.set_cookie("session", key)
        for _ in range(per_thread):
            assert client.get("/count").status_code == 200

    workers = [threading.Thread(target=visit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert first.get("/read").json["data"]["views"] == 1 + per_thread * threads


# ------------------------------------------------------------------ configuration


def test_settings_are_checked_at_init_app(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigurationError, match="CLOUDSESSIONS_STOR"):
        make_app(url, CLOUDSESSIONS_STOR="oops")
    with pytest.raises(ConfigurationError, match="CLOUDSESSIONS_REFRESH_AFTER"):
        make_app(url, CLOUDSESSIONS_REFRESH_AFTER=2)
    with pytest.raises(ConfigurationError, match="CLOUDSESSIONS_STORE"):
        make_app(42)  # type: ignore[arg-type]


def test_the_store_is_created_lazily_once_per_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lazy.db'}"
    extension = CloudSessions()
    apps = [Flask("one"), Flask("two")]
    for app in apps:
        app.config["CLOUDSESSIONS_STORE"] = url
        extension.init_app(app)
    assert not (tmp_path / "lazy.db").exists(), "init_app touched nothing"
    store = CloudSessions.get_store(apps[0])
    assert store is CloudSessions.get_store(apps[1]), "one store per configuration"


# ------------------------------------------------------------------ a real WSGI server


class Browser:
    """urllib with a real cookie jar, as a browser keeps cookies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> Any:
        with self.opener.open(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def cookie(self) -> str | None:
        return next((c.value for c in self.jar if c.name == "session"), None)


@pytest.fixture
def gunicorn(store_name: str, tmp_path: Path) -> Iterator[tuple[str, Store]]:
    url = stores.store_url(store_name, tmp_path)
    store = open_store(url)
    store.provision()
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "3",
        "--threads",
        "4",
        "--bind",
        f"127.0.0.1:{port}",
        "tests.test_flask:server_app()",
    ]
    env = {**os.environ, "CLOUDSESSIONS_TEST_URL": url}
    root = Path(__file__).resolve().parents[1]
    with run_server("gunicorn", argv, port, cwd=root, env=env, timeout=60):
        yield f"http://127.0.0.1:{port}", store
    store.close()


def test_sessions_through_gunicorn_with_a_cookie_jar(gunicorn: tuple[str, Store]) -> None:
    base, store = gunicorn
    alice, bob = Browser(base), Browser(base)
    assert alice.get("/read") == {"data": {}, "sid": None}
    assert alice.cookie() is None
    alice.get("/write?cart=%22apples%22")
    first = alice.cookie()
    assert first is not None
    # Three worker processes share the session through the store.
    for _ in range(6):
        assert alice.get("/read") == {"data": {"cart": "apples"}, "sid": first}
    assert bob.get("/read")["data"] == {}
    alice.get("/login?user=ada")
    second = alice.cookie()
    assert second not in (None, first) and store.load(first) is None
    assert alice.get("/read")["data"] == {"cart": "apples", "_user_id": "ada"}
    alice.get("/logout")
    assert alice.cookie() is None and second is not None and store.load(second) is None


def test_concurrent_increments_through_gunicorn_lose_no_count(
    gunicorn: tuple[str, Store],
) -> None:
    base, _ = gunicorn
    browser = Browser(base)
    assert browser.get("/count") == {"views": 1}
    requests = 20
    barrier = threading.Barrier(requests)
    errors: list[BaseException] = []

    def visit() -> None:
        try:
            barrier.wait(timeout=30)  # all at once, from one visitor's cookie jar
            browser.get("/count")
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)

    workers = [threading.Thread(target=visit) for _ in range(requests)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert browser.get("/read")["data"]["views"] == 1 + requests
