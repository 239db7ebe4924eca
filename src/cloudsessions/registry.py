"""Store URLs: one string configures a store, e.g. ``sqlite:///sessions.db``.

The registry maps URL schemes to store classes: ours below, and any other package's
through an entry point in the "cloudsessions.stores" group (name: the scheme, value:
"package.module:StoreClass"). Stores are imported only when their scheme is used, so a
Flask-on-Firestore app never imports boto3 or pymongo, and nothing touches the network
until the first session call. Stores sit below this module: they never import it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError
from .store import Store, StoreURL

DEFAULT_STORE_URL = "sqlite:///cloudsessions.sqlite3"
STORE_ENV = "CLOUDSESSIONS_STORE"


def default_store_url() -> str:
    """The store of a front door configured without one: $CLOUDSESSIONS_STORE, else SQLite.

    Read when a front door resolves its store, never at import time.
    """
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


ENTRY_POINTS = "cloudsessions.stores"

# scheme -> "module:Class" of our own stores; the extra that installs each one's SDK is
# the module's last name.
STORES: dict[str, str] = {
    "sqlite": "cloudsessions.stores.sqlite:SQLiteStore",
    "dynamodb": "cloudsessions.stores.dynamodb:DynamoDBStore",
    "firestore": "cloudsessions.stores.firestore:FirestoreStore",
    "mongodb": "cloudsessions.stores.mongodb:MongoDBStore",
    "mongodb+srv": "cloudsessions.stores.mongodb:MongoDBStore",
    "redis": "cloudsessions.stores.redis:RedisStore",
    "rediss": "cloudsessions.stores.redis:RedisStore",
    "redis+cluster": "cloudsessions.stores.redis:RedisStore",
    "rediss+cluster": "cloudsessions.stores.redis:RedisStore",
}


def registered() -> dict[str, str]:
    """Every known scheme -> "module:Class": ours, then other packages' entry points."""
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}
    return {**found, **STORES}  # a package cannot take over one of our schemes


def store_class(scheme: str) -> type[Store]:
    stores = registered()
    if scheme not in stores:
        known = ", ".join(f"{s}://" for s in stores)
        raise ConfigurationError(f"unknown store URL scheme {scheme}://: expected one of {known}")
    module_name, _, class_name = stores[scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"the {scheme}:// store ({module_name}) is not installed"
            ) from exc
        extra = module_name.rsplit(".", 1)[-1] if scheme in STORES else None
        install = f"pip install 'cloudsessions[{extra}]'" if extra else f"pip install {exc.name}"
        raise ConfigurationError(f"the {scheme}:// store needs {exc.name}: {install}") from exc
    cls: type[Store] = getattr(module, class_name)
    return cls


def open_store(url: str = DEFAULT_STORE_URL, **options: Any) -> Store:
    """A new store for `url`; `options` override the URL's query options."""
    parsed = StoreURL.parse(url)
    if not parsed.scheme:
        raise ConfigurationError(f"store URL {url!r} has no scheme, e.g. sqlite:///sessions.db")
    return store_class(parsed.scheme).from_url(parsed, {**parsed.query, **options})


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


def checked_cache(cache: Any, setting: str) -> Mapping[str, Any] | str | None:
    """A CACHE setting, checked now (no network): a mapping of cache options, a URL, None."""
    if cache:
        from .cache import cache_options

        try:
            cache_options(cache)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{setting}: {exc}") from None
    return cache or None


_cached: dict[tuple[int, tuple[tuple[str, object], ...]], Store] = {}


def configured_store(
    store: str | Store | None,
    options: Mapping[str, Any] | None = None,
    cache: Mapping[str, Any] | str | None = None,
) -> Store:
    """A front door's store from its settings: a Store as given, else the shared store of a
    URL (default: default_store_url()); with the CACHE setting's tiers in front, if any.

    One per process and configuration: the cache tiers too, so every request shares them.
    """
    base = (
        store if isinstance(store, Store) else shared_store(store or default_store_url(), options)
    )
    if not cache:
        return base
    from .cache import CachedStore  # imported only when a cache is configured

    items = {"redis": cache} if isinstance(cache, str) else {k.lower(): v for k, v in cache.items()}
    with _shared_lock:
        key = (id(base), tuple(sorted((k, _option_key(v)) for k, v in items.items())))
        cached = _cached.get(key)
        if cached is None:
            cached = _cached[key] = CachedStore(base, items)
            _held.append(base)
            _held.extend(v for v in items.values() if not _primitive(v))
    return cached


def close_shared_stores() -> None:
    with _shared_lock:
        for store in [*_cached.values(), *_shared.values()]:
            store.close()
        _shared.clear()
        _cached.clear()
        _held.clear()
