"""SQLite: the same statements through a plain sqlite3 connection to the same file."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import Target
from cloudsessions import open_store
from cloudsessions.record import Changes, EncodedRecord


@contextlib.contextmanager
def target(services: contextlib.ExitStack) -> Iterator[Target]:
    folder = Path(services.enter_context(tempfile.TemporaryDirectory()))
    store = open_store(f"sqlite:///{folder / 'bench.db'}")
    store.provision()
    conn = sqlite3.connect(folder / "bench.db", isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")  # as the store sets it
    table = "cloudsessions"

    def raw_load(rid: str) -> object:
        row = conn.execute(
            f"SELECT data, expires_at, user_id FROM {table} WHERE id = ?", (rid,)
        ).fetchone()
        return json.loads(row[0])

    def raw_create(rid: str, record: EncodedRecord) -> object:
        return conn.execute(
            f"INSERT INTO {table} (id, data, expires_at, user_id) VALUES (?, ?, ?, ?)",
            (rid, json.dumps(record.fields), record.expires_at, record.user_id),
        )

    def raw_save(
        rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> object:
        ((field, value),) = changes.set_fields.items()
        return conn.execute(
            f"UPDATE {table} SET data = json_set(data, ?, ?), expires_at = ?, user_id = ?"
            " WHERE id = ? AND expires_at > ?",
            (f'$."{field}"', value, expires_at, user_id, rid, now),
        )

    def raw_delete(rid: str) -> object:
        return conn.execute(f"DELETE FROM {table} WHERE id = ?", (rid,))

    try:
        yield Target(store, raw_load, raw_create, raw_save, raw_delete)
    finally:
        conn.close()
        store.close()
