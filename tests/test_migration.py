"""Switching to cloudsessions without logging anyone out (cloudsessions.migration): the
read-through from the previous backend, on every store, through each front door with the
previous backend's real storage."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import flask
import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoDbSession
from django.contrib.sessions.models import Session as DjangoSessionRow
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from itsdangerous import TimestampSigner
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
from cloudsessions.migration.cookies import StarletteCookieSource
from tests.front_doors import AsgiDoor, DjangoDoor, FlaskDoor, asgi_app, flask_app, open_door
from tests.stores import Instrumented

DB_ENGINE = "django.contrib.sessions.backends.db"


OLD_SITE = "old_site"  # the database alias of the site's previous session table


class OldSiteRouter:
    """Django's Session model on the old site's database, everything else as it was."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return OLD_SITE if model is DjangoSessionRow else None

    db_for_write = db_for_read


@pytest.fixture(scope="module")
def django_session_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Django's own session table in a database of its own: an SQLite file (the test
    settings' database is ":memory:", one per connection, and some tests read the old
    sessions from several threads), reached through a router, so that nothing else of the
    test process's database changes."""
    path = tmp_path_factory.mktemp("old-site") / "old-site.sqlite3"
    connections.settings[OLD_SITE] = {**connections.settings["default"], "NAME": str(path)}
    routed = override_settings(DATABASE_ROUTERS=[OldSiteRouter()])
    routed.enable()
    try:
        with connections[OLD_SITE].schema_editor() as editor:
            editor.create_model(DjangoSessionRow)
        yield
    finally:
        routed.disable()
        connections[OLD_SITE].close()
        del connections.settings[OLD_SITE]


@pytest.fixture(autouse=True)
def no_old_sessions(request: pytest.FixtureRequest) -> None:
    if "django_session_table" in request.fixturenames:
        DjangoSessionRow.objects.all().delete()


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
    on_store: Instrumented,
) -> None:
    """Eight tabs of one browser make their first request at once with one old cookie (a
    Starlette-signed one: its source needs no database, so the tabs run in threads)."""
    store = on_store.store
    data = {"_auth_user_id": "9", "cart": "1 fig"}
    old_key = TimestampSigner("old").sign(b64encode(json.dumps(data).encode())).decode()
    source = StarletteCookieSource("old")
    tabs = [DjangoDoor(store) for _ in range(8)]
    for tab in tabs:
        tab.plant(old_key)
    start = threading.Barrier(len(tabs), timeout=30)
    answers: list[Any] = []

    def visit(tab: DjangoDoor) -> None:
        start.wait()
        answers.append(tab.get("/read").json["data"])

    with override_settings(CLOUDSESSIONS={"STORE": store, "MIGRATE_FROM": source}):
        workers = [threading.Thread(target=visit, args=(tab,)) for tab in tabs]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert answers == [data] * len(tabs)
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


# ------------------------------------------------------------- the bulk copy


def seed_django_sessions(live: int, expired: int, broken: int) -> list[str]:
    """Rows of Django's session table: `live` sessions (every other one signed in),
    `expired` ones and `broken` ones (data Django cannot decode). Returns the live keys."""
    encoder = DjangoDbSession()
    future = timezone.now() + timedelta(days=3)
    rows, keys = [], []
    for n in range(live + expired + broken):
        key = f"{n:06d}" + "k" * 26
        data = {"n": n, **({"_auth_user_id": str(n % 7)} if n % 2 else {})}
        text = encoder.encode(data) if n < live + expired else "not:django:data"
        expires = future if n < live or n >= live + expired else timezone.now() - timedelta(1)
        rows.append(DjangoSessionRow(session_key=key, session_data=text, expire_date=expires))
        if n < live:
            keys.append(key)
    DjangoSessionRow.objects.all().delete()
    DjangoSessionRow.objects.bulk_create(rows)
    return keys


def migrate(*args: str) -> tuple[int, list[str]]:
    out = StringIO()
    try:
        call_command("cloudsessions", "migrate", *args, stdout=out, stderr=StringIO())
        status = 0
    except CommandError as failed:
        status = failed.returncode
    return status, out.getvalue().splitlines()


def test_the_bulk_copy_moves_every_live_session_once_and_counts_the_rest(
    django_session_table: None, on_store: Instrumented, tmp_path: Path
) -> None:
    store = on_store.store
    keys = seed_django_sessions(live=250, expired=30, broken=20)
    checkpoint = str(tmp_path / "copy.json")
    with switched(store):
        status, out = migrate("--from", DB_ENGINE, "--batch-size", "64", "--checkpoint", checkpoint)
    assert status == 0, out
    assert out[1:] == [
        f"from: {DB_ENGINE}",
        f"checkpoint: {checkpoint}",
        "read     300",
        "copied   250",
        "already  0 (copied before: an earlier run or the read-through)",
        "skipped  50",
        "       30  expired",
        "       20  undecodable or empty",
        "failed   0",
        "old records deleted: 250",
        "check    ok: 300 read = 250 copied + 0 already + 50 skipped + 0 failed",
    ]
    for key in keys[::25]:
        record = store.load(migrated_id(key))
        assert record is not None and record.data["n"] == int(key[:6])
    assert len(store.for_user("3")) == len(
        [k for k in keys if int(k[:6]) % 7 == 3 and int(k[:6]) % 2]
    )
    assert DjangoSessionRow.objects.count() == 50, "the copied old rows are gone"

    # Run twice: nothing is copied twice (the copied rows are gone; the rest are skipped).
    with switched(store):
        status, out = migrate("--from", DB_ENGINE, "--checkpoint", checkpoint)
    assert out[2] == f"checkpoint: {checkpoint} (an earlier run finished: starting over)"
    assert out[-1] == "check    ok: 50 read = 0 copied + 0 already + 50 skipped + 0 failed"

    # A browser still holding its old cookie is served the copy (the read-through finds it).
    browser = DjangoDoor(store)
    browser.plant(keys[7])
    with switched(store):
        assert browser.get("/read").json["data"]["n"] == 7
    assert browser.sid == migrated_id(keys[7])


def test_a_dry_run_writes_nothing_and_a_kept_copy_counts_as_already_copied(
    django_session_table: None, on_store: Instrumented, tmp_path: Path
) -> None:
    store = on_store.store
    keys = seed_django_sessions(live=40, expired=0, broken=0)
    with switched(store):
        status, out = migrate("--from", DB_ENGINE, "--dry-run")
        assert out[1] == f"from: {DB_ENGINE} (dry run: nothing is written)"
        assert out[-1] == "check    ok: 40 read = 40 copied + 0 already + 0 skipped + 0 failed"
        assert store.load(migrated_id(keys[0])) is None and DjangoSessionRow.objects.count() == 40
        assert not (Path.cwd() / "cloudsessions-migrate.json").exists()

        # The read-through moved one before the bulk copy ran: counted, not copied again.
        browser = DjangoDoor(store)
        browser.plant(keys[0])
        browser.get("/read")
        checkpoint = str(tmp_path / "kept.json")
        status, out = migrate("--from", DB_ENGINE, "--keep-old", "--checkpoint", checkpoint)
    assert status == 0
    assert out[-1] == "check    ok: 39 read = 39 copied + 0 already + 0 skipped + 0 failed"
    assert DjangoSessionRow.objects.count() == 39, "kept (the read-through deleted its own)"
    with switched(store):
        status, out = migrate("--from", DB_ENGINE, "--checkpoint", checkpoint)
    assert out[-1] == "check    ok: 39 read = 0 copied + 39 already + 0 skipped + 0 failed"
    assert DjangoSessionRow.objects.count() == 0


def test_a_backend_that_cannot_be_listed_is_a_one_line_error(on_store: Instrumented) -> None:
    err = StringIO()
    cache_engine = "django.contrib.sessions.backends.cache"
    with switched(on_store.store, MIGRATE_FROM=cache_engine), pytest.raises(CommandError) as failed:
        call_command("cloudsessions", "migrate", "--dry-run", stdout=StringIO(), stderr=err)
    assert failed.value.returncode == 2
    assert err.getvalue().splitlines() == [
        f"error: {cache_engine} cannot be copied in bulk: {cache_engine} cannot list its"
        " sessions; the read-through copies each at its next request. Nothing was copied;"
        " keep MIGRATE_FROM on until the old sessions' lifetime has passed"
    ]


def test_no_previous_backend_is_a_one_line_error(on_store: Instrumented) -> None:
    err = StringIO()
    no_source = override_settings(CLOUDSESSIONS={"STORE": on_store.store})
    with no_source, pytest.raises(CommandError) as failed:
        call_command("cloudsessions", "migrate", stdout=StringIO(), stderr=err)
    assert failed.value.returncode == 2
    assert err.getvalue().startswith("error: migrate needs --from, or settings.CLOUDSESSIONS")


def test_a_bulk_copy_killed_halfway_resumes_and_copies_each_session_once(tmp_path: Path) -> None:
    """A real manage.py process, killed (SIGKILL) after a few batches, then run again."""
    sessions = 12_000
    (tmp_path / "site_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "not-secret"
            USE_TZ = True
            INSTALLED_APPS = ["django.contrib.sessions", "cloudsessions.django"]
            DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                      "NAME": {str(tmp_path / "old.sqlite3")!r}}}}}
            SESSION_ENGINE = "cloudsessions.django"
            CLOUDSESSIONS = {{"STORE": "sqlite:///{tmp_path / "new.sqlite3"}",
                             "MIGRATE_FROM": "{DB_ENGINE}"}}
            """
        )
    )
    seed = textwrap.dedent(
        f"""
        import django
        django.setup()
        from datetime import timedelta
        from django.core.management import call_command
        from django.utils import timezone
        from django.contrib.sessions.backends.db import SessionStore
        from django.contrib.sessions.models import Session
        call_command("migrate", verbosity=0)
        text = SessionStore().encode({{"_auth_user_id": "1", "cart": "3 apples"}})
        expires = timezone.now() + timedelta(days=1)
        Session.objects.bulk_create(
            Session(session_key=f"{{n:032d}}", session_data=text, expire_date=expires)
            for n in range({sessions})
        )
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "site_settings", "PYTHONPATH": str(tmp_path)}
    subprocess.run([sys.executable, "-c", seed], env=env, check=True, timeout=120)
    command = [sys.executable, "-m", "django", "cloudsessions", "migrate", "--batch-size", "100"]
    checkpoint = tmp_path / "cloudsessions-migrate.json"

    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                if json.loads(checkpoint.read_text())["tally"]["read"] >= 1000:
                    break
            time.sleep(0.01)  # polling the checkpoint file, not waiting for luck
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, "killed mid-run, not finished"
    halfway = json.loads(checkpoint.read_text())
    assert not halfway["done"] and 1000 <= halfway["tally"]["read"] < sessions

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[2] == (
        f"checkpoint: cloudsessions-migrate.json (resuming after {halfway['tally']['read']}"
        " session(s))"
    )
    assert lines[-1].startswith("check    ok:")
    with contextlib.closing(sqlite3.connect(tmp_path / "new.sqlite3")) as new:
        assert new.execute("SELECT count(*) FROM cloudsessions").fetchone() == (sessions,)
        assert new.execute("SELECT count(DISTINCT id) FROM cloudsessions").fetchone() == (sessions,)
    with contextlib.closing(sqlite3.connect(tmp_path / "old.sqlite3")) as old:
        assert old.execute("SELECT count(*) FROM django_session").fetchone() == (0,)


@pytest.mark.parametrize("door_name", ["django", "flask", "asgi"])
def test_an_old_cookie_of_another_name_is_read_once_then_deleted(
    door_name: str, on_store: Instrumented
) -> None:
    """A previous backend whose cookie has a name of its own (Google's Firestore tutorial's
    "session_id", say): read when the browser has no cookie of ours, deleted by the
    response that moves the session, so it is never looked up again."""
    secret, data = "old secret", {"_auth_user_id": "21", "_user_id": "21", "cart": "2 kiwis"}
    payload = b64encode(json.dumps(data).encode())
    old = TimestampSigner(secret).sign(payload).decode()
    source = StarletteCookieSource(secret, cookie_name="legacy")
    with open_door(door_name, on_store.store, migrate_from=source) as browser:
        browser.plant(old, "legacy")
        answer = browser.get("/read")
        assert answer.json["data"] == data
        assert browser.sid == migrated_id(old)
        deleted = [c for c in answer.cookies if c.startswith("legacy=")]
        assert len(deleted) == 1 and "01 jan 1970" in deleted[0].lower(), answer.cookies
        again = browser.get("/read")
        assert again.json["data"] == data
        assert not any(c.startswith("legacy=") for c in again.cookies)


ENGINES = [
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.file",
    "django.contrib.sessions.backends.signed_cookies",
]


@pytest.mark.parametrize("engine", ENGINES, ids=lambda path: path.rsplit(".", 1)[1])
def test_every_django_engine_is_read_through_djangos_own_api(
    engine: str, django_session_table: None, on_store: Instrumented, tmp_path: Path
) -> None:
    """Each of Django's engines, with its own storage (the database, Django's cache, files,
    the cookie itself), written by Django: a signed-in session survives the switch with its
    expiry; one logged out before it stays out."""
    store_class = importlib.import_module(engine).SessionStore
    with override_settings(SESSION_FILE_PATH=str(tmp_path), SESSION_COOKIE_AGE=7200):
        old = store_class()
        old.update({"_auth_user_id": "31", "cart": "4 limes"})
        old.save()
        key = old.session_key
        assert key is not None
        browser = DjangoDoor(on_store.store)
        browser.plant(key)
        with switched(on_store.store, MIGRATE_FROM=engine):
            assert browser.get("/read").json["data"] == {"_auth_user_id": "31", "cart": "4 limes"}
        assert browser.sid == migrated_id(key)
        record = on_store.store.load(migrated_id(key))
        assert record is not None and record.user_id == "31"
        assert record.expires_at == pytest.approx(time.time() + 7200, abs=60)
        if engine.endswith("signed_cookies"):
            return  # a signed cookie has no record to delete or to log out
        assert not store_class().exists(key), "the old record was deleted"
        gone = store_class()
        gone.update({"_auth_user_id": "32"})
        gone.save()
        gone_key = gone.session_key
        assert gone_key is not None
        gone.delete()  # logged out before the switch
        stranger = DjangoDoor(on_store.store)
        stranger.plant(gone_key)
        with switched(on_store.store, MIGRATE_FROM=engine):
            assert stranger.get("/read").json["data"] == {}
        assert on_store.store.for_user("32") == []
