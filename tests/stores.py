"""The stores the suites run against, each a real server (or file), each instrumented.

Every store joins STORE_NAMES with a factory that opens a fresh, empty store of its kind
and counts its round trips at the SDK level (SQLite: the statements it runs).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudsessions import open_store
from cloudsessions.store import Store

STORE_NAMES = ["sqlite"]

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
    return f"{prefix}_{next(_counter)}"


def store_url(name: str, folder: Path) -> str:
    """The URL of a fresh, empty store of kind `name` (starting its server if needed)."""
    return _URLS[name](folder)


def open_instrumented(name: str, folder: Path) -> Instrumented:
    url = store_url(name, folder)
    trips = RoundTrips()
    return Instrumented(_INSTRUMENT[name](url, trips), trips, url)


def stop_services() -> None:
    _services.close()


# ---------------------------------------------------------------------------- sqlite

_SQLITE_READS = ("SELECT",)
_SQLITE_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / unique_name()}.db"


def _sqlite_store(url: str, trips: RoundTrips) -> Store:
    def trace(statement: str) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in _SQLITE_READS and "sqlite_master" not in statement:
            trips.reads.append(statement)
        elif verb in _SQLITE_WRITES:
            trips.writes.append(statement)

    def on_connect(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(trace)

    return open_store(url, on_connect=on_connect)


_URLS: dict[str, Callable[[Path], str]] = {"sqlite": _sqlite_url}
_INSTRUMENT: dict[str, Callable[[str, RoundTrips], Store]] = {"sqlite": _sqlite_store}
