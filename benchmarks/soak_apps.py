"""The apps benchmarks/soak.py serves, each in a real server process of its own.

Each factory reads the store from the environment: SOAK_STORE_URL, and SOAK_STORE_OPTIONS
(JSON, store options over the URL's; "thread_mode": true hands the DynamoDB store a boto3
Session of its own, which turns its native asyncio client off: every store call then runs
the sync boto3 client in one of anyio's worker threads, as a store without a native async
client does).

- `asgi_app` (uvicorn --factory): the ASGI demo (cloudsessions.demo.asgi_app) as
  `cloudsessions demo --framework asgi` serves it, plus one read-only page, /read (every
  page of the demo writes: each view counts), which answers "<views> <csrf token>".
- `django_app` (uvicorn --factory): Django's ASGI handler with cloudsessions' session
  middleware and the async view of benchmarks/django_async.py (every request shape by
  ?shape=, through the session's async API), which answers "views: <n>".
- `flask_app` (gunicorn, WSGI): Flask with cloudsessions' session interface and the views of
  benchmarks/views.py (/new, /read, /modify, /login, /logout).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
from typing import Any, cast

from benchmarks import views

URL_VARIABLE = "SOAK_STORE_URL"
OPTIONS_VARIABLE = "SOAK_STORE_OPTIONS"


def store_options() -> dict[str, Any]:
    options: dict[str, Any] = json.loads(os.environ.get(OPTIONS_VARIABLE) or "{}")
    if options.pop("thread_mode", False):
        import boto3

        # A session handed over: the store cannot derive an aiobotocore client from it, so
        # its async calls run the sync client in worker threads (DynamoDBStore.native_async).
        options["session"] = boto3.session.Session()
    return options


TRIM_PATH = "/_malloc_trim"


def trimmable(app: Any) -> Any:
    """`app`, plus POST /_malloc_trim: Python collects its cyclic garbage (gc.collect) and
    glibc hands the free memory it keeps back to the system (malloc_trim), so that the
    benchmark can tell memory in use from garbage that waits for the cycle collector and
    from free memory kept in glibc's per-thread arenas (see benchmarks/soak.py)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))

    async def served(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == TRIM_PATH:
            gc.collect()
            libc.malloc_trim(0)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return served


def asgi_app() -> Any:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    from cloudsessions import open_store
    from cloudsessions.asgi import SessionMiddleware
    from cloudsessions.demo import asgi_app as demo

    url, options = os.environ[URL_VARIABLE], store_options()
    store = open_store(url, **options)
    app = demo.create_app(url, store.describe())
    # The demo's middleware, given the store built with the options (a Store object is
    # used as given: the demo itself passes the URL).
    for middleware in app.user_middleware:
        if middleware.cls is cast(Any, SessionMiddleware):
            middleware.kwargs["store"] = store

    async def read(request: Request) -> PlainTextResponse:
        session = request.session
        return PlainTextResponse(f"{session.get('views', 0)} {session.get(demo.CSRF_KEY, '-')}")

    app.add_route("/read", read, methods=["GET"])
    return trimmable(app)


def django_app() -> Any:
    from django.core.asgi import get_asgi_application
    from django.urls import path

    from benchmarks import django_async

    views.configure_django(
        lambda: [path("", django_async.view)],
        SESSION_ENGINE="cloudsessions.django",
        MIDDLEWARE=[django_async.MIDDLEWARES["cloudsessions"]],
        CLOUDSESSIONS={"STORE": os.environ[URL_VARIABLE], "OPTIONS": store_options()},
    )
    return trimmable(get_asgi_application())


def flask_app() -> Any:
    import flask

    from cloudsessions.flask import CloudSessions

    app = flask.Flask("soak")
    app.config.update(
        CLOUDSESSIONS_STORE=os.environ[URL_VARIABLE],
        CLOUDSESSIONS_OPTIONS=store_options(),
    )
    CloudSessions(app)
    views.flask_views(app)
    return app
