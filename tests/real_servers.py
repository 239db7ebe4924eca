"""Real servers in processes of their own, and a browser with a real cookie jar for them.

Two kinds are served: the front doors' app (tests/front_doors.py) behind a production server
with several worker processes on one store (`front_door_server`), and the tutorial demo as
`cloudsessions demo --framework X` serves it (`demo_server`, read with `views_and_greeting`
and `fingerprint`). Any other app a test module defines is served by `app_server` (gunicorn or
uvicorn on an app factory).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
from starlette.applications import Starlette

from cloudsessions import Store, open_store
from tests import front_doors, stores
from tests.services._process import free_port, run_server

GUNICORN = ["gunicorn", "--workers", "3", "--threads", "4", "--bind", "127.0.0.1:{port}"]
UVICORN = ["uvicorn", "--factory", "--workers", "2", "--host", "127.0.0.1", "--port", "{port}"]
# Each door's server command (`python -m` it, with {port}) serving the app of a factory
# below, and the door whose names (cookie, user key) it uses.
SERVED: dict[str, tuple[list[str], type[front_doors.Door]]] = {
    "django": ([*GUNICORN, "tests.real_servers:django_server_app()"], front_doors.DjangoDoor),
    "flask": ([*GUNICORN, "tests.real_servers:flask_server_app()"], front_doors.FlaskDoor),
    "asgi": ([*UVICORN, "tests.real_servers:asgi_server_app"], front_doors.AsgiDoor),
}
DEMO_FRAMEWORKS = ["django", "flask", "asgi"]


class Browser:
    """urllib with a real cookie jar, as a browser keeps cookies."""

    def __init__(self, base: str, cookie_name: str = "session") -> None:
        self.base, self.cookie_name = base, cookie_name
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str = "/") -> str:
        return self._open(self.base + path)

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def post(self, path: str, page: str, **fields: str) -> str:
        """Submit a form of `page` to `path`, with the page's CSRF token."""
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields})
        headers = {"Referer": self.base + "/"}
        return self._open(urllib.request.Request(self.base + path, body.encode(), headers))

    def cookie(self) -> str | None:
        """The value of the session cookie, if the browser has one."""
        return next((c.value for c in self.jar if c.name == self.cookie_name), None)

    def _open(self, request: str | urllib.request.Request) -> str:
        with self.opener.open(request, timeout=30) as response:
            return str(response.read().decode())


@contextlib.contextmanager
def _serving(name: str, argv: list[str], cwd: Path, env: Mapping[str, str]) -> Iterator[str]:
    """Run `python -m argv` ({port} filled in) until the with-block ends; yield its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", *(arg.format(port=port) for arg in argv)]
    with run_server(name, argv, port, cwd=cwd, env={**os.environ, **env}, timeout=60):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def app_server(
    factory: str, *, asgi: bool = False, workers: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The app `factory` ("module:function", a function of no arguments returning the app)
    makes, served by gunicorn (WSGI) or uvicorn (`asgi`) with `workers` worker processes,
    from the repository's root with `env` added to ours, until the with-block ends (then
    stopped: SIGTERM to its process group). Yields its base URL.

    gunicorn's workers are given a second to stop, not 30: a connection a browser opened
    ahead of need (Chromium does) would hold each one up until the kill (uvicorn closes
    idle connections when it stops)."""
    server = UVICORN if asgi else [*GUNICORN, "--graceful-timeout", "1"]
    argv = [*server, factory if asgi else f"{factory}()"]
    at = argv.index("--workers") + 1
    argv[at] = str(workers)
    name = f"{factory.rpartition(':')[2]}-{argv[0]}"
    with _serving(name, argv, Path(__file__).parents[1], env or {}) as base:
        yield base


# ------------------------------------------------------------------ the front doors' app


@dataclass
class FrontDoorServer:
    base: str
    store: Store  # the store itself, without the served app's cache in front
    door: type[front_doors.Door]  # its names: cookie_name, user_key
    url: str = ""  # the store's URL, to serve another server on the same store

    def browser(self) -> Browser:
        return Browser(self.base, self.door.cookie_name)


@contextlib.contextmanager
def front_door_server(
    door: str,
    store_name: str,
    folder: Path,
    *,
    url: str | None = None,
    cache: Mapping[str, Any] | str | None = None,
    workers: int | None = None,
) -> Iterator[FrontDoorServer]:
    """The front doors' app of `door` served by its real server (SERVED) on a fresh store.

    url: serve that store instead, provisioned already (another server's, so that two
    share it; store_name and folder are then unused). cache: the served app's CACHE
    setting (each door's own spelling of it). workers: how many worker processes instead
    of SERVED's (1: one process, so one process-local cache tier).
    """
    fresh = url is None
    url = stores.store_url(store_name, folder) if url is None else url
    store = open_store(url)
    if fresh:
        store.provision()
    argv, names = SERVED[door]
    if workers is not None:
        at = argv.index("--workers") + 1
        argv = [*argv[:at], str(workers), *argv[at + 1 :]]
    env = {"CLOUDSESSIONS_TEST_URL": url}
    if cache is not None:
        env[CACHE_VARIABLE] = json.dumps(cache)
    with _serving(f"{door}-{argv[0]}", argv, Path(__file__).parents[1], env) as base:
        yield FrontDoorServer(base, store, names, url)
    store.close()


# The served app's CACHE setting, as JSON (absent: no cache), read by the factories below.
CACHE_VARIABLE = "CLOUDSESSIONS_TEST_CACHE"


def _cache_setting() -> Any:
    return json.loads(os.environ.get(CACHE_VARIABLE) or "null")


def django_server_app() -> Any:
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    settings.configure(
        ALLOWED_HOSTS=["127.0.0.1"],
        SECRET_KEY="cloudsessions-tests-not-secret",
        ROOT_URLCONF="tests.front_doors",
        INSTALLED_APPS=["cloudsessions.django"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        SESSION_ENGINE="cloudsessions.django",
        CLOUDSESSIONS={"STORE": os.environ["CLOUDSESSIONS_TEST_URL"], "CACHE": _cache_setting()},
        USE_TZ=True,
    )
    django.setup()
    return get_wsgi_application()


def flask_server_app() -> flask.Flask:
    url = os.environ["CLOUDSESSIONS_TEST_URL"]
    return front_doors.flask_app(url, CLOUDSESSIONS_CACHE=_cache_setting())


def asgi_server_app() -> Starlette:
    return front_doors.asgi_app(os.environ["CLOUDSESSIONS_TEST_URL"], cache=_cache_setting())


# ------------------------------------------------------------------ the demo


@contextlib.contextmanager
def demo_server(framework: str, store_url: str, cwd: Path) -> Iterator[str]:
    """`cloudsessions demo --framework framework` on `store_url`; yields its base URL."""
    argv = ["cloudsessions.cli", "demo", "--framework", framework, "--port", "{port}"]
    with _serving(f"demo-{framework}", [*argv, "--store", store_url], cwd, {}) as base:
        yield base


def views_and_greeting(page: str) -> tuple[int, str]:
    """The view count and the greeting a demo page shows."""
    views = re.search(r'<b id="views">(\d+) views?</b>', page)
    greeting = re.search(r'<h1 id="greeting">([^<]+)</h1>', page)
    assert views is not None and greeting is not None, page
    return int(views.group(1)), greeting.group(1)


def page_shape(page: str) -> str:
    """A demo page without what differs between visitors: the greeting drawn at random, the
    record's fingerprint, the form's token."""
    for pattern in (
        r'(<h1 id="greeting">)[^<]+',
        r'(<code id="fingerprint">)[^<]+',
        r'(name="csrfmiddlewaretoken" value=")[^"]+',
    ):
        page = re.sub(pattern, r"\1...", page)
    return page


def fingerprint(page: str) -> str:
    """The demo page's fingerprint of the session's record id."""
    match = re.search(r'<code id="fingerprint">([0-9a-f-]+)</code>', page)
    assert match is not None
    return match.group(1)
