"""SQLite: a file per test; round trips are the SQL statements, seen by a trace callback."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from cloudsessions import open_store
from cloudsessions.store import Store
from tests.stores import RoundTrips, unique_name

# revoke(): one DELETE ... WHERE id = ? AND user_id = ?
REVOKE_TRIPS = (0, 1)

_READS = ("SELECT",)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def url(folder: Path, services: contextlib.ExitStack) -> str:
    return f"sqlite:///{folder / unique_name()}.db"


def instrument(url: str, trips: RoundTrips) -> Store:
    def trace(statement: str) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in _READS and "sqlite_master" not in statement:
            trips.reads.append(statement)
        elif verb in _WRITES:
            trips.writes.append(statement)

    def on_connect(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(trace)

    return open_store(url, on_connect=on_connect)
