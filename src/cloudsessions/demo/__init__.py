"""The greeting demo of Google's "Handling sessions with Firestore" tutorial, on any store."""

from __future__ import annotations

import sys

from ..registry import open_store


def serve(framework: str, store_url: str, host: str, port: int) -> int:
    # The demo sets its store up first (idempotent), so any store URL works out of the box.
    store = open_store(store_url)
    try:
        for line in store.provision():
            print(line)
        described = store.describe()  # names no secret: the page shows it
    finally:
        store.close()
    print(f"cloudsessions demo ({framework}) on http://{host}:{port}/ with {described}")
    sys.stdout.flush()
    if framework == "django":
        from .django_site import serve as serve_django

        return serve_django(store_url, described, host, port)
    if framework == "flask":
        from .flask_app import serve as serve_flask

        return serve_flask(store_url, described, host, port)
    if framework == "asgi":
        from .asgi_app import serve as serve_asgi

        return serve_asgi(store_url, described, host, port)
    raise ValueError(f"unknown framework {framework!r}")
