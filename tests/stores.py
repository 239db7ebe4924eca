"""The stores the suites run against, each a real server (or file), each instrumented.

Each store has a module in tests/backends/ defining:
    url(folder: Path, services: ExitStack) -> str
        the URL of a fresh, empty store (starting its server once, registered on services)
    instrument(url: str, trips: RoundTrips) -> Store
        a store for that URL whose round trips are counted at the SDK level
Suites run against every store in ORDER that has a module; CLOUDSESSIONS_TEST_STORES
(comma-separated) narrows that for local work.

CACHED names stores with cache tiers in front (cloudsessions.cache): the contract suite and
Django's mixin run on them too, with the round trips of the store behind the cache counted.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cloudsessions.store import Store
from cloudsessions.testing import HOUR, Instrumented, RoundTrips, expired, live

__all__ = ["HOUR", "Instrumented", "RoundTrips", "expired", "live"]

ORDER = ["sqlite", "dynamodb", "firestore", "mongodb", "redis", "redis_cluster"]

# name -> (the store behind, the CACHE setting; "redis" = the test Redis, with a prefix).
# Each tier on its own, and both with the channel.
CACHED: dict[str, tuple[str, dict[str, Any]]] = {
    "sqlite_local": ("sqlite", {"max_staleness": 30}),
    "mongodb_shared": ("mongodb", {"redis": True}),
    "dynamodb_tiered": ("dynamodb", {"redis": True, "max_staleness": 30}),
}


def _available() -> tuple[list[str], list[str]]:
    names = [n for n in ORDER if importlib.util.find_spec(f"tests.backends.{n}") is not None]
    cached = [n for n, (base, _) in CACHED.items() if base in names]
    wanted = os.environ.get("CLOUDSESSIONS_TEST_STORES")
    if wanted:
        chosen = [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = set(chosen) - set(names) - set(cached)
        if unknown:
            raise RuntimeError(f"CLOUDSESSIONS_TEST_STORES names unknown stores: {unknown}")
        names = [n for n in names if n in chosen]
        cached = [n for n in cached if n in chosen]
    return names, cached


STORE_NAMES, CACHED_NAMES = _available()

_services = contextlib.ExitStack()
_counter = itertools.count()


def unique_name(prefix: str = "sessions") -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


def backend(name: str) -> ModuleType:
    return importlib.import_module(f"tests.backends.{name}")


def services() -> contextlib.ExitStack:
    """The servers this pytest process started, stopped when it ends."""
    return _services


_started: dict[str, Any] = {}


def started(name: str, server: Callable[[], contextlib.AbstractContextManager[Any]]) -> Any:
    """What `server()` yields, entered once per pytest process and stopped at its end."""
    if name not in _started:
        _started[name] = _services.enter_context(server())
        _services.callback(_started.pop, name)
    return _started[name]


def store_url(name: str, folder: Path) -> str:
    """The URL of a fresh, empty store of kind `name` (starting its server if needed); for a
    CACHED name, of the store behind the cache."""
    url: str = backend(CACHED.get(name, (name,))[0]).url(folder, _services)
    return url


def cache_setting(name: str) -> dict[str, Any] | None:
    """The CACHE setting of a CACHED store (its own key prefix on the test Redis), else None."""
    if name not in CACHED:
        return None
    setting = dict(CACHED[name][1])
    if setting.pop("redis", False):
        setting["redis"] = backend("redis").server_url(_services) + "/0"
        setting["prefix"] = unique_name("cache") + ":"
    return setting


def open_instrumented(name: str, folder: Path) -> Instrumented:
    url = store_url(name, folder)
    trips = RoundTrips()
    module = backend(CACHED.get(name, (name,))[0])
    store: Store = module.instrument(url, trips)
    cache = cache_setting(name)
    if cache is not None:
        from cloudsessions.cache import CachedStore

        store = CachedStore(store, cache)
    purges, checks = (getattr(module, name, False) for name in ("PURGE_BY_TTL", "INDEX_APART"))
    return Instrumented(
        store,
        trips,
        url,
        purges,
        checks,
        cached=cache is not None,
        listing_reads=getattr(module, "LISTING_READS", 1),
        revoke_trips=getattr(module, "REVOKE_TRIPS", (1, 1)),
    )


@contextlib.contextmanager
def fresh(name: str, folder: Path) -> Iterator[Instrumented]:
    """A fresh, empty store of kind `name`, instrumented; dropped and closed afterwards."""
    inst = open_instrumented(name, folder)
    try:
        yield inst
    finally:
        # A backend may take the store back for the next test (tests/backends/dynamodb.py).
        recycle = getattr(backend(CACHED.get(name, (name,))[0]), "recycle", None)
        if recycle is None or not recycle(inst.url):
            inst.store.drop()
        inst.store.close()


def instrumented_fixture(name: str) -> Any:
    """A pytest fixture: a fresh, empty store of kind `name` and a counter of its round trips."""

    @pytest.fixture
    def fixture(tmp_path: Path) -> Iterator[Instrumented]:
        with fresh(name, tmp_path) as inst:
            yield inst

    return fixture


def stop_services() -> None:
    _services.close()
