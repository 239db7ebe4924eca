"""Store URLs: one string configures a store, e.g. ``sqlite:///sessions.db``.

Stores are imported only when their scheme is used, so a Flask-on-Firestore app never
imports boto3 or pymongo, and nothing touches the network until the first session call.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigurationError
from .store import Store

DEFAULT_STORE_URL = "sqlite:///cloudsessions.sqlite3"
STORE_ENV = "CLOUDSESSIONS_STORE"


def default_store_url() -> str:
    """The store of a front door configured without one: $CLOUDSESSIONS_STORE, else SQLite.

    Read when a front door resolves its store, never at import time.
    """
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


# scheme -> (module, class, extra that installs its SDK)
STORES: dict[str, tuple[str, str, str]] = {
    "sqlite": ("cloudsessions.stores.sqlite", "SQLiteStore", ""),
    "dynamodb": ("cloudsessions.stores.dynamodb", "DynamoDBStore", "dynamodb"),
    "firestore": ("cloudsessions.stores.firestore", "FirestoreStore", "firestore"),
    "mongodb": ("cloudsessions.stores.mongodb", "MongoDBStore", "mongodb"),
    "mongodb+srv": ("cloudsessions.stores.mongodb", "MongoDBStore", "mongodb"),
}


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL. `path` keeps its leading slash; `query` holds the ?options."""

    raw: str
    scheme: str
    netloc: str
    path: str
    query: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in STORES:
            known = ", ".join(f"{s}://" for s in STORES)
            raise ConfigurationError(
                f"unknown store URL scheme in {url!r}: expected one of {known}"
            )
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return cls(url, scheme, parts.netloc, unquote(parts.path), query)


def _store_class(scheme: str) -> type[Store]:
    module_name, class_name, extra = STORES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("cloudsessions"):
            raise ConfigurationError(
                f"the {scheme}:// store is not available in this version of cloudsessions"
            ) from exc
        raise ConfigurationError(
            f"the {scheme}:// store needs {exc.name}: pip install 'cloudsessions[{extra}]'"
        ) from exc
    cls: type[Store] = getattr(module, class_name)
    return cls


def open_store(url: str = DEFAULT_STORE_URL, **options: Any) -> Store:
    """A new store for `url`; `options` override the URL's query options."""
    parsed = StoreURL.parse(url)
    cls = _store_class(parsed.scheme)
    from_url = getattr(cls, "from_url")  # noqa: B009 - each store defines its own signature
    store: Store = from_url(parsed, {**parsed.query, **options})
    return store


_shared: dict[tuple[str, tuple[tuple[str, object], ...]], Store] = {}
_shared_lock = threading.Lock()
# Objects handed over as options (SDK clients, sessions), kept alive while their id() is
# part of a cache key, so the id cannot be reused by another object.
_held: list[object] = []


def _primitive(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _option_key(value: object) -> object:
    return (type(value).__name__, value) if _primitive(value) else ("id", id(value))


def shared_store(url: str = DEFAULT_STORE_URL, options: Mapping[str, Any] | None = None) -> Store:
    """The process-wide store for this configuration: one SDK client, reused by every request."""
    options = dict(options or {})
    with _shared_lock:
        cache_key = (url, tuple(sorted((k, _option_key(v)) for k, v in options.items())))
        store = _shared.get(cache_key)
        if store is None:
            store = _shared[cache_key] = open_store(url, **options)
            _held.extend(v for v in options.values() if not _primitive(v))
    return store


def close_shared_stores() -> None:
    with _shared_lock:
        for store in _shared.values():
            store.close()
        _shared.clear()
        _held.clear()
