"""The stores the suites run against, each a real server (or file), each instrumented.

Each store has a module in tests/backends/ defining:
    url(folder: Path, services: ExitStack) -> str
        the URL of a fresh, empty store (starting its server once, registered on services)
    instrument(url: str, trips: RoundTrips) -> Store
        a store for that URL whose round trips are counted at the SDK level
Suites run against every store in ORDER that has a module; CLOUDSESSIONS_TEST_STORES
(comma-separated) narrows that for local work.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cloudsessions import SessionRecord
from cloudsessions.store import Store

ORDER = ["sqlite", "dynamodb", "firestore", "mongodb"]
HOUR = 3600.0


def live(data: dict[str, Any], user_id: str | None = None) -> SessionRecord:
    return SessionRecord(data, time.time() + HOUR, user_id)


def expired(data: dict[str, Any], user_id: str | None = None) -> SessionRecord:
    return SessionRecord(data, time.time() - 10, user_id)


def _available() -> list[str]:
    names = [n for n in ORDER if importlib.util.find_spec(f"tests.backends.{n}") is not None]
    wanted = os.environ.get("CLOUDSESSIONS_TEST_STORES")
    if wanted:
        chosen = [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = set(chosen) - set(names)
        if unknown:
            raise RuntimeError(f"CLOUDSESSIONS_TEST_STORES names unknown stores: {unknown}")
        names = [n for n in names if n in chosen]
    return names


STORE_NAMES = _available()

_services = contextlib.ExitStack()
_counter = itertools.count()


@dataclass
class RoundTrips:
    """Calls the store made to its backend, as seen by the SDK, split into reads and writes."""

    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()

    @property
    def counts(self) -> tuple[int, int]:
        return len(self.reads), len(self.writes)


@dataclass
class Instrumented:
    store: Store
    trips: RoundTrips
    url: str


def unique_name(prefix: str = "sessions") -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


def backend(name: str) -> ModuleType:
    return importlib.import_module(f"tests.backends.{name}")


def store_url(name: str, folder: Path) -> str:
    """The URL of a fresh, empty store of kind `name` (starting its server if needed)."""
    url: str = backend(name).url(folder, _services)
    return url


def open_instrumented(name: str, folder: Path) -> Instrumented:
    url = store_url(name, folder)
    trips = RoundTrips()
    store: Store = backend(name).instrument(url, trips)
    return Instrumented(store, trips, url)


def stop_services() -> None:
    _services.close()
