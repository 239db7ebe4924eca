"""Switching a live site to cloudsessions logs nobody out: end to end, with real servers and
real browsers (issue 14's "done when").

Each scenario serves a site (tests/migration_sites.py) on its OLD session backend in server
processes of their own (gunicorn; uvicorn for Starlette). Three headless Chromiums
(tests/browsers.py, profiles of their own, shared by the scenarios) sign in through the
site's form: ada and bob stay signed in, carol signs out again. dave signs in through a
plain HTTP client and is not seen again until after the bulk copy. Then the old server
stops and the same site starts on cloudsessions with the read-through from that backend.
Each browser's next request is still signed in as the same user, with its visits counted
on, and carries a cloudsessions id from then on: migrated_id(its old cookie). carol stays
signed out (on the server-side backends, even a copy of her cookie from before her sign-out
copies nothing). Where the old backend can be listed, the bulk copy (`python -m django
cloudsessions migrate`, `cloudsessions migrate --from URL`) copies the rest and its count
check is what the test seeded; dave's next request is then signed in too.

Backends and stores: Django's db engine (a file SQLite database) to DynamoDB and to Redis;
Django's cache engine (RedisCache on the test redis-server) to DynamoDB; Flask's signed
cookie to DynamoDB; Flask-Session 0.8's Redis to DynamoDB; Starlette's signed cookie to
Redis. DynamoDB Local and redis-server are the suites' own (tests/backends): a server that
cannot start fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cloudsessions import Store, open_store, record_id
from cloudsessions.migration import migrated_id
from tests import stores
from tests.browsers import chromium
from tests.migration_sites import USERS, flask_session_url, site_env
from tests.real_servers import Browser, app_server

pytestmark = pytest.mark.browser  # on the first Python only: see scripts/test

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30  # seconds at most for the page a click leads to
BROWSERS = ("ada", "bob", "carol")  # carol signs out before the switch
STAYING = ("ada", "bob")
DJANGO_IDS = {name: str(pk) for pk, name in enumerate(USERS, start=1)}  # the users' pks
DJANGO_SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.migration_site_settings"}
DB_ENGINE = "django.contrib.sessions.backends.db"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, webdriver.Chrome]]:
    """One Chromium per user, each with a profile of its own, for every scenario."""
    with chromium(tmp_path_factory.mktemp("chromium")) as start:
        yield {name: start() for name in BROWSERS}


@pytest.fixture(scope="module")
def django_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Django's tables and the users, made once (by Django, in a process of its own);
    each Django scenario serves a copy."""
    path = tmp_path_factory.mktemp("django") / "site.sqlite3"
    make = "from tests.migration_sites import make_django_database; make_django_database()"
    env = {**os.environ, **DJANGO_SETTINGS, **site_env(database=str(path))}
    subprocess.run([sys.executable, "-c", make], cwd=ROOT, env=env, check=True, timeout=120)
    return path


@pytest.fixture
def redis_url() -> str:
    """redis://127.0.0.1:PORT, the test redis-server (the old backend's)."""
    return str(stores.backend("redis").server_url(stores.services()))


@contextlib.contextmanager
def fresh_store(kind: str, folder: Path) -> Iterator[tuple[str, Store]]:
    """A fresh, provisioned store of `kind` ("dynamodb", "redis"): its URL, and the store
    opened here to look at what the site wrote."""
    url = stores.store_url(kind, folder)
    store = open_store(url)
    try:
        yield url, store
    finally:
        store.drop()
        store.close()


# ------------------------------------------------------------------ the site's pages


def shown(page: str) -> tuple[str | None, int]:
    """Who the home page says is signed in (None: nobody), and its visit count."""
    user = re.search(r'<b id="user">([^<]+)</b>', page)
    visits = re.search(r'<b id="visits">(\d+)</b>', page)
    assert visits is not None, page
    if user is None:
        assert 'id="anonymous"' in page, page
    return (user.group(1) if user else None), int(visits.group(1))


def sign_in(browser: webdriver.Chrome, base: str, name: str) -> None:
    """Through the form, as a person does: a first visit, then the sign-in."""
    browser.get(base + "/")
    assert shown(browser.page_source) == (None, 1)
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(USERS[name])
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "user"))
    assert shown(browser.page_source) == (name, 2)


def sign_out(browser: webdriver.Chrome) -> None:
    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "anonymous"))
    assert shown(browser.page_source) == (None, 1), "a new, anonymous session"


def cookie_of(browser: webdriver.Chrome, name: str) -> str:
    cookie = browser.get_cookie(name)
    assert cookie is not None, f"no {name} cookie"
    return str(cookie["value"])


def http_sign_in(base: str, cookie_name: str, name: str) -> Browser:
    """Sign in through the form with a plain HTTP client (urllib and a cookie jar)."""
    client = Browser(base, cookie_name)
    page = client.get("/")
    fields = {"username": name, "password": USERS[name]}
    if "csrfmiddlewaretoken" in page:
        page = client.post("/login/", page, **fields)
    else:
        body = urllib.parse.urlencode(fields).encode()
        with client.opener.open(base + "/login/", body, timeout=30) as response:
            page = response.read().decode()
    assert shown(page) == (name, 2)
    return client


def old_keys(redis_url: str, prefix: str) -> list[bytes]:
    """The old backend's keys on the test Redis."""
    import redis

    with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
        return list(client.scan_iter(match=prefix + "*"))


def with_cookie(base: str, cookie_name: str, value: str) -> str:
    """The home page for a request carrying only this session cookie."""
    request = urllib.request.Request(base + "/", headers={"Cookie": f"{cookie_name}={value}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


# ------------------------------------------------------------------ one switch


@dataclass
class Site:
    """A site to switch: the app factory (tests/migration_sites.py), how it is served
    before and after, its session cookie, the user ids its sessions record."""

    factory: str
    old: dict[str, str]  # the environment of the old site
    new: dict[str, str]  # the environment of the site on cloudsessions
    cookie: str
    user_ids: dict[str, str] = field(default_factory=lambda: {n: n for n in USERS})
    asgi: bool = False
    # The old sessions live on the server: a copy of carol's cookie from before her
    # sign-out names nothing (a signed cookie stays valid until its max age: not checked).
    server_side: bool = False


@dataclass
class Switched:
    """What a switch leaves for the bulk copy: the new site, the HTTP clients not seen since
    they signed in, and their old cookies."""

    base: str
    clients: dict[str, Browser]
    old_cookies: dict[str, str]


@contextlib.contextmanager
def switch(
    site: Site,
    browsers: dict[str, webdriver.Chrome],
    store: Store,
    clients: tuple[str, ...] = ("dave",),
) -> Iterator[Switched]:
    """Sign everyone in on the old site, stop it, start the new one: every browser's next
    request is checked there. Yields while the new site runs."""
    for browser in browsers.values():
        browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # the last scenario's
    with app_server(site.factory, asgi=site.asgi, env=site.old) as base:
        for name in STAYING:
            sign_in(browsers[name], base, name)
        carol = browsers["carol"]
        sign_in(carol, base, "carol")
        signed_out = cookie_of(carol, site.cookie)  # her cookie while she was signed in
        sign_out(carol)
        http = {name: http_sign_in(base, site.cookie, name) for name in clients}
        old = {name: cookie_of(browsers[name], site.cookie) for name in BROWSERS}
        old.update({name: str(client.cookie()) for name, client in http.items()})
    assert len(set(old.values())) == len(old), "a session each"

    with app_server(site.factory, asgi=site.asgi, env=site.new) as base:
        for name in STAYING:  # signed in as before, a visit later, now on a copy of ours
            browser = browsers[name]
            browser.get(base + "/")
            assert shown(browser.page_source) == (name, 3)
            assert cookie_of(browser, site.cookie) == migrated_id(old[name])
            browser.refresh()
            assert shown(browser.page_source) == (name, 4)
            assert cookie_of(browser, site.cookie) == migrated_id(old[name])
            sessions = store.for_user(site.user_ids[name])
            assert [s.record_id for s in sessions] == [record_id(migrated_id(old[name]))]

        carol.get(base + "/")  # her anonymous session moved too, and stays anonymous
        assert shown(carol.page_source) == (None, 2)
        assert cookie_of(carol, site.cookie) == migrated_id(old["carol"])
        assert store.for_user(site.user_ids["carol"]) == []
        if site.server_side:
            assert shown(with_cookie(base, site.cookie, signed_out)) == (None, 1)
            assert store.load(migrated_id(signed_out)) is None
            assert store.for_user(site.user_ids["carol"]) == []

        for name in clients:  # not seen since: nothing copied yet
            assert store.load(migrated_id(old[name])) is None
            http[name].base = base
        yield Switched(base, http, old)


def comes_back(switched: Switched, store: Store, site: Site, name: str) -> None:
    """An HTTP client not seen since the switch: signed in, on our id from then on."""
    client = switched.clients[name]
    assert shown(client.get("/")) == (name, 3)
    new_id = migrated_id(switched.old_cookies[name])
    assert client.cookie() == new_id
    assert [s.record_id for s in store.for_user(site.user_ids[name])] == [record_id(new_id)]


def bulk_copied(switched: Switched, store: Store, site: Site, name: str) -> None:
    """The bulk copy moved this client's session: our record, with its user and data."""
    record = store.load(migrated_id(switched.old_cookies[name]))
    assert record is not None
    assert record.user_id == site.user_ids[name]
    assert record.data["visits"] == 2


def run(argv: list[str], env: dict[str, str]) -> list[str]:
    """A command of the site's (its output lines), from the repository's root."""
    done = subprocess.run(
        argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def counts(read: int, copied: int, already: int, skipped: dict[str, int]) -> list[str]:
    """The count check's lines: read, copied, already, skipped (by reason), failed."""
    lines = [
        f"read     {read}",
        f"copied   {copied}",
        f"already  {already} (copied before: an earlier run or the read-through)",
        f"skipped  {sum(skipped.values())}",
        *(f"  {n:>7}  {reason}" for reason, n in skipped.items()),
        "failed   0",
    ]
    return lines


def check_line(read: int, copied: int, already: int, skipped: int) -> str:
    return (
        f"check    ok: {read} read = {copied} copied + {already} already + {skipped}"
        " skipped + 0 failed"
    )


# ------------------------------------------------------------------ Django


def django_site(old: str, store_url: str, **site: str) -> Site:
    return Site(
        "tests.migration_sites:django_app",
        {**DJANGO_SETTINGS, **site_env(phase="old", old=old, **site)},
        {**DJANGO_SETTINGS, **site_env(phase="new", old=old, store=store_url, **site)},
        "sessionid",
        DJANGO_IDS,
        server_side=True,
    )


@pytest.mark.parametrize("store_kind", ["dynamodb", "redis"])
def test_a_django_site_on_the_db_engine(
    store_kind: str,
    browsers: dict[str, webdriver.Chrome],
    django_database: Path,
    tmp_path: Path,
) -> None:
    database = tmp_path / "site.sqlite3"
    shutil.copy(django_database, database)
    with fresh_store(store_kind, tmp_path) as (url, store):
        site = django_site("db", url, database=str(database))
        with switch(site, browsers, store, clients=("dave", "eve")) as switched:
            # eve's session expires before anyone copies it.
            eve = switched.old_cookies["eve"]
            with contextlib.closing(sqlite3.connect(database)) as db, db:
                expired = "UPDATE django_session SET expire_date = ? WHERE session_key = ?"
                db.execute(expired, ("2000-01-01 00:00:00", eve))
            checkpoint = tmp_path / "copy.json"
            command = [sys.executable, "-m", "django", "cloudsessions", "migrate"]
            out = run([*command, "--checkpoint", str(checkpoint)], site.new)
            assert out[1:] == [
                f"from: {DB_ENGINE}",
                f"checkpoint: {checkpoint}",
                *counts(read=2, copied=1, already=0, skipped={"expired": 1}),
                "old records deleted: 1",
                check_line(2, 1, 0, 1),
            ]
            bulk_copied(switched, store, site, "dave")
            assert store.load(migrated_id(eve)) is None
            with contextlib.closing(sqlite3.connect(database)) as db:
                left = db.execute("SELECT session_key FROM django_session").fetchall()
            assert left == [(eve,)], "the copied rows went; the expired one is not ours"
            comes_back(switched, store, site, "dave")


def test_a_django_site_on_the_cache_engine_over_redis(
    browsers: dict[str, webdriver.Chrome],
    django_database: Path,
    redis_url: str,
    tmp_path: Path,
) -> None:
    database = tmp_path / "site.sqlite3"
    shutil.copy(django_database, database)
    prefix = stores.unique_name("django-cache")
    with fresh_store("dynamodb", tmp_path) as (url, store):
        site = django_site("cache", url, database=str(database), redis=redis_url, prefix=prefix)
        with switch(site, browsers, store) as switched:
            # The browsers' old entries went as the read-through copied them; Django's cache
            # engine cannot list its sessions (no bulk copy): dave's is copied by the
            # read-through at his next request.
            assert len(old_keys(redis_url, f"{prefix}:")) == 1
            comes_back(switched, store, site, "dave")
            assert old_keys(redis_url, f"{prefix}:") == []


# ------------------------------------------------------------------ Flask


def flask_site(old: str, store_url: str, **site: str) -> Site:
    return Site(
        "tests.migration_sites:flask_app",
        site_env(phase="old", old=old, **site),
        site_env(phase="new", old=old, store=store_url, **site),
        "session",
        server_side=old != "cookie",
    )


def test_a_flask_site_on_its_signed_cookie(
    browsers: dict[str, webdriver.Chrome], tmp_path: Path
) -> None:
    with fresh_store("dynamodb", tmp_path) as (url, store):
        site = flask_site("cookie", url)
        with switch(site, browsers, store) as switched:
            # The sessions live in the browsers: each moves at its next request.
            comes_back(switched, store, site, "dave")


def test_a_flask_site_on_flask_session_redis(
    browsers: dict[str, webdriver.Chrome], redis_url: str, tmp_path: Path
) -> None:
    prefix = stores.unique_name("flask-session") + ":"
    with fresh_store("dynamodb", tmp_path) as (url, store):
        site = flask_site("flask-session", url, redis=redis_url, prefix=prefix)
        with switch(site, browsers, store) as switched:
            source = flask_session_url(redis_url, prefix)
            checkpoint = tmp_path / "copy.json"
            command = [sys.executable, "-m", "cloudsessions.cli", "migrate", "--from", source]
            out = run([*command, "--store", url, "--checkpoint", str(checkpoint)], {})
            # The read-through kept the old records (keep_old): the browsers' three are
            # found copied already, dave's is copied.
            assert out[1].startswith("from: Flask-Session's Redis")
            assert out[2:] == [
                f"checkpoint: {checkpoint}",
                *counts(read=4, copied=1, already=3, skipped={}),
                check_line(4, 1, 3, 0),
            ]
            bulk_copied(switched, store, site, "dave")
            comes_back(switched, store, site, "dave")
            assert len(old_keys(redis_url, prefix)) == 4, "kept: rolling back stays possible"


# ------------------------------------------------------------------ Starlette


def test_a_starlette_site_on_its_signed_cookie(
    browsers: dict[str, webdriver.Chrome], tmp_path: Path
) -> None:
    with fresh_store("redis", tmp_path) as (url, store):
        site = Site(
            "tests.migration_sites:starlette_app",
            site_env(phase="old", old="cookie"),
            site_env(phase="new", old="cookie", store=url),
            "session",
            asgi=True,
        )
        with switch(site, browsers, store) as switched:
            comes_back(switched, store, site, "dave")
